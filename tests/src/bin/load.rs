//! `load`: a load benchmark of the gateway alone, run as its own `childgraph serve` process in front of the three simulators, reporting throughput, latency, overhead above the slowest source, source requests per query, CPU and peak memory.
//!
//! ```text
//! cargo run --release -p childgraph-tests --bin load -- --query child --rps 200 --seconds 10
//! cargo run --release -p childgraph-tests --bin load -- --preset issue3
//! ```
//!
//! The simulators and the load generator run in this process; the gateway runs in a child process so that
//! `/proc/<pid>` gives its CPU time and peak resident memory alone. Linux only, for `/proc`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use childgraph::demo::IDENTITIES;
use childgraph::store::Store;
use childgraph_connectors::HttpVersion;
use childgraph_simulators::population::{Crowd, Population, PopulationConfig};
use childgraph_simulators::{Faults, SimulatorHandle};
use clap::{Parser, ValueEnum};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The simulators and the load generator share the machine with the gateway: the same allocator as the gateway keeps
/// their share of the CPU small.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The user the benchmark queries as: the GP's role sees the most fields, so answers are as large as they get.
const USER: &str = "gp";
const ISSUER: &str = "urn:childgraph:bench";
const KID: &str = "bench";
/// A request slower than this counts as an error; well above the gateway's own 2 s deadline.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Children sharing a family name and date of birth, so that the search cost is measured at 10 and 50 results.
/// `child` queries never use them: their ids come from the other searches.
const CROWDS: [(&str, &str, usize); 2] = [
    ("Crowder", "2016-05-05", 10),
    ("Manyfold", "2020-02-02", 50),
];

#[derive(Debug, Parser)]
#[command(
    name = "load",
    about = "Load benchmark of the childgraph gateway against the simulators"
)]
struct Args {
    /// Generated children besides the demo cast.
    #[arg(long, default_value_t = 2000)]
    children: usize,
    /// The population seed; fixed so runs compare.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Fixed delay every simulator adds to every answer.
    #[arg(long, default_value_t = 10)]
    latency_ms: u64,
    /// Extra delay, a whole number of milliseconds drawn from 0 to this, for each answer.
    #[arg(long, default_value_t = 2)]
    jitter_ms: u64,
    #[arg(long, value_enum, default_value_t = QueryKind::Child)]
    query: QueryKind,
    /// Open loop: start this many requests a second, whatever the answers do.
    #[arg(long, conflicts_with = "concurrency")]
    rps: Option<u32>,
    /// Closed loop: this many clients, each sending its next request when the last is answered.
    #[arg(long)]
    concurrency: Option<usize>,
    /// How long each scenario sends requests.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Runs a named set of scenarios instead of one.
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// The most requests in flight in open loop; a tick beyond it is counted as shed, not sent.
    #[arg(long, default_value_t = 2000)]
    max_in_flight: usize,
    /// `off` writes `cache: {enabled: false}` for every source; `default` leaves the gateway's own setting.
    #[arg(long, value_enum, default_value_t = CacheMode::Default)]
    cache: CacheMode,
    /// The `http_version` of every source: `auto` (the gateway's default, HTTP/1.1 to the simulators' `http://`
    /// URLs), `http1` or `http2` (h2c, which the simulators speak too).
    #[arg(long, default_value = "auto")]
    source_http: HttpVersion,
    /// How many search criteria to draw from the population.
    #[arg(long, default_value_t = 200)]
    criteria: usize,
    /// The `childgraph` binary; by default `cargo build --release -p childgraph` and the one beside this binary.
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// Runs the scenarios this many times, in rounds (every scenario once, then again), each run on a fresh gateway,
    /// and adds each scenario's median and range: one run's figures move with the machine's pace.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum QueryKind {
    /// `child` with every field.
    Child,
    /// `child` with its identity fields only: the sources' first phase, no details.
    Card,
    /// `searchChildren` by family name and date of birth, every field of each match.
    Search,
    /// `child` and `search` in turn.
    Mixed,
    /// `me`: authentication and GraphQL alone, no source call; the gateway's floor.
    Me,
}

impl QueryKind {
    fn name(self) -> &'static str {
        match self {
            QueryKind::Child => "child",
            QueryKind::Card => "card",
            QueryKind::Search => "search",
            QueryKind::Mixed => "mixed",
            QueryKind::Me => "me",
        }
    }
}

/// Whether the gateway caches source answers during a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CacheMode {
    /// Whatever the gateway does when the config says nothing.
    Default,
    /// Every query goes to the sources.
    Off,
}

impl CacheMode {
    fn name(self) -> &'static str {
        match self {
            CacheMode::Default => "default",
            CacheMode::Off => "off",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Preset {
    /// The scenarios issue 3 asks for.
    Issue3,
}

#[derive(Debug, Clone, Copy)]
enum Load {
    /// Requests a second, started on schedule.
    Open(u32),
    /// Clients in a loop.
    Closed(usize),
}

impl Load {
    fn describe(self) -> String {
        match self {
            Load::Open(r) => format!("open {r} rps"),
            Load::Closed(c) => format!("closed c={c}"),
        }
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    name: String,
    query: QueryKind,
    load: Load,
    seconds: u64,
    faults: Faults,
    cache: CacheMode,
    http: HttpVersion,
}

/// Every field of a child, so the gateway fetches and composes everything a GP may see.
const CHILD_FIELDS: &str = "fragment C on Child {
  id shielded
  name { given family } dateOfBirth gender
  identifiers { kind value source }
  address { lines postcode }
  carers { name relationship phone email address { lines postcode } }
  services { kind source status start end
    organisation { kind name phone email address { lines postcode } }
    practitioner { name role phone email } }
  participation { kind source description status date end organisation { kind name } }
  flags { id kind note raisedAt expiresAt raisedBy { name organisation phone email } }
  sources { source status responseTimeMs asOf }
}";

fn child_query() -> String {
    format!(
        "query($id: ID!) {{ child(id: $id, access: {{purpose: SAFEGUARDING}}) {{ ...C }} }}\n{CHILD_FIELDS}"
    )
}

const CARD_QUERY: &str = "query($id: ID!) { child(id: $id, access: {purpose: SAFEGUARDING}) { id shielded name { given family } dateOfBirth gender sources { source status responseTimeMs asOf } } }";

const ME_QUERY: &str = "{ me { userId roles organisation { id name } } }";

fn search_query() -> String {
    format!(
        "query($f: String!, $d: Date!) {{ searchChildren(criteria: {{familyName: $f, dateOfBirth: $d}}, access: {{purpose: SAFEGUARDING}}) {{ tooManyResults matches {{ score child {{ ...C }} }} }} }}\n{CHILD_FIELDS}"
    )
}

/// What one request came to.
#[derive(Debug, Clone)]
struct Sample {
    /// From when the request was due (open loop) or sent (closed loop) to the end of the answer.
    latency_us: u64,
    /// From when the request was due to when the load generator started sending it: its own lag, part of the
    /// latency, and none of the gateway's overhead.
    lag_us: u64,
    /// None for an answer; the kind of failure otherwise.
    error: Option<String>,
    /// The time of the slowest source the gateway waited for: its `Server-Timing` `slowest-source`, or the largest
    /// `responseTimeMs` in the answer, in microseconds.
    slowest_source_us: Option<u64>,
    /// The gateway's own report of how long it waited on sources (`Server-Timing: source`), in microseconds.
    source_wait_us: Option<u64>,
    /// How long the composed answer waited for its access record's commit (`Server-Timing: audit`), in microseconds.
    audit_wait_us: Option<u64>,
    /// Children in the answer.
    children: usize,
    /// Children ids, kept only while collecting ids.
    ids: Vec<String>,
}

/// The parts every scenario shares.
struct Bench {
    dir: tempfile::TempDir,
    gateway_bin: PathBuf,
    simulators: [SimulatorHandle; 3],
    token: String,
    http: reqwest::Client,
    criteria: Vec<(String, String)>,
    ids: Vec<String>,
    clock_ticks: f64,
}

impl std::fmt::Debug for Bench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bench")
    }
}

