//! `childgraph demo`: the gateway, the three simulated sources and an embedded store in one process, with demo identities.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use childgraph_schema::{RecordRef, SourceName};
use childgraph_simulators::cast;
use childgraph_simulators::population::{Crowd, Population, PopulationConfig};
use childgraph_simulators::{Faults, SimulatorHandle};
use chrono::Utc;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{
    BreakerSettings, RequestConfig, RetrySettings, SchoolSourceConfig, SourceConfig, SourcesConfig,
};
use crate::demo_key::DemoKey;
use crate::startup::{Parts, assemble, connectors};
use crate::store::{Account, FlagRecord, OrganisationRecord, Shield, Store};

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Generated children besides the fixed demo cast.
    pub children: usize,
    pub seed: u64,
    /// Faults each simulator starts with.
    pub faults: Faults,
    /// The request deadline and result limits.
    pub request: RequestConfig,
    /// The longest one source request may take.
    pub source_timeout_ms: u64,
    /// Whether the gateway caches source answers.
    pub cache: bool,
    /// Retries and their budget, for every source.
    pub retry: RetrySettings,
    /// The circuit breaker, for every source.
    pub breaker: BreakerSettings,
    /// Groups of children sharing a family name and date of birth, for searches that return many.
    pub crowds: Vec<Crowd>,
    /// How long an active account is kept between reads of the store.
    pub account_cache: std::time::Duration,
    /// A policy file, reloaded when it changes or on SIGHUP; the built-in default policy when absent.
    pub policy: Option<PathBuf>,
    /// How often the policy file is looked at for a change.
    pub policy_poll: std::time::Duration,
    /// The alert on users who view many distinct children.
    pub monitoring: crate::config::MonitoringConfig,
    /// How long requests in flight may finish once the demo is stopping.
    pub drain: std::time::Duration,
    /// The HTTP versions the gateway speaks to the simulators, which speak both.
    pub http_version: childgraph_connectors::HttpVersion,
}

impl DemoOptions {
    /// The demo's defaults, listening and keeping its data where given.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            data_dir,
            children: 2000,
            seed: 42,
            faults: Faults::default(),
            // GraphiQL's schema explorer needs introspection.
            request: RequestConfig {
                introspection: true,
                ..RequestConfig::default()
            },
            source_timeout_ms: 1500,
            cache: true,
            retry: RetrySettings::default(),
            breaker: BreakerSettings::default(),
            crowds: Vec::new(),
            account_cache: std::time::Duration::from_secs(5),
            policy: None,
            policy_poll: crate::startup::POLICY_POLL,
            monitoring: crate::config::MonitoringConfig::default(),
            drain: crate::config::ShutdownConfig::default().drain(),
            http_version: childgraph_connectors::HttpVersion::Auto,
        }
    }
}

/// A demo identity: a user with roles at an organisation.
#[derive(Debug)]
pub struct Identity {
    pub user: &'static str,
    pub name: &'static str,
    pub roles: &'static [&'static str],
    pub organisation: (
        &'static str,
        &'static str,
        Option<(SourceName, &'static str)>,
    ),
}

impl Identity {
    /// The account the demo's store holds for this identity.
    pub fn account(&self) -> Account {
        let (org_id, org_name, source) = self.organisation;
        Account {
            user_id: self.user.to_owned(),
            display_name: self.name.to_owned(),
            organisation: OrganisationRecord {
                id: org_id.to_owned(),
                name: org_name.to_owned(),
                source: source.map(|(s, id)| RecordRef::new(s, id)),
            },
            roles: self.roles.iter().map(|r| (*r).to_owned()).collect(),
            phone: Some("01632 960000".to_owned()),
            email: Some(format!("{}@demo.childgraph.example", self.user)),
            active: true,
            authorisation: crate::store::Authorisation::seeded("authoriser"),
            client: None,
        }
    }
}

