//! Gateways as production runs them: `childgraph serve` processes over PostgreSQL, in front of the simulated sources.
//! Two gateways sharing one database hold one quota of distinct children between them; and a gateway whose database
//! goes down answers `INTERNAL`, with no child data, until the database is back, then recovers by itself.
//!
//! Each test runs a PostgreSQL server of its own (`scripts/postgres-for-tests.sh` on a private port), so that it can
//! stop it. They run where the store's tests run on PostgreSQL: when `CHILDGRAPH_TEST_POSTGRES_URL` is set, as CI
//! sets it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use childgraph_simulators::population::{Population, PopulationConfig};
use childgraph_simulators::{Faults, SimulatorHandle};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use serde_json::{Value, json};

const ISSUER: &str = "https://login.test.childgraph.example";
const KID: &str = "test";
const VIEW: &str =
    "query($id: ID!) { child(id: $id, access: {purpose: SAFEGUARDING}) { id name { given } } }";
const FIND: &str = "query($f: String!, $d: Date!) { searchChildren(criteria: {familyName: $f, dateOfBirth: $d}, access: {purpose: SAFEGUARDING}) { matches { child { id } } } }";

/// A PostgreSQL server of the test's own, stopped and removed when dropped.
struct Postgres {
    port: u16,
}

impl Postgres {
    /// Starts one, or `None` (with a note) where the tests are not given PostgreSQL.
    fn start() -> Option<Self> {
        if std::env::var_os("CHILDGRAPH_TEST_POSTGRES_URL").is_none() {
            eprintln!(
                "note: CHILDGRAPH_TEST_POSTGRES_URL is not set, so this test did not run \
                 (scripts/postgres-for-tests.sh start gives a server; CI always does)"
            );
            return None;
        }
        let port = free_port();
        let server = Self { port };
        server.script("start");
        Some(server)
    }