/// The gateway child process.
#[derive(Debug)]
struct Gateway {
    process: Child,
    url: String,
}

impl Gateway {
    fn pid(&self) -> u32 {
        self.process.id()
    }

    /// utime + stime from `/proc/<pid>/stat`, in clock ticks.
    fn cpu_ticks(&self) -> anyhow::Result<u64> {
        proc_cpu_ticks(&format!("/proc/{}/stat", self.pid()))
    }

    /// `VmHWM` from `/proc/<pid>/status`: the peak resident set since start, in KiB.
    fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmHWM in /proc status")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // The process is ours alone; killing it by its own handle ends it whatever state the bench is in.
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// utime + stime of a process, from its `stat` file.
fn proc_cpu_ticks(path: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(path)?;
    // The command name in field 2 may hold spaces and brackets, so count fields from its closing bracket.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// The kernel's clock tick rate; `getconf` because calling `sysconf` would need `unsafe`, which the workspace forbids.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// One thread for the load generator and the simulators together: they share the machine with the gateway, and
/// one thread spends less of it than a work-stealing pool does on the same work (no wake-ups across threads).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scenarios = scenarios(&args);
    let (_stop, stopped) = watch::channel(false);
    let bench = Bench::prepare(&args, stopped).await?;

    let mut results = Vec::new();
    for (round, scenario) in rounds(&scenarios, args.repeat) {
        eprintln!(
            "running {}{}: {} {} for {} s, sources at {} ms, cache {}, source http {}",
            scenario.name,
            run_label(round, args.repeat),
            scenario.query.name(),
            scenario.load.describe(),
            scenario.seconds,
            source_delay(&scenario.faults),
            scenario.cache.name(),
            scenario.http.as_str()
        );
        let mut outcome = bench.run(scenario, args.max_in_flight).await?;
        outcome.row[0].push_str(&run_label(round, args.repeat));
        outcome.json["run"] = json!(round);
        results.push(outcome);
    }
    let summary = (args.repeat > 1).then(|| Summary::of(&scenarios, &results));
    let per_search = if args.preset == Some(Preset::Issue3) {
        let faults = Faults {
            latency_ms: args.latency_ms,
            jitter_ms: args.jitter_ms,
            ..Faults::default()
        };
        eprintln!("running search-cost: one search at a time, to count source requests per search");
        Some(
            bench
                .search_cost(faults, args.cache, args.source_http)
                .await?,
        )
    } else {
        None
    };

    print_table(&results);
    if let Some(summary) = &summary {
        print_summary(summary, args.repeat);
    }
    if let Some(cost) = &per_search {
        print_search_cost(cost);
    }
    let report = json!({
        "bench": "childgraph-load",
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "children": args.children,
        "seed": args.seed,
        "clock_ticks_per_s": bench.clock_ticks,
        // `child` queries cycle over these ids, so a cache in the gateway sees each id again and again.
        "child_ids": bench.ids.len(),
        "search_criteria": bench.criteria.len(),
        "scenarios": results.iter().map(|r| r.json.clone()).collect::<Vec<_>>(),
        "summary": summary.map(|s| s.json),
        "search_cost": per_search.map(|c| c.json),
    });
    println!("{report}");
    drop(bench.dir);
    Ok(())
}

/// The runs, in rounds: every scenario once, then every one again, so that a drift in the machine's pace during the
/// runs falls on every scenario alike rather than on the last ones. Rounds count from 1.
fn rounds(scenarios: &[Scenario], repeat: u32) -> impl Iterator<Item = (u32, &Scenario)> {
    (1..=repeat).flat_map(move |round| scenarios.iter().map(move |s| (round, s)))
}

/// ` #2 of 3` after a scenario's name when it runs more than once.
fn run_label(round: u32, repeat: u32) -> String {
    if repeat > 1 {
        format!(" #{round} of {repeat}")
    } else {
        String::new()
    }
}

/// The figures the summary gives for each scenario: the summary's key, the figure's path in a run's JSON (a field,
/// and a field within it or none), and the table's heading.
const SUMMARISED: [(&str, &str, &str, &str); 5] = [
    ("answers_per_s", "answers_per_s", "", "ans/s"),
    ("overhead_p50_ms", "overhead_ms", "p50", "ovh p50"),
    ("overhead_p99_ms", "overhead_ms", "p99", "ovh p99"),
    (
        "gateway_cpu_ms_per_answer",
        "gateway_cpu_ms_per_answer",
        "",
        "cpu ms/ans",
    ),
    // The longest wait for a commit: a run that met a stall of the disk's sync shows here.
    ("audit_wait_max_ms", "audit_wait_ms", "max", "audit max"),
];

/// Each scenario's median, least and greatest, over its runs, of the figures in [`SUMMARISED`].
#[derive(Debug)]
struct Summary {
    rows: Vec<Vec<String>>,
    json: Value,
}

impl Summary {
    fn of(scenarios: &[Scenario], results: &[Outcome]) -> Self {
        let mut rows = Vec::new();
        let mut json = Vec::new();
        for scenario in scenarios {
            let runs: Vec<&Value> = results
                .iter()
                .map(|r| &r.json)
                .filter(|j| j["name"] == scenario.name.as_str())
                .collect();
            let mut row = vec![scenario.name.clone(), runs.len().to_string()];
            let mut figures = serde_json::Map::new();
            for (key, field, within, _) in SUMMARISED {
                let values: Vec<f64> = runs
                    .iter()
                    .filter_map(|j| {
                        let v = &j[field];
                        if within.is_empty() { v } else { &v[within] }.as_f64()
                    })
                    .collect();
                let Some(spread) = Spread::of(values) else {
                    row.push("-".to_owned());
                    continue;
                };
                row.push(format!(
                    "{} ({}-{})",
                    spread.median, spread.least, spread.greatest
                ));
                figures.insert(
                    key.to_owned(),
                    json!({"median": spread.median, "min": spread.least, "max": spread.greatest}),
                );
            }
            rows.push(row);
            figures.insert("name".to_owned(), json!(scenario.name));
            figures.insert("runs".to_owned(), json!(runs.len()));
            json.push(Value::Object(figures));
        }
        Self {
            rows,
            json: Value::Array(json),
        }
    }
}

/// The median, least and greatest of some runs' figure.
#[derive(Debug, PartialEq)]
struct Spread {
    /// The middle value, or the mean of the middle two when the runs are even in number, to the figures' precision.
    median: f64,
    least: f64,
    greatest: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Option<Self> {
        values.retain(|v| v.is_finite());
        values.sort_by(f64::total_cmp);
        let (&least, &greatest) = (values.first()?, values.last()?);
        let mid = values.len() / 2;
        let median = if values.len() % 2 == 1 {
            values[mid]
        } else {
            ((values[mid - 1] + values[mid]) / 2.0 * 100.0).round() / 100.0
        };
        Some(Self {
            median,
            least,
            greatest,
        })
    }
}

fn scenarios(args: &Args) -> Vec<Scenario> {
    let sources = Faults {
        latency_ms: args.latency_ms,
        jitter_ms: args.jitter_ms,
        ..Faults::default()
    };
    match args.preset {
        Some(Preset::Issue3) => {
            // The goal's sources answer at a set latency; with `--jitter-ms`, again with each answer up to that much
            // later, which the answers that wait for a source feel twice: each phase waits for its slowest source.
            let flat = Faults {
                jitter_ms: 0,
                ..sources
            };
            let mut conditions = vec![("", flat)];
            if sources.jitter_ms > 0 {
                conditions.push(("-jitter", sources));
            }
            // First the floor at the goal's rate: `me`, a round trip with authentication and GraphQL but no source
            // and no access record. What it takes is the machine's and the gateway's least, whatever the query, and
            // shows how the machine is pacing during the run, which moves the goal's figure as much as a change does.
            let floor = Scenario {
                name: format!("a-me-{GOAL_RPS}rps"),
                query: QueryKind::Me,
                load: Load::Open(GOAL_RPS),
                seconds: args.seconds,
                faults: flat,
                cache: args.cache,
                http: args.source_http,
            };
            let mut list: Vec<Scenario> = std::iter::once(floor)
                .chain(conditions.into_iter().flat_map(|(jitter, faults)| {
                    [50, GOAL_RPS, 500].into_iter().map(move |rps| Scenario {
                        name: format!("a-child-{rps}rps{jitter}"),
                        query: QueryKind::Child,
                        load: Load::Open(rps),
                        // The goal's p99 rests on the 1% slowest answers: at the goal's rate, 20 in 10 s, as many as
                        // one stall of the disk's sync can hold. Three times as long, a run's p99 varies less.
                        seconds: if rps == GOAL_RPS {
                            3 * args.seconds
                        } else {
                            args.seconds
                        },
                        faults,
                        cache: args.cache,
                        http: args.source_http,
                    })
                }))
                .collect();
            // Saturation with and without the cache: without it, every query costs the gateway its whole fan-out.
            // And without it over HTTP/2, which a source offering it over TLS is spoken to in by default.
            let mut saturation = vec![
                (CacheMode::Off, args.source_http),
                (CacheMode::Default, args.source_http),
            ];
            if args.source_http != HttpVersion::Http2 {
                saturation.insert(1, (CacheMode::Off, HttpVersion::Http2));
            }
            for (cache, http) in saturation {
                let over = if http == args.source_http {
                    String::new()
                } else {
                    format!("-{}", http.as_str())
                };
                list.push(Scenario {
                    name: format!("b-child-saturation-0ms-cache-{}{over}", cache.name()),
                    query: QueryKind::Child,
                    load: Load::Closed(args.concurrency.unwrap_or(64)),
                    seconds: args.seconds,
                    faults: Faults::default(),
                    cache,
                    http,
                });
            }
            list
        }
        None => vec![Scenario {
            name: "custom".to_owned(),
            query: args.query,
            load: match (args.rps, args.concurrency) {
                (Some(r), _) => Load::Open(r),
                (None, Some(c)) => Load::Closed(c),
                (None, None) => Load::Open(50),
            },
            seconds: args.seconds,
            faults: sources,
            cache: args.cache,
            http: args.source_http,
        }],
    }
}

impl Bench {
    /// Generates the population, starts the simulators, writes the key and seeds the store, then finds child ids by searching.
    async fn prepare(args: &Args, stopped: watch::Receiver<bool>) -> anyhow::Result<Self> {
        let gateway_bin = match &args.gateway_bin {
            Some(bin) => bin.clone(),
            None => build_gateway()?,
        };
        let dir = tempfile::tempdir()?;
        let population = Arc::new(Population::generate(&PopulationConfig {
            children: args.children,
            seed: args.seed,
            crowds: CROWDS
                .iter()
                .map(|&(family, born, size)| Crowd {
                    family_name: family.to_owned(),
                    date_of_birth: born.parse().expect("a crowd's date"),
                    size,
                })
                .collect(),
            ..PopulationConfig::default()
        }));
        let criteria = pick_criteria(&population, args.criteria);

        let simulators = childgraph_simulators::spawn_all(population, Faults::default(), || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        })
        .await?;