/// The demo identities, as DESIGN.md's public contract names them.
pub const IDENTITIES: &[Identity] = &[
    Identity {
        user: "teacher",
        name: "Priya Shah",
        roles: &["teacher"],
        organisation: (
            "org-riverside",
            cast::SCHOOL_NAME,
            Some((SourceName::School, cast::SCHOOL_ORG_ID)),
        ),
    },
    Identity {
        user: "gp",
        name: "Dr Tom Whitfield",
        roles: &["gp"],
        organisation: (
            "org-elm-tree",
            cast::GP_PRACTICE_NAME,
            Some((SourceName::Health, cast::GP_PRACTICE_ID)),
        ),
    },
    Identity {
        user: "mch-nurse",
        name: "Grace Mensah",
        roles: &["mch-nurse"],
        organisation: (
            "org-willow",
            cast::MCH_CENTRE_NAME,
            Some((SourceName::Health, cast::MCH_CENTRE_ID)),
        ),
    },
    Identity {
        user: "kinder-educator",
        name: "Sam Taylor",
        roles: &["kinder-educator"],
        organisation: (
            "org-acorn",
            cast::KINDERGARTEN_NAME,
            Some((SourceName::EarlyYears, cast::KINDERGARTEN_ID)),
        ),
    },
    Identity {
        user: "social-worker",
        name: "Jordan Reid",
        roles: &["social-worker"],
        organisation: (
            "org-north-team",
            cast::SOCIAL_CARE_TEAM_NAME,
            Some((SourceName::Health, cast::SOCIAL_CARE_TEAM_ID)),
        ),
    },
    Identity {
        user: "shield-officer-1",
        name: "Alex Morgan",
        roles: &["shield-officer"],
        organisation: SHIELD_OFFICE,
    },
    Identity {
        user: "shield-officer-2",
        name: "Ruth Adeyemi",
        roles: &["shield-officer"],
        organisation: SHIELD_OFFICE,
    },
    Identity {
        user: "authoriser",
        name: "Chris Patel",
        roles: &["authoriser"],
        organisation: COUNCIL,
    },
    Identity {
        user: "auditor",
        name: "Dana Lewis",
        roles: &["auditor"],
        organisation: COUNCIL,
    },
];

const SHIELD_OFFICE: (&str, &str, Option<(SourceName, &str)>) =
    ("org-shield-office", "Hartfield Shield Office", None);
const COUNCIL: (&str, &str, Option<(SourceName, &str)>) =
    ("org-council", "Hartfield Council Children's Services", None);

/// The file scripts read to find the demo's parts.
pub const DEMO_JSON: &str = "demo.json";
pub const STORE_FILE: &str = "childgraph.db";
/// Where `demo` and `token` keep the demo's data unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "demo-data";

#[derive(Debug, Serialize)]
struct DemoJson {
    gateway: String,
    sources: DemoSources,
}

#[derive(Debug, Serialize)]
struct DemoSources {
    health: String,
    school: String,
    early_years: String,
}