    fn script(&self, command: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres-for-tests.sh");
        let status = Command::new("bash")
            .arg(script)
            .arg(command)
            .env("CHILDGRAPH_PG_PORT", self.port.to_string())
            // A commit must outlive the crash `halt` makes.
            .env("CHILDGRAPH_PG_DURABLE", "1")
            .output()
            .expect("the PostgreSQL script runs");
        assert!(
            status.status.success(),
            "postgres-for-tests.sh {command} failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.script("stop");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The simulated sources, the signing key of a test issuer, and the accounts of the demo's identities in the
/// database: what a deployment has before its gateways start.
struct Site {
    dir: tempfile::TempDir,
    _simulators: [SimulatorHandle; 3],
    sources: [String; 3],
    signing: SigningKey,
    database: String,
    http: reqwest::Client,
}

impl Site {
    async fn new(database: String) -> Self {
        let population = Arc::new(Population::generate(&PopulationConfig {
            children: 0,
            ..PopulationConfig::default()
        }));
        let simulators =
            childgraph_simulators::spawn_all(population, Faults::default(), std::future::pending)
                .await
                .expect("the simulators");
        let sources = [0, 1, 2].map(|i| simulators[i].base_url().to_string());
        let dir = tempfile::tempdir().expect("temp dir");
        let signing = SigningKey::generate(&mut rand::rngs::OsRng);
        let public = signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("a public key");
        std::fs::write(dir.path().join("issuer.pem"), public).expect("the issuer's key");
        let store = childgraph::store::Store::open(&store_config(&database))
            .await
            .expect("the database opens");
        for identity in childgraph::demo::IDENTITIES {
            store
                .upsert_account(&identity.account())
                .await
                .expect("an account");
        }
        Self {
            dir,
            _simulators: simulators,
            sources,
            signing,
            database,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("a client"),
        }
    }

    fn token(&self, user: &str) -> String {
        let pem = self.signing.to_pkcs8_pem(LineEnding::LF).expect("pem");
        let key = jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).expect("a key");
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(KID.to_owned());
        let now = chrono::Utc::now().timestamp();
        let claims = json!({
            "iss": ISSUER, "aud": "childgraph", "sub": user,
            "iat": now, "nbf": now, "exp": now + 3600, "amr": ["pwd", "mfa"],
        });
        jsonwebtoken::encode(&header, &claims, &key).expect("a token")
    }

    /// Starts `childgraph serve` with a config of its own, and waits until it is ready. `alert` is the monitor's
    /// threshold of distinct children within the hour; 0 for none.
    async fn gateway(&self, name: &str, children_per_hour: u32, alert: u32) -> Gateway {
        let port = free_port();
        let quote = |s: &str| Value::String(s.to_owned()).to_string();
        let config = format!(
            "listen: 127.0.0.1:{port}
store:
  postgres: {{url: {database}, acquire_timeout_ms: 1000}}
request:
  searches_per_minute: 0
  children_per_hour: {children_per_hour}
monitoring:
  distinct_children_alert: {alert}
auth:
  # Every request reads its account from the store.
  account_cache_seconds: 0
  issuers:
    - issuer: {ISSUER}
      audience: childgraph
      required_amr: [mfa]
      keys:
        - {{kid: {KID}, algorithm: EdDSA, public_key_file: {key}}}
sources:
  health: {{base_url: {health}, cache: {{enabled: false}}}}
  school: {{base_url: {school}, filter_max_predicates: 50, cache: {{enabled: false}}}}
  early_years: {{base_url: {early_years}, cache: {{enabled: false}}}}
shutdown:
  drain_seconds: 2
",
            database = quote(&self.database),
            key = quote(&self.dir.path().join("issuer.pem").display().to_string()),
            health = quote(&self.sources[0]),
            school = quote(&self.sources[1]),
            early_years = quote(&self.sources[2]),
        );
        let path: PathBuf = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, config).expect("the config");
        let process = Command::new(env!("CARGO_BIN_EXE_childgraph"))
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("childgraph serve starts");
        let gateway = Gateway {
            process,
            root: format!("http://127.0.0.1:{port}"),
        };
        let give_up = Instant::now() + Duration::from_secs(30);
        while !gateway.ready(&self.http).await {
            assert!(Instant::now() < give_up, "{name} was not ready within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        gateway
    }

    async fn query(&self, gateway: &Gateway, user: &str, query: &str, variables: Value) -> Value {
        self.http
            .post(format!("{}/graphql", gateway.root))
            .bearer_auth(self.token(user))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("the gateway answers")
            .json()
            .await
            .expect("JSON")
    }

    /// The id of the children a user's search finds.
    async fn find(&self, gateway: &Gateway, user: &str, family: &str, born: &str) -> Vec<String> {
        let found = self
            .query(gateway, user, FIND, json!({ "f": family, "d": born }))
            .await;
        let matches = found["data"]["searchChildren"]["matches"]
            .as_array()
            .unwrap_or_else(|| panic!("{found:#}"));
        matches
            .iter()
            .map(|m| m["child"]["id"].as_str().expect("an id").to_owned())
            .collect()
    }

    /// A view of one child: the child as answered (its fields as the user's policy allows), or the error's code.
    async fn view(&self, gateway: &Gateway, user: &str, id: &str) -> Result<Value, String> {
        let answer = self.query(gateway, user, VIEW, json!({ "id": id })).await;
        let child = &answer["data"]["child"];
        if child["id"].is_string() {
            return Ok(child.clone());
        }
        Err(answer["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer:#}"))
            .to_owned())
    }
}

fn store_config(database: &str) -> childgraph::config::StoreConfig {
    serde_yaml_ng::from_str(&format!("postgres: {{url: {database:?}}}")).expect("a store config")
}

/// A `childgraph serve` process, killed when dropped.
struct Gateway {
    process: std::process::Child,
    root: String,
}

impl Gateway {
    async fn ready(&self, http: &reqwest::Client) -> bool {
        http.get(format!("{}/readyz", self.root))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_database_hold_one_quota_of_distinct_children() {
    let Some(postgres) = Postgres::start() else {
        return;
    };
    let site = Site::new(postgres.url()).await;
    let a = site.gateway("a", 3, 2).await;
    let b = site.gateway("b", 3, 2).await;
    // Other users find the children (their own quotas), so the GP's quota goes on views only.
    let mut ids = site.find(&a, "teacher", "Hartley", "2019-06-14").await;
    ids.extend(site.find(&b, "teacher", "Fernandes", "2012-09-05").await);
    ids.extend(site.find(&a, "teacher", "Okafor", "2021-11-03").await);
    ids.extend(
        site.find(&b, "social-worker", "Brennan", "2017-01-22")
            .await,
    );
    assert_eq!(ids.len(), 5, "Amelia, Leo, Noah and the Brennan twins");
    let (amelia, leo, noah, isla) = (&ids[0], &ids[1], &ids[2], &ids[3]);

    // The GP goes back and forth between the gateways: three distinct children, one seen twice, then a fourth.
    // Gateway b has itself shown the GP two children, so on its own count one more would fit: the store's count
    // refuses it, and gateway a refuses it too.
    let both = [&a, &b, &a, &b, &b, &a];
    let order = [amelia, leo, noah, amelia, isla, isla];
    let mut alternating = Vec::new();
    for (gateway, id) in both.iter().zip(order) {
        alternating.push(site.view(gateway, "gp", id).await.is_ok());
    }
    assert_eq!(alternating, [true, true, true, true, false, false]);
    // One gateway, another user of the same quota: the same answers.
    let mut one = Vec::new();
    for id in order {
        one.push(site.view(&a, "mch-nurse", id).await.is_ok());
    }
    assert_eq!(one, alternating);
    assert_eq!(
        site.view(&b, "gp", isla).await,
        Err("RATE_LIMITED".to_owned())
    );

    // The monitor counts every gateway's answers: the GP's third child, shown by gateway a, which had shown them
    // two, passed the threshold of two, and gateway b, which saw the GP pass it too, raised no second alert.
    let alerts = site
        .query(
            &b,
            "auditor",
            "{ accessAlerts { userId } viewingActivity { users { userId distinctChildren alerted } } }",
            json!({}),
        )
        .await;
    let mut alerted: Vec<&str> = alerts["data"]["accessAlerts"]
        .as_array()
        .unwrap_or_else(|| panic!("{alerts:#}"))
        .iter()
        .filter_map(|a| a["userId"].as_str())
        .collect();
    alerted.sort_unstable();
    // The teacher's three searches, two on a and one on b, passed it too.
    assert_eq!(alerted, ["gp", "mch-nurse", "teacher"], "{alerts:#}");
    let users = &alerts["data"]["viewingActivity"]["users"];
    assert!(
        users.as_array().is_some_and(
            |u| u.contains(&json!({ "userId": "gp", "distinctChildren": 3, "alerted": true }))
        ),
        "{alerts:#}"
    );

    // Both gateways wrote to one audit chain, which is whole, and which records each refusal.
    let store = childgraph::store::Store::open(&store_config(&site.database))
        .await
        .expect("the database opens");
    let (whole, report) = childgraph::audit_cli::verify(&store).await.expect("verify");
    assert!(whole, "{report}");
    let refused = childgraph::audit::for_child(&store, isla)
        .await
        .expect("the child's records")
        .into_iter()
        .filter(|r| r.entry.user_id == "gp" && r.entry.outcome == "rate_limited")
        .count();
    assert_eq!(refused, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_database_goes_down_answers_internal_and_recovers_by_itself() {
    let Some(postgres) = Postgres::start() else {
        return;
    };
    let site = Site::new(postgres.url()).await;
    let gateway = site.gateway("gateway", 0, 0).await;
    let amelia = site.find(&gateway, "gp", "Hartley", "2019-06-14").await;
    let given = |child: Value| child["name"]["given"].clone();
    assert_eq!(
        site.view(&gateway, "gp", &amelia[0]).await.map(given),
        Ok(json!("Amelia"))
    );

    postgres.script("halt");
    // While the database is down: INTERNAL, and no child data, within the store's acquire timeout.
    for _ in 0..3 {
        let started = Instant::now();
        let answer = site
            .query(&gateway, "gp", VIEW, json!({ "id": amelia[0] }))
            .await;
        assert_eq!(
            answer["errors"][0]["extensions"]["code"], "INTERNAL",
            "{answer:#}"
        );
        assert!(
            answer["data"].is_null() || answer["data"]["child"].is_null(),
            "{answer:#}"
        );
        assert!(!answer.to_string().contains("Amelia"), "{answer:#}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a request waited {:?} on the database",
            started.elapsed()
        );
    }
    assert!(
        !gateway.ready(&site.http).await,
        "not ready without its store"
    );

    postgres.script("resume");
    let back = Instant::now();
    loop {
        match site.view(&gateway, "gp", &amelia[0]).await {
            Ok(child) => {
                assert_eq!(given(child), "Amelia");
                break;
            }
            Err(code) => {
                assert_eq!(code, "INTERNAL");
                assert!(
                    back.elapsed() < Duration::from_secs(30),
                    "the gateway did not recover within 30 s of the database's return"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert!(gateway.ready(&site.http).await);
    // The answers sent are in the audit chain, whole; the refused ones left no record of an answer.
    let store = childgraph::store::Store::open(&store_config(&site.database))
        .await
        .expect("the database opens");
    let (whole, report) = childgraph::audit_cli::verify(&store).await.expect("verify");
    assert!(whole, "{report}");
    let views: Vec<String> = childgraph::audit::for_child(&store, &amelia[0])
        .await
        .expect("the child's records")
        .into_iter()
        .filter(|r| r.entry.operation == "view")
        .map(|r| r.entry.outcome)
        .collect();
    assert_eq!(views, ["ok", "ok"]);
}