        let token = write_key_and_sign(dir.path())?;
        seed_store(&dir.path().join("childgraph.db")).await?;
        let http = reqwest::Client::builder()
            .timeout(CLIENT_TIMEOUT)
            .pool_max_idle_per_host(4096)
            .build()?;
        let mut bench = Bench {
            dir,
            gateway_bin,
            simulators,
            token,
            http,
            criteria,
            ids: Vec::new(),
            clock_ticks: clock_ticks(),
        };

        // Searching is what links records into children and gives them ids; sources answer at once here to save time.
        let gateway = bench.start_gateway(args.cache, args.source_http).await?;
        let body = |i: usize| encoded(&bench.search_body(i));
        let samples = concurrent(&bench, &gateway, 8, bench.criteria.len(), body, true).await;
        drop(gateway);
        let mut ids: Vec<String> = samples.into_iter().flat_map(|s| s.ids).collect();
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            bail!("no search found a child: check the gateway log in the bench's temp dir");
        }
        eprintln!(
            "{} criteria found {} children",
            bench.criteria.len(),
            ids.len()
        );
        bench.ids = ids;
        Ok(bench)
    }

    fn set_faults(&self, faults: Faults) -> anyhow::Result<()> {
        for sim in &self.simulators {
            sim.faults.set(faults).map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }

    fn source_requests(&self) -> Vec<u64> {
        self.simulators
            .iter()
            .map(SimulatorHandle::requests)
            .collect()
    }

    fn child_body(&self, i: usize) -> Value {
        let id = &self.ids[i % self.ids.len()];
        json!({ "query": child_query(), "variables": { "id": id } })
    }

    fn search_body(&self, i: usize) -> Value {
        let (family, birth) = &self.criteria[i % self.criteria.len()];
        json!({ "query": search_query(), "variables": { "f": family, "d": birth } })
    }

    /// The `i`th request body of a kind of query, encoded: bodies are encoded before a run, so that the clients spend
    /// none of the time they measure on it.
    fn body(&self, query: QueryKind, i: usize) -> Bytes {
        encoded(&self.body_value(query, i))
    }

    fn body_value(&self, query: QueryKind, i: usize) -> Value {
        match query {
            QueryKind::Child => self.child_body(i),
            QueryKind::Card => {
                let id = &self.ids[i % self.ids.len()];
                json!({ "query": CARD_QUERY, "variables": { "id": id } })
            }
            QueryKind::Me => json!({ "query": ME_QUERY }),
            QueryKind::Search => self.search_body(i),
            QueryKind::Mixed if i.is_multiple_of(2) => self.child_body(i / 2),
            QueryKind::Mixed => self.search_body(i / 2),
        }
    }

    /// Writes a config naming a free port and starts `childgraph serve` on it, waiting for `/readyz`.
    async fn start_gateway(&self, cache: CacheMode, http: HttpVersion) -> anyhow::Result<Gateway> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = self.dir.path().join("childgraph.yaml");
        std::fs::write(&config, self.config_yaml(port, cache, http))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("gateway.log"))?;
        let process = Command::new(&self.gateway_bin)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.gateway_bin.display()))?;
        let mut gateway = Gateway {
            process,
            url: format!("http://127.0.0.1:{port}"),
        };
        let ready = format!("{}/readyz", gateway.url);
        let give_up = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = gateway.process.try_wait()? {
                bail!(
                    "the gateway exited with {status}; see {}",
                    self.dir.path().join("gateway.log").display()
                );
            }
            if let Ok(r) = self.http.get(&ready).send().await
                && r.status().is_success()
            {
                return Ok(gateway);
            }
            if Instant::now() > give_up {
                bail!("the gateway was not ready within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn config_yaml(&self, port: u16, cache: CacheMode, http: HttpVersion) -> String {
        // JSON strings are YAML strings, and escape whatever a temp path holds.
        let quote = |s: &str| Value::String(s.to_owned()).to_string();
        let path = |name: &str| quote(&self.dir.path().join(name).display().to_string());
        let cache = match cache {
            CacheMode::Default => "",
            CacheMode::Off => "\n    cache: {enabled: false}",
        };
        let http = match http {
            HttpVersion::Auto => String::new(),
            other => format!("\n    http_version: {}", other.as_str()),
        };
        let base = |i: usize| {
            format!(
                "{}{cache}{http}",
                quote(self.simulators[i].base_url().as_str())
            )
        };
        format!(
            "listen: 127.0.0.1:{port}
store:
  sqlite: {store}
request:
  deadline_ms: 2000
  max_results: 50
  # The benchmark measures capacity: one user searches and views far more than a person would.
  searches_per_minute: 0
  children_per_hour: 0
auth:
  issuers:
    - issuer: {ISSUER}
      audience: childgraph
      required_amr: [mfa]
      keys:
        - kid: {KID}
          algorithm: EdDSA
          public_key_file: {key}
sources:
  health:
    base_url: {health}
  school:
    base_url: {school}
    filter_max_predicates: 50
  early_years:
    base_url: {early_years}
",
            store = path("childgraph.db"),
            key = path("bench-public.pem"),
            health = base(0),
            school = base(1),
            early_years = base(2),
        )
    }

    /// Runs one scenario on a fresh gateway process, so its CPU time and peak memory are the scenario's own.
    async fn run(&self, scenario: &Scenario, max_in_flight: usize) -> anyhow::Result<Outcome> {
        self.set_faults(scenario.faults)?;
        let gateway = self.start_gateway(scenario.cache, scenario.http).await?;
        // Warm up connection pools on both sides, outside the measurement.
        let query = scenario.query;
        concurrent(self, &gateway, 4, 40, |i| self.body(query, i), false).await;

        let before = self.source_requests();
        let policy_before = self.policy_seconds(&gateway).await?;
        let cpu_before = gateway.cpu_ticks()?;
        let bench_before = proc_cpu_ticks("/proc/self/stat")?;
        let started = Instant::now();
        let duration = Duration::from_secs(scenario.seconds);
        let (samples, shed) = match scenario.load {
            Load::Open(rps) => open_loop(self, &gateway, query, rps, duration, max_in_flight).await,
            Load::Closed(clients) => (
                closed_loop(self, &gateway, query, clients, duration).await,
                0,
            ),
        };
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = (gateway.cpu_ticks()? - cpu_before) as f64 / self.clock_ticks;
        let bench_cpu =
            (proc_cpu_ticks("/proc/self/stat")? - bench_before) as f64 / self.clock_ticks;
        let policy = self.policy_seconds(&gateway).await? - policy_before;
        let peak_kib = gateway.peak_rss_kib()?;
        let after = self.source_requests();
        drop(gateway);

        Ok(Outcome::new(
            scenario,
            &samples,
            shed,
            elapsed,
            SourceDelta::new(&before, &after),
            Cpu {
                gateway: cpu,
                policy,
                bench: bench_cpu,
            },
            peak_kib,
        ))
    }

    /// The gateway's own count of the time it spent on policy work, `childgraph_policy_seconds_total` on `/metrics`.
    async fn policy_seconds(&self, gateway: &Gateway) -> anyhow::Result<f64> {
        let text = self
            .http
            .get(format!("{}/metrics", gateway.url))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        text.lines()
            .find_map(|l| l.strip_prefix("childgraph_policy_seconds_total "))
            .and_then(|v| v.trim().parse().ok())
            .context("no childgraph_policy_seconds_total on /metrics")
    }

    /// Runs every search once, one at a time, so each search's source requests are the counters' change across it;
    /// then groups them by how many children the search returned.
    async fn search_cost(
        &self,
        faults: Faults,
        cache: CacheMode,
        http: HttpVersion,
    ) -> anyhow::Result<SearchCost> {
        self.set_faults(faults)?;
        let gateway = self.start_gateway(cache, http).await?;
        let mut criteria = self.criteria.clone();
        // A family name nobody has, so the cost of an empty search shows too, and the crowds, for 10 and 50 results.
        criteria.push(("Zzyzxq".to_owned(), "2019-01-01".to_owned()));
        criteria.extend(
            CROWDS
                .iter()
                .map(|&(family, born, _)| (family.to_owned(), born.to_owned())),
        );
        let url = format!("{}/graphql", gateway.url);
        let mut groups: BTreeMap<usize, (u64, [u64; 3], Vec<u64>)> = BTreeMap::new();
        for (family, birth) in &criteria {
            let body = encoded(
                &json!({ "query": search_query(), "variables": { "f": family, "d": birth } }),
            );
            let before = self.source_requests();
            let sample = send(&self.http, &url, &self.token, &body, Instant::now(), false).await;
            let after = self.source_requests();
            if sample.error.is_some() {
                continue;
            }
            let group = groups.entry(sample.children).or_default();
            group.0 += 1;
            for (i, count) in group.1.iter_mut().enumerate() {
                *count += after[i] - before[i];
            }
            group.2.push(sample.latency_us);
        }
        drop(gateway);
        Ok(SearchCost::new(groups))
    }
}