/// A running demo.
#[derive(Debug)]
pub struct Demo {
    pub gateway: SocketAddr,
    pub health: SimulatorHandle,
    pub school: SimulatorHandle,
    pub early_years: SimulatorHandle,
    pub key: DemoKey,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Demo {
    /// Starts the demo: data directory, key, store, population, simulators, gateway.
    pub async fn start(options: DemoOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&options.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                options.data_dir.display()
            )
        })?;
        check_population_seed(&options.data_dir, options.seed)?;
        let key = DemoKey::load_or_create(&options.data_dir)?;
        let store = Store::open_sqlite(&options.data_dir.join(STORE_FILE))
            .await
            .context("opening the demo store")?;
        seed_accounts(&store).await?;

        let population_config = PopulationConfig {
            children: options.children,
            seed: options.seed,
            as_of: Utc::now().date_naive(),
            crowds: options.crowds.clone(),
            ..PopulationConfig::default()
        };
        population_config
            .validate()
            .map_err(|e| anyhow::anyhow!("the demo population is not valid: {e}"))?;
        let population = Arc::new(Population::generate(&population_config));
        let (stop, stopped) = watch::channel(false);
        let [health, school, early_years] =
            childgraph_simulators::spawn_all(population, options.faults, || {
                let mut stopped = stopped.clone();
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                }
            })
            .await
            .context("starting the simulators")?;

        let sources = SourcesConfig {
            health: source(&health, &options),
            // The simulator accepts long filters, so id lists go in few requests.
            school: SchoolSourceConfig {
                source: source(&school, &options),
                filter_max_predicates: 50,
            },
            early_years: source(&early_years, &options),
        };
        seed_cast(&store).await?;
        let state = assemble(Parts {
            store,
            policy: crate::startup::load_policy(options.policy.as_deref())?,
            connectors: connectors(&sources)?,
            issuers: vec![key.issuer()],
            leeway_seconds: 30,
            account_cache: options.account_cache,
            accounts: crate::config::AccountsConfig::default(),
            monitoring: options.monitoring,
            request: options.request.clone(),
            linker: childgraph_linkage::Linker::default(),
        })?;
        let listener = TcpListener::bind(options.listen).await.with_context(|| {
            format!(
                "cannot listen on {}: pass --listen to choose another address",
                options.listen
            )
        })?;
        let gateway = listener.local_addr()?;
        if let Some(path) = &options.policy {
            let mut stopped_watch = stopped.clone();
            tokio::spawn(crate::policy_reload::watch(
                state.pipeline.policy.clone(),
                path.clone(),
                options.policy_poll,
                async move {
                    let _ = stopped_watch.wait_for(|s| *s).await;
                },
            ));
        }
        let mut stopped_gateway = stopped.clone();
        let server = tokio::spawn(crate::server::run_draining(
            listener,
            state,
            async move {
                let _ = stopped_gateway.wait_for(|s| *s).await;
            },
            options.drain,
        ));
        let demo_json = DemoJson {
            gateway: format!("http://{gateway}"),
            sources: DemoSources {
                health: trim_slash(health.root_url()),
                school: trim_slash(school.root_url()),
                early_years: trim_slash(early_years.root_url()),
            },
        };
        write_demo_json(&options.data_dir, &demo_json)?;
        Ok(Self {
            gateway,
            health,
            school,
            early_years,
            key,
            stop,
            server,
        })
    }

    /// Stops the gateway and the simulators, letting in-flight requests finish.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.server.await.context("gateway task")??;
        Ok(())
    }
}

/// The file that records which population a data directory's links belong to.
const POPULATION_FILE: &str = "population.json";