/// Builds the gateway binary and returns its path, beside this binary in the same target directory.
fn build_gateway() -> anyhow::Result<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the tests crate sits in the workspace")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("building the gateway: cargo build --release -p childgraph");
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "childgraph"])
        .current_dir(workspace)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!(
            "cargo build --release -p childgraph failed; pass --gateway-bin to use a built binary"
        );
    }
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .context("this binary has a directory")?
        .join("childgraph");
    if !bin.exists() {
        bail!("no gateway binary at {}; pass --gateway-bin", bin.display());
    }
    Ok(bin)
}

/// Family name and date of birth of children spread over the whole population, as the health system records them,
/// leaving out the crowds.
fn pick_criteria(population: &Population, count: usize) -> Vec<(String, String)> {
    let records: Vec<_> = population
        .health
        .iter()
        .filter(|r| CROWDS.iter().all(|&(family, _, _)| &*r.family != family))
        .collect();
    let step = (records.len() / count.max(1)).max(1);
    records
        .iter()
        .step_by(step)
        .take(count)
        .map(|r| (r.family.to_string(), r.birth_date.to_string()))
        .collect()
}

/// A fresh Ed25519 key: the public half for the gateway's config, the private half to sign the bench user's token.
fn write_key_and_sign(dir: &Path) -> anyhow::Result<String> {
    let signing = SigningKey::generate(&mut rand::rngs::OsRng);
    let public = signing
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .context("encoding the public key")?;
    std::fs::write(dir.join("bench-public.pem"), public)?;
    let private = signing
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding the private key")?;
    let key = EncodingKey::from_ed_pem(private.as_bytes())?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(KID.to_owned());
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = json!({
        "iss": ISSUER,
        "aud": "childgraph",
        "sub": USER,
        "iat": now,
        "nbf": now,
        // Long enough for any preset.
        "exp": now + 8 * 3600,
        "amr": ["mfa"],
    });
    Ok(jsonwebtoken::encode(&header, &claims, &key)?)
}

/// Creates the store with the GP's account, as the demo seeds it, before the gateway opens it.
async fn seed_store(path: &Path) -> anyhow::Result<()> {
    let identity = IDENTITIES
        .iter()
        .find(|i| i.user == USER)
        .context("the demo identities include a GP")?;
    let store = Store::open_sqlite(path).await?;
    store.upsert_account(&identity.account()).await?;
    Ok(())
}

/// A request body as JSON bytes.
fn encoded(body: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(body).expect("a JSON value encodes"))
}

/// Sends one GraphQL request and reads what it came to. `due` is when the request should have started.
async fn send(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Bytes,
    due: Instant,
    keep_ids: bool,
) -> Sample {
    // How late the request starts: the load generator's own lag, in which the gateway has no part.
    let lag_us = due.elapsed().as_micros() as u64;
    let mut received = None;
    let result = async {
        let response = http
            .post(url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "timeout".to_owned()
                } else {
                    "transport".to_owned()
                }
            })?;
        let status = response.status();
        let timing = response
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .map(Timing::of)
            .unwrap_or_default();
        let body = response.bytes().await.map_err(|_| "body".to_owned())?;
        // The answer is in: what the client does with it next is its own time.
        received = Some(due.elapsed());
        let answer: Reply = serde_json::from_slice(&body).map_err(|_| "body".to_owned())?;
        if !status.is_success() {
            return Err(format!("http {}", status.as_u16()));
        }
        Ok((answer, timing))
    }
    .await;
    let latency_us = received.unwrap_or_else(|| due.elapsed()).as_micros() as u64;
    let (answer, timing) = match result {
        Ok(answer) => answer,
        Err(error) => {
            return Sample {
                latency_us,
                lag_us,
                error: Some(error),
                slowest_source_us: None,
                source_wait_us: None,
                audit_wait_us: None,
                children: 0,
                ids: Vec::new(),
            };
        }
    };
    // A GP is refused some fields by policy (REDACTED): that is an answer, not an error.
    let error = answer
        .errors
        .iter()
        .map(|e| {
            e.extensions
                .as_ref()
                .and_then(|x| x.code.as_deref())
                .unwrap_or("NO_CODE")
        })
        .find(|code| *code != "REDACTED")
        .map(str::to_owned);
    let (children, no_data): (Vec<ReplyChild>, bool) = match answer.data {
        None => (Vec::new(), true),
        Some(ReplyData {
            child: Some(child), ..
        }) => (vec![child], false),
        Some(ReplyData { search, .. }) => (
            search
                .into_iter()
                .flat_map(|s| s.matches)
                .filter_map(|m| m.child)
                .collect(),
            false,
        ),
    };
    // The gateway's unrounded figure when it gives one; the answer's largest `responseTimeMs` otherwise.
    let slowest_source_us = timing.slowest_source_us.or_else(|| {
        children
            .iter()
            .flat_map(|c| c.sources.iter().flatten())
            .filter_map(|s| s.response_time_ms)
            .max()
            .map(|ms| ms * 1000)
    });
    let error = error.or_else(|| no_data.then(|| "no data".to_owned()));
    Sample {
        latency_us,
        lag_us,
        error,
        slowest_source_us,
        source_wait_us: timing.source_wait_us,
        audit_wait_us: timing.audit_wait_us,
        children: children.len(),
        ids: if keep_ids {
            children.into_iter().filter_map(|c| c.id).collect()
        } else {
            Vec::new()
        },
    }
}

/// The parts of a GraphQL answer the benchmark reads; serde skips the rest without building it.
#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    data: Option<ReplyData>,
    #[serde(default)]
    errors: Vec<ReplyError>,
}

#[derive(Deserialize)]
struct ReplyData {
    #[serde(default)]
    child: Option<ReplyChild>,
    #[serde(default, rename = "searchChildren")]
    search: Option<ReplySearch>,
}

#[derive(Deserialize)]
struct ReplySearch {
    #[serde(default)]
    matches: Vec<ReplyMatch>,
}

#[derive(Deserialize)]
struct ReplyMatch {
    #[serde(default)]
    child: Option<ReplyChild>,
}

#[derive(Deserialize)]
struct ReplyChild {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    sources: Option<Vec<ReplySource>>,
}

#[derive(Deserialize)]
struct ReplySource {
    #[serde(default, rename = "responseTimeMs")]
    response_time_ms: Option<u64>,
}

#[derive(Deserialize)]
struct ReplyError {
    #[serde(default)]
    extensions: Option<ReplyExtensions>,
}

#[derive(Deserialize)]
struct ReplyExtensions {
    #[serde(default)]
    code: Option<String>,
}

/// Sends `total` requests with `clients` at a time; for setup and warm-up.
async fn concurrent(
    bench: &Bench,
    gateway: &Gateway,
    clients: usize,
    total: usize,
    body: impl Fn(usize) -> Bytes,
    keep_ids: bool,
) -> Vec<Sample> {
    let url = format!("{}/graphql", gateway.url);
    let bodies: Vec<Bytes> = (0..total).map(body).collect();
    let next = AtomicUsize::new(0);
    let worker = || async {
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(body) = bodies.get(i) else {
                return out;
            };
            out.push(
                send(
                    &bench.http,
                    &url,
                    &bench.token,
                    body,
                    Instant::now(),
                    keep_ids,
                )
                .await,
            );
        }
    };
    let all = futures::future::join_all((0..clients).map(|_| worker())).await;
    all.into_iter().flatten().collect()
}

/// Starts `rps` requests a second on schedule for `duration`, each on its own task, and measures each from when it was due,
/// so a slow gateway shows as latency rather than as fewer requests.
///
/// The schedule is kept by a thread of its own that sleeps to each due time with the system's timer, then hands the
/// request to the runtime. Tokio's timer ticks in whole milliseconds, so a request it wakes for is sent up to a
/// millisecond after it was due. The hand-over still takes the runtime's thread a wake-up, a tenth of a millisecond or
/// more on a virtual machine: each sample keeps that lag (`lag_us`), which the latency includes, as an open loop's
/// must, and the overheads leave out, as none of the gateway's.
async fn open_loop(
    bench: &Bench,
    gateway: &Gateway,
    query: QueryKind,
    rps: u32,
    duration: Duration,
    max_in_flight: usize,
) -> (Vec<Sample>, u64) {
    let url: Arc<str> = format!("{}/graphql", gateway.url).into();
    let token: Arc<str> = bench.token.clone().into();
    let period = Duration::from_secs_f64(1.0 / f64::from(rps.max(1)));
    let count = (duration.as_secs_f64() / period.as_secs_f64()).ceil() as usize;
    let bodies: Vec<Bytes> = (0..count).map(|i| bench.body(query, i)).collect();
    let runtime = tokio::runtime::Handle::current();
    let http = bench.http.clone();
    // On the runtime's blocking pool: a thread of its own, which the runtime's tasks never share.
    let dispatcher = tokio::task::spawn_blocking(move || {
        // The kernel may let a sleep run on by the thread's timer slack, 50 µs by default, to merge wake-ups: one
        // nanosecond keeps the schedule. Failing that, the lag shows in each sample's `lag_us`.
        #[cfg(target_os = "linux")]
        let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::with_capacity(count);
        let mut shed = 0;
        let start = Instant::now();
        for (i, body) in bodies.into_iter().enumerate() {
            // Each due time from the start, so sleeping late once does not shift the rest: requests fall due at once
            // after a stall, keeping the offered rate.
            let due = start + period.mul_f64(i as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if in_flight.load(Ordering::Relaxed) >= max_in_flight {
                shed += 1;
                continue;
            }
            let (http, url, token, in_flight) =
                (http.clone(), url.clone(), token.clone(), in_flight.clone());
            in_flight.fetch_add(1, Ordering::Relaxed);
            tasks.push(runtime.spawn(async move {
                let sample = send(&http, &url, &token, &body, due, false).await;
                in_flight.fetch_sub(1, Ordering::Relaxed);
                sample
            }));
        }
        (tasks, shed)
    });
    let (tasks, shed) = dispatcher.await.expect("the dispatcher does not panic");
    let samples = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|s| s.expect("a request task does not panic"))
        .collect();
    (samples, shed)
}