/// The store links child ids to source record ids, and a record id names a different person under another seed:
/// a data directory serves one seed only.
fn check_population_seed(dir: &Path, seed: u64) -> anyhow::Result<()> {
    let path = dir.join(POPULATION_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let recorded: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", path.display()))?;
            if recorded["seed"].as_u64() != Some(seed) {
                anyhow::bail!(
                    "{} holds links for the population with seed {}; use that seed, or another --data-dir for seed {seed}",
                    dir.display(),
                    recorded["seed"]
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&path, serde_json::json!({ "seed": seed }).to_string())
                .with_context(|| format!("cannot write {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn trim_slash(url: url::Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

fn source(handle: &SimulatorHandle, options: &DemoOptions) -> SourceConfig {
    let mut config = SourceConfig::at(handle.base_url());
    config.timeout_ms = options.source_timeout_ms;
    config.cache.enabled = Some(options.cache);
    config.retry = options.retry.clone();
    config.breaker = options.breaker.clone();
    config.http_version = options.http_version;
    config
}

fn write_demo_json(dir: &Path, demo: &DemoJson) -> anyhow::Result<()> {
    let path = dir.join(DEMO_JSON);
    let text = serde_json::to_string_pretty(demo)?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

async fn seed_accounts(store: &Store) -> anyhow::Result<()> {
    for identity in IDENTITIES {
        store.upsert_account(&identity.account()).await?;
    }
    Ok(())
}

fn cast_records(member: &cast::CastMember) -> Vec<(RecordRef, f64)> {
    [
        member
            .health_id
            .map(|id| RecordRef::new(SourceName::Health, id)),
        member
            .school_id
            .map(|id| RecordRef::new(SourceName::School, id)),
        member
            .early_years_id
            .map(|id| RecordRef::new(SourceName::EarlyYears, id)),
    ]
    .into_iter()
    .flatten()
    .map(|r| (r, 1.0))
    .collect()
}

/// Links the demo cast (all but Maya's early-years record, which the gateway finds and links itself), shields Noah and
/// Maya (two shield officers), and has the GP flag Amelia, so the demo shows each.
async fn seed_cast(store: &Store) -> anyhow::Result<()> {
    let groups: Vec<_> = cast::MEMBERS.iter().map(cast_records).collect();
    let linked = store.link(&groups, "demo-cast").await?;
    let child_of = |key: &str| {
        cast::MEMBERS
            .iter()
            .position(|m| m.key == key)
            .and_then(|i| linked[i].first())
            .map(|(id, _)| id.clone())
    };
    for shielded in [cast::NOAH.key, cast::MAYA.key]
        .into_iter()
        .filter_map(child_of)
    {
        store
            .put_shield(&Shield {
                child_id: shielded,
                reason: "risk of harm from a person seeking the child's whereabouts".to_owned(),
                requested_by: "shield-officer-1".to_owned(),
                approved_by: "shield-officer-2".to_owned(),
                review_due: Utc::now() + chrono::Duration::days(182),
            })
            .await?;
    }
    if let (Some(amelia), Some(gp)) = (child_of(cast::AMELIA.key), store.account("gp").await?) {
        let now = Utc::now();
        store
            .put_flag(&FlagRecord {
                id: "flag-demo-amelia".to_owned(),
                child_id: amelia,
                kind: "HAS_INFORMATION".to_owned(),
                note: "Please call the surgery before the next review".to_owned(),
                raised_by: gp,
                raised_at: now,
                expires_at: now + chrono::Duration::days(365),
            })
            .await?;
    }
    Ok(())
}

/// `childgraph demo`: starts, prints how to use it, and runs until Ctrl-C or SIGTERM.
#[allow(clippy::print_stdout)]
pub async fn run(options: DemoOptions) -> anyhow::Result<()> {
    let data_dir = options.data_dir.clone();
    let demo = Demo::start(options).await?;
    let url = format!("http://{}/graphql", demo.gateway);
    println!("childgraph demo is running");
    println!();
    println!("  GraphiQL:   {url}");
    println!("  data:       {}", data_dir.display());
    println!("  sources:    {}", data_dir.join(DEMO_JSON).display());
    println!();
    let data_dir_flag = if data_dir == Path::new(DEFAULT_DATA_DIR) {
        String::new()
    } else {
        format!(" --data-dir {}", data_dir.display())
    };
    println!("Demo identities (get a token with `childgraph token --user NAME{data_dir_flag}`,");
    println!("or from a checkout, `cargo run --release -- token --user NAME{data_dir_flag}`):");
    for identity in IDENTITIES {
        println!(
            "  {:<17} {:<22} {}",
            identity.user,
            identity.name,
            identity.roles.join(", ")
        );
    }
    println!();
    println!(
        "Try: Amelia Hartley, born 2019-06-14, in all three sources (the school spells her Hartly)."
    );
    println!("In GraphiQL, set the header {{\"Authorization\": \"Bearer TOKEN\"}} and run:");
    println!(
        "  {{ searchChildren(criteria: {{familyName: \"Hartley\", dateOfBirth: \"2019-06-14\"}}, access: {{purpose: SAFEGUARDING}}) {{ matches {{ score child {{ id name {{ given family }} sources {{ source status }} }} }} }} }}"
    );
    println!();
    println!("Press Ctrl-C to stop.");
    crate::startup::shutdown_signal().await;
    demo.stop().await
}