/// `clients` tasks, each sending its next request as soon as its last is answered, until `duration` has passed.
async fn closed_loop(
    bench: &Bench,
    gateway: &Gateway,
    query: QueryKind,
    clients: usize,
    duration: Duration,
) -> Vec<Sample> {
    let url: Arc<str> = format!("{}/graphql", gateway.url).into();
    let token: Arc<str> = bench.token.clone().into();
    let end = Instant::now() + duration;
    let mut tasks = JoinSet::new();
    for client in 0..clients {
        // Each client walks its own share of the ids, so clients do not all ask for the same child.
        let bodies: Vec<Bytes> = (0..64)
            .map(|k| bench.body(query, client + k * clients))
            .collect();
        let (http, url, token) = (bench.http.clone(), url.clone(), token.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            let mut k = 0;
            while Instant::now() < end {
                out.push(
                    send(
                        &http,
                        &url,
                        &token,
                        &bodies[k % bodies.len()],
                        Instant::now(),
                        false,
                    )
                    .await,
                );
                k += 1;
            }
            out
        });
    }
    tasks.join_all().await.into_iter().flatten().collect()
}

/// Each simulator's requests during a scenario.
#[derive(Debug)]
struct SourceDelta([u64; 3]);

impl SourceDelta {
    fn new(before: &[u64], after: &[u64]) -> Self {
        let mut d = [0; 3];
        for (i, v) in d.iter_mut().enumerate() {
            *v = after[i] - before[i];
        }
        Self(d)
    }
}

/// With sources answering after a millisecond or more, a slowest source faster than this was read from the
/// gateway's cache, and the cache's time is the gateway's own. With sources at 0 ms the two cannot be told apart by
/// time, and no answer counts as from the cache.
const FROM_CACHE_UNDER_US: u64 = 1_000;

impl Sample {
    /// Whether the answer came wholly from the cache: its slowest source took less than `from_cache_under_us`.
    fn wholly_cached(&self, from_cache_under_us: u64) -> Option<bool> {
        self.slowest_source_us.map(|us| us < from_cache_under_us)
    }

    /// The slowest source's time, as the part of the answer's time that was not the gateway's: none for an answer
    /// wholly from the cache.
    fn waited_on_source_us(&self, from_cache_under_us: u64) -> Option<i64> {
        let cached = self.wholly_cached(from_cache_under_us)?;
        Some(if cached {
            0
        } else {
            self.slowest_source_us? as i64
        })
    }

    /// From when the load generator started sending the request to the end of the answer.
    fn sent_to_received_us(&self) -> i64 {
        self.latency_us as i64 - self.lag_us as i64
    }
}

/// What an answer's `Server-Timing` header says, in microseconds.
#[derive(Debug, Default, Clone, Copy)]
struct Timing {
    /// `source`: the time during which at least one source call was in flight.
    source_wait_us: Option<u64>,
    /// `slowest-source`: the slowest source's own time, unrounded.
    slowest_source_us: Option<u64>,
    /// `audit`: the composed answer's wait for its access record's commit.
    audit_wait_us: Option<u64>,
}

impl Timing {
    fn of(header: &str) -> Self {
        let us = |metric| {
            childgraph_tests::server_timing(header, metric).map(|ms| (ms * 1000.0).round() as u64)
        };
        Self {
            source_wait_us: us("source"),
            slowest_source_us: us("slowest-source"),
            audit_wait_us: us("audit"),
        }
    }
}

/// The sources' delay, as the simulators draw it: a set latency, then a whole number of milliseconds more, from 0
/// to the jitter.
fn source_delay(faults: &Faults) -> String {
    match faults.jitter_ms {
        0 => faults.latency_ms.to_string(),
        jitter => format!("{}-{}", faults.latency_ms, faults.latency_ms + jitter),
    }
}

/// The p-th percentile (0 to 100) of sorted values.
fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The overhead the gateway aims to keep 99% of its answers under at `GOAL_RPS`, in microseconds.
const OVERHEAD_GOAL_US: i64 = 2_000;
/// The rate, in requests a second, of the overhead goal.
const GOAL_RPS: u32 = 200;

fn ms(us: impl Into<f64>) -> f64 {
    (us.into() / 1000.0 * 10.0).round() / 10.0
}

/// A scenario's figures, for the table and the JSON line.
/// CPU seconds over a run: the gateway's, the part of it spent on policy work, and the bench's own.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    gateway: f64,
    policy: f64,
    bench: f64,
}

#[derive(Debug)]
struct Outcome {
    row: Vec<String>,
    json: Value,
}

impl Outcome {
    fn new(
        scenario: &Scenario,
        samples: &[Sample],
        shed: u64,
        elapsed: f64,
        sources: SourceDelta,
        cpu: Cpu,
        peak_kib: u64,
    ) -> Self {
        let Cpu {
            gateway: cpu,
            policy,
            bench: bench_cpu,
        } = cpu;
        // The policy's share of the gateway's CPU time: its timed policy work over the process's utime + stime.
        let policy_share = if cpu > 0.0 {
            (policy / cpu * 100.0 * 100.0).round() / 100.0
        } else {
            0.0
        };
        let ok: Vec<&Sample> = samples.iter().filter(|s| s.error.is_none()).collect();
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for s in samples.iter().filter_map(|s| s.error.as_ref()) {
            *errors.entry(s.clone()).or_default() += 1;
        }
        let mut latency: Vec<u64> = ok.iter().map(|s| s.latency_us).collect();
        latency.sort_unstable();
        let from_cache_under_us = if scenario.faults.latency_ms >= 1 {
            FROM_CACHE_UNDER_US
        } else {
            0
        };
        // The gateway's own share: what the client waited, from when it sent the request, beyond the slowest source
        // the gateway waited for; all of it for an answer wholly from the cache.
        let overhead_of = |s: &Sample| {
            s.waited_on_source_us(from_cache_under_us)
                .map(|source| s.sent_to_received_us() - source)
        };
        let mut overhead: Vec<i64> = ok.iter().filter_map(|s| overhead_of(s)).collect();
        overhead.sort_unstable();
        // The same, apart for answers the gateway's cache gave whole and answers that waited for a source: the second
        // also wait between phases for the slowest source's records.
        let split = |from_sources: bool| -> Vec<i64> {
            let mut v: Vec<i64> = ok
                .iter()
                .filter(|s| s.wholly_cached(from_cache_under_us) == Some(!from_sources))
                .filter_map(|s| overhead_of(s))
                .collect();
            v.sort_unstable();
            v
        };
        let (cached, fetched) = (split(false), split(true));
        // The gateway's own time: what the client waited beyond the time the gateway spent waiting on any source, by
        // its own `Server-Timing`. Unlike the overhead above, it does not count the wait between phases as the gateway's.
        let mut own: Vec<i64> = ok
            .iter()
            .filter_map(|s| Some(s.sent_to_received_us() - s.source_wait_us? as i64))
            .collect();
        own.sort_unstable();
        // The composed answer's wait for its access record's commit, which DESIGN requires before any of it leaves; and
        // how many answers over the goal would be within it, had that commit been done by the time they were composed.
        let mut audit: Vec<u64> = ok.iter().filter_map(|s| s.audit_wait_us).collect();
        audit.sort_unstable();
        let over_only_for_audit = ok
            .iter()
            .filter(|s| {
                overhead_of(s).is_some_and(|us| {
                    us > OVERHEAD_GOAL_US
                        && us - s.audit_wait_us.unwrap_or(0) as i64 <= OVERHEAD_GOAL_US
                })
            })
            .count();
        // The load generator's own lag in starting requests, which the latency includes and the overheads do not.
        let mut lag: Vec<u64> = ok.iter().map(|s| s.lag_us).collect();
        lag.sort_unstable();
        let p50_p99 = |v: &[u64]| json!({ "p50": ms(percentile(v, 50.0) as f64), "p99": ms(percentile(v, 99.0) as f64) });
        let mut audit_wait = p50_p99(&audit);
        audit_wait["over_2_ms_only_for_it"] = json!(over_only_for_audit);
        // The longest: a stall of the disk's sync holds every answer whose record waits behind it, and at 200 rps one
        // of 100 ms alone is a p99 over 10 s.
        audit_wait["max"] = json!(ms(audit.last().copied().unwrap_or(0) as f64));
        // How many answers the gateway kept more than the overhead goal's 2 ms above their slowest source.
        let over_goal = |v: &[i64]| v.iter().filter(|&&us| us > OVERHEAD_GOAL_US).count();
        let stats = |v: &[i64]| {
            json!({
                "over_2_ms": over_goal(v),
                "p50": ms(percentile(v, 50.0) as f64),
                "p99": ms(percentile(v, 99.0) as f64),
                "samples": v.len(),
            })
        };
        let queries = samples.len().max(1) as f64;
        let per_query: Vec<f64> = sources
            .0
            .iter()
            .map(|&n| (n as f64 / queries * 100.0).round() / 100.0)
            .collect();
        let throughput = ok.len() as f64 / elapsed;
        let children: usize = ok.iter().map(|s| s.children).sum();
        let p = |q: f64| ms(percentile(&latency, q) as f64);
        let o = |q: f64| ms(percentile(&overhead, q) as f64);
        let cpu_per_answer_ms = if ok.is_empty() {
            0.0
        } else {
            (cpu * 1000.0 / ok.len() as f64 * 100.0).round() / 100.0
        };
        let peak_mib = (peak_kib as f64 / 1024.0 * 10.0).round() / 10.0;
        let error_total: u64 = errors.values().sum::<u64>() + shed;
        let row = vec![
            scenario.name.clone(),
            format!("{} {}", scenario.query.name(), scenario.load.describe()),
            source_delay(&scenario.faults),
            scenario.cache.name().to_owned(),
            scenario.http.as_str().to_owned(),
            samples.len().to_string(),
            error_total.to_string(),
            format!("{throughput:.1}"),
            format!("{}", p(50.0)),
            format!("{}", p(95.0)),
            format!("{}", p(99.0)),
            format!("{}", o(50.0)),
            format!("{}", o(99.0)),
            format!(
                "{}/{}",
                ms(percentile(&cached, 99.0) as f64),
                ms(percentile(&fetched, 99.0) as f64)
            ),
            format!(
                "{}/{}",
                ms(percentile(&own, 50.0) as f64),
                ms(percentile(&own, 99.0) as f64)
            ),
            format!("{}/{}/{}", per_query[0], per_query[1], per_query[2]),
            format!("{cpu:.2}"),
            format!("{cpu_per_answer_ms}"),
            format!("{policy_share}"),
            format!("{peak_mib}"),
            format!("{bench_cpu:.2}"),
        ];
        let json = json!({
            "name": scenario.name,
            "query": scenario.query.name(),
            "mode": match scenario.load { Load::Open(_) => "open", Load::Closed(_) => "closed" },
            "rps": match scenario.load { Load::Open(r) => Some(r), Load::Closed(_) => None },
            "concurrency": match scenario.load { Load::Closed(c) => Some(c), Load::Open(_) => None },
            "seconds": scenario.seconds,
            "source_latency_ms": scenario.faults.latency_ms,
            "source_jitter_ms": scenario.faults.jitter_ms,
            "cache": scenario.cache.name(),
            "source_http": scenario.http.as_str(),
            "elapsed_s": (elapsed * 100.0).round() / 100.0,
            "sent": samples.len(),
            "answers": ok.len(),
            "errors": errors,
            "shed": shed,
            "answers_per_s": (throughput * 10.0).round() / 10.0,
            "children_per_answer": if ok.is_empty() { 0.0 } else { (children as f64 / ok.len() as f64 * 100.0).round() / 100.0 },
            "latency_ms": { "p50": p(50.0), "p95": p(95.0), "p99": p(99.0), "max": p(100.0) },
            "lag_ms": p50_p99(&lag),
            "overhead_ms": { "p50": o(50.0), "p95": o(95.0), "p99": o(99.0), "samples": overhead.len(), "over_2_ms": over_goal(&overhead) },
            "overhead_cached_ms": stats(&cached),
            "overhead_from_sources_ms": stats(&fetched),
            "own_time_ms": stats(&own),
            "audit_wait_ms": audit_wait,
            "source_requests": { "health": sources.0[0], "school": sources.0[1], "early_years": sources.0[2] },
            "source_requests_per_query": { "health": per_query[0], "school": per_query[1], "early_years": per_query[2] },
            "gateway_cpu_s": (cpu * 100.0).round() / 100.0,
            "gateway_cpu_ms_per_answer": cpu_per_answer_ms,
            "policy_cpu_s": (policy * 10000.0).round() / 10000.0,
            "policy_share_of_gateway_cpu_pct": policy_share,
            "gateway_peak_rss_mib": peak_mib,
            "bench_cpu_s": (bench_cpu * 100.0).round() / 100.0,
        });
        Self { row, json }
    }
}

/// Source requests per search, by how many children the search returned.
#[derive(Debug)]
struct SearchCost {
    rows: Vec<Vec<String>>,
    json: Value,
}

impl SearchCost {
    fn new(groups: BTreeMap<usize, (u64, [u64; 3], Vec<u64>)>) -> Self {
        let mut rows = Vec::new();
        let mut json = Vec::new();
        for (children, (searches, requests, mut latency)) in groups {
            latency.sort_unstable();
            let per = |n: u64| (n as f64 / searches as f64 * 100.0).round() / 100.0;
            let total = per(requests.iter().sum());
            rows.push(vec![
                children.to_string(),
                searches.to_string(),
                per(requests[0]).to_string(),
                per(requests[1]).to_string(),
                per(requests[2]).to_string(),
                total.to_string(),
                ms(percentile(&latency, 50.0) as f64).to_string(),
            ]);
            json.push(json!({
                "children_returned": children,
                "searches": searches,
                "source_requests_per_search": {
                    "health": per(requests[0]), "school": per(requests[1]), "early_years": per(requests[2]), "total": total,
                },
                "latency_p50_ms": ms(percentile(&latency, 50.0) as f64),
            }));
        }
        Self {
            rows,
            json: Value::Array(json),
        }
    }
}

fn print_rows(header: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect();
        println!("{}", padded.join("  "));
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn print_table(results: &[Outcome]) {
    println!();
    println!(
        "latency and overhead in ms; latency runs from when a request was due; overhead = the time from its sending to its answer - the slowest source's time (Server-Timing slowest-source, none for an answer wholly from the cache); ovh p99 c/s = overhead p99 of answers wholly from the cache / of answers that waited for a source (with sources at 0 ms none count as from the cache); own = the time from sending to answer - the gateway's Server-Timing wait on sources, p50/p99; src req/q = health/school/early-years requests per query; policy %cpu = the gateway's timed policy work (childgraph_policy_seconds_total) as a share of its CPU time"
    );
    let rows: Vec<Vec<String>> = results.iter().map(|r| r.row.clone()).collect();
    print_rows(
        &[
            "scenario",
            "load",
            "src ms",
            "cache",
            "src http",
            "sent",
            "errors",
            "ans/s",
            "p50",
            "p95",
            "p99",
            "ovh p50",
            "ovh p99",
            "ovh p99 c/s",
            "own p50/p99",
            "src req/q",
            "gw cpu s",
            "cpu ms/ans",
            "policy %cpu",
            "gw peak MiB",
            "bench cpu s",
        ],
        &rows,
    );
    println!();
}

fn print_summary(summary: &Summary, repeat: u32) {
    println!(
        "over {repeat} runs of each scenario, in rounds: median (least-greatest); ovh = overhead above the slowest source, ms; audit max = the longest wait for a commit, ms"
    );
    let header: Vec<&str> = ["scenario", "runs"]
        .into_iter()
        .chain(SUMMARISED.map(|(_, _, _, heading)| heading))
        .collect();
    print_rows(&header, &summary.rows);
    println!();
}

fn print_search_cost(cost: &SearchCost) {
    println!("source requests per searchChildren, by children returned (one search at a time)");
    print_rows(
        &[
            "children",
            "searches",
            "health",
            "school",
            "early-years",
            "total",
            "p50 ms",
        ],
        &cost.rows,
    );
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preset_measures_the_goal_at_a_set_latency_and_again_with_jitter() {
        type Open = (String, QueryKind, u32, u64, u64, u64);
        let open = |args: &[&str]| -> Vec<Open> {
            scenarios(&Args::parse_from(args))
                .into_iter()
                .filter_map(|s| match s.load {
                    Load::Open(rps) => Some((
                        s.name,
                        s.query,
                        rps,
                        s.faults.latency_ms,
                        s.faults.jitter_ms,
                        s.seconds,
                    )),
                    Load::Closed(_) => None,
                })
                .collect()
        };
        let both = open(&["load", "--preset", "issue3"]);
        // First the floor, `me` at the goal's rate; then `child`, where the goal's rate runs three times as long as
        // the others.
        let floor = ("a-me-200rps".to_owned(), QueryKind::Me, 200, 10, 0, 10);
        let expected: Vec<Open> = std::iter::once(floor)
            .chain(
                [("", 0), ("-jitter", 2)]
                    .into_iter()
                    .flat_map(|(suffix, jitter)| {
                        [(50, 10), (200, 30), (500, 10)].map(|(rps, seconds)| {
                            (
                                format!("a-child-{rps}rps{suffix}"),
                                QueryKind::Child,
                                rps,
                                10,
                                jitter,
                                seconds,
                            )
                        })
                    }),
            )
            .collect();
        assert_eq!(both, expected);
        // Without jitter the set latency is measured once.
        assert_eq!(
            open(&["load", "--preset", "issue3", "--jitter-ms", "0"]),
            expected[..4].to_vec()
        );
    }

    #[test]
    fn repeated_scenarios_run_in_rounds_and_a_repeat_of_none_is_refused() {
        let list = scenarios(&Args::parse_from(["load", "--rps", "10"]));
        let two = [
            list[0].clone(),
            Scenario {
                name: "other".to_owned(),
                ..list[0].clone()
            },
        ];
        let order: Vec<(u32, &str)> = rounds(&two, 3).map(|(r, s)| (r, s.name.as_str())).collect();
        assert_eq!(
            order,
            [
                (1, "custom"),
                (1, "other"),
                (2, "custom"),
                (2, "other"),
                (3, "custom"),
                (3, "other")
            ]
        );
        assert_eq!(rounds(&two, 1).count(), 2);
        assert_eq!(run_label(2, 3), " #2 of 3");
        assert_eq!(run_label(1, 1), "");
        assert!(Args::try_parse_from(["load", "--repeat", "0"]).is_err());
        assert_eq!(Args::parse_from(["load"]).repeat, 1);
    }

    #[test]
    fn a_spread_is_the_middle_run_or_the_mean_of_the_middle_two() {
        let spread = |v: &[f64]| Spread::of(v.to_vec());
        assert_eq!(
            spread(&[2100.5, 1900.0, 2300.0]),
            Some(Spread {
                median: 2100.5,
                least: 1900.0,
                greatest: 2300.0
            })
        );
        assert_eq!(
            spread(&[1.9, 1.5, f64::NAN, 2.4, 1.6]),
            Some(Spread {
                median: 1.75,
                least: 1.5,
                greatest: 2.4
            })
        );
        assert_eq!(spread(&[]), None);
    }

    #[test]
    fn the_summary_gathers_each_scenarios_runs_by_name() {
        let list = scenarios(&Args::parse_from(["load", "--preset", "issue3"]));
        let (goal, saturation) = (&list[2], list.last().expect("a saturation run"));
        let run = |s: &Scenario, answers: f64, p99: f64, cpu: f64, audit: f64| Outcome {
            row: Vec::new(),
            json: json!({
                "name": s.name,
                "answers_per_s": answers,
                "overhead_ms": {"p50": p99 / 2.0, "p99": p99},
                "gateway_cpu_ms_per_answer": cpu,
                "audit_wait_ms": {"max": audit},
            }),
        };
        let results = [
            run(goal, 200.0, 1.9, 1.1, 4.0),
            run(saturation, 2300.0, 20.0, 0.65, 9.0),
            run(goal, 199.9, 2.3, 1.2, 97.0),
            run(saturation, 1950.0, 27.0, 0.78, 12.0),
            run(goal, 200.1, 1.5, 1.0, 3.5),
            run(saturation, 2100.0, 24.0, 0.7, 11.0),
        ];
        let summary = Summary::of(&[goal.clone(), saturation.clone()], &results);
        let by_name = |name: &str| {
            summary
                .json
                .as_array()
                .expect("a list")
                .iter()
                .find(|s| s["name"] == name)
                .cloned()
        };
        let goal_summary = by_name(&goal.name).expect("the goal's scenario");
        assert_eq!(goal_summary["runs"], 3);
        let saturation_summary = by_name(&saturation.name).expect("the saturation scenario");
        // (median, least, greatest) of each figure, from the runs of its own scenario only.
        for (summarised, key, [median, min, max]) in [
            (&goal_summary, "overhead_p99_ms", [1.9, 1.5, 2.3]),
            (&goal_summary, "audit_wait_max_ms", [4.0, 3.5, 97.0]),
            (
                &saturation_summary,
                "answers_per_s",
                [2100.0, 1950.0, 2300.0],
            ),
            (
                &saturation_summary,
                "gateway_cpu_ms_per_answer",
                [0.7, 0.65, 0.78],
            ),
        ] {
            assert_eq!(
                summarised[key],
                json!({"median": median, "min": min, "max": max}),
                "{key}"
            );
        }
        // One entry for each scenario asked for, in the order asked.
        let names: Vec<&Value> = summary
            .json
            .as_array()
            .expect("a list")
            .iter()
            .map(|s| &s["name"])
            .collect();
        assert_eq!(names, [&json!(goal.name), &json!(saturation.name)]);
        assert_eq!(summary.rows[0][1], "3");
        assert_eq!(summary.rows[1][2], "2100 (1950-2300)");
    }

    #[test]
    fn the_sources_delay_reads_as_the_simulators_draw_it() {
        let faults = |latency_ms, jitter_ms| Faults {
            latency_ms,
            jitter_ms,
            ..Faults::default()
        };
        assert_eq!(source_delay(&faults(10, 0)), "10");
        assert_eq!(source_delay(&faults(10, 2)), "10-12");
    }
}
