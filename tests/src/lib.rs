//! The integration-test harness: a real gateway on `127.0.0.1:0`, in front of the three simulators, with a fresh store.
//!
//! ```text
//! let gateway = TestGateway::builder().children(200).spawn().await;
//! let answer = gateway.query("teacher", "{ me { name } }").await;
//! ```

use std::net::SocketAddr;

use childgraph::demo::{Demo, DemoOptions};
use serde_json::{Value, json};

/// Builds a [`TestGateway`].
#[derive(Debug)]
pub struct TestGatewayBuilder {
    /// Everything but the data directory, which `spawn` makes fresh.
    options: DemoOptions,
}

impl TestGatewayBuilder {
    /// Generated children besides the demo cast; small by default so tests start fast.
    pub fn children(mut self, children: usize) -> Self {
        self.options.children = children;
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.options.seed = seed;
        self
    }

    /// The deadline of each GraphQL request.
    pub fn deadline_ms(mut self, ms: u64) -> Self {
        self.options.request.deadline_ms = ms;
        self
    }

    /// Whether the gateway caches source answers: off where a test counts source requests.
    pub fn cache(mut self, on: bool) -> Self {
        self.options.cache = on;
        self
    }

    /// The longest one source request may take.
    pub fn source_timeout_ms(mut self, ms: u64) -> Self {
        self.options.source_timeout_ms = ms;
        self
    }

    /// Any other setting of the demo the gateway runs as.
    pub fn configure(mut self, change: impl FnOnce(&mut DemoOptions)) -> Self {
        change(&mut self.options);
        self
    }

    pub async fn spawn(self) -> TestGateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = DemoOptions {
            data_dir: dir.path().to_owned(),
            ..self.options
        };
        let (children, seed) = (options.children, options.seed);
        let demo = Demo::start(options.clone()).await.expect("the demo starts");
        TestGateway {
            demo: Some(demo),
            dir,
            http: reqwest::Client::new(),
            children,
            seed,
            options,
        }
    }
}

/// A running gateway with its simulators.
#[derive(Debug)]
pub struct TestGateway {
    demo: Option<Demo>,
    /// Holds the data directory (store, key, demo.json) until the test ends.
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    children: usize,
    seed: u64,
    /// What the gateway was started with, to start it again.
    options: DemoOptions,
}

/// A metric's `dur` in a `Server-Timing` header value, in milliseconds.
pub fn server_timing(header: &str, metric: &str) -> Option<f64> {
    header.split(',').find_map(|entry| {
        let mut parts = entry.trim().split(';');
        (parts.next()? == metric).then_some(())?;
        parts.find_map(|p| p.trim().strip_prefix("dur=")?.parse().ok())
    })
}

/// A GraphQL answer, with the HTTP status it came with.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    /// The `Server-Timing` header, if the answer had one.
    pub server_timing: Option<String>,
}

impl Answer {
    /// A metric's `dur` from the `Server-Timing` header, in milliseconds.
    pub fn timing(&self, metric: &str) -> Option<f64> {
        server_timing(self.server_timing.as_deref()?, metric)
    }

    /// The `extensions.code` of every error, in order.
    pub fn codes(&self) -> Vec<String> {
        self.errors()
            .iter()
            .filter_map(|e| e["extensions"]["code"].as_str().map(str::to_owned))
            .collect()
    }

    pub fn errors(&self) -> Vec<Value> {
        self.body["errors"].as_array().cloned().unwrap_or_default()
    }

    /// The errors with this code.
    pub fn errors_with(&self, code: &str) -> Vec<Value> {
        self.errors()
            .into_iter()
            .filter(|e| e["extensions"]["code"] == code)
            .collect()
    }
}

impl TestGateway {
    pub fn builder() -> TestGatewayBuilder {
        let mut options = DemoOptions::new(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            std::path::PathBuf::new(),
        );
        options.children = 200;
        options.seed = 7;
        // Tests search many times as one user; the quota test sets its own.
        options.request.searches_per_minute = 0;
        options.request.children_per_hour = 0;
        options.monitoring.distinct_children_alert = 0;
        TestGatewayBuilder { options }
    }

    /// The number of generated children behind the simulators.
    pub fn children(&self) -> usize {
        self.children
    }

    /// The seed the population was generated from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The gateway's own store, opened a second time: for what no API does yet, such as placing a shield.
    pub async fn store(&self) -> childgraph::store::Store {
        childgraph::store::Store::open_sqlite(&self.dir.path().join(childgraph::demo::STORE_FILE))
            .await
            .expect("the store opens")
    }

    /// The gateway's store file.
    pub fn store_path(&self) -> std::path::PathBuf {
        self.dir.path().join(childgraph::demo::STORE_FILE)
    }

    /// A connection of its own to the gateway's store file, for a test to read or change what the gateway keeps.
    pub async fn db(&self) -> sqlx::SqliteConnection {
        let url = format!("sqlite://{}", self.store_path().display());
        <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
            .await
            .expect("the store file opens")
    }

    pub fn demo(&self) -> &Demo {
        self.demo.as_ref().expect("running")
    }

    pub fn url(&self) -> String {
        format!("http://{}/graphql", self.demo().gateway)
    }

    /// The gateway's `/metrics`, in Prometheus text format.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.demo().gateway);
        self.http
            .get(url)
            .send()
            .await
            .expect("the gateway answers")
            .text()
            .await
            .expect("text")
    }

    /// A token for a demo identity.
    pub fn token(&self, user: &str) -> String {
        self.demo().key.token(user).expect("token")
    }

    /// Runs a query as a demo identity.
    pub async fn query(&self, user: &str, query: &str) -> Answer {
        self.query_with(Some(&self.token(user)), query, json!({}))
            .await
    }

    /// Runs a query with variables as a demo identity.
    pub async fn query_vars(&self, user: &str, query: &str, variables: Value) -> Answer {
        self.query_with(Some(&self.token(user)), query, variables)
            .await
    }

    /// Runs a query with the given bearer token, or none.
    pub async fn query_with(&self, token: Option<&str>, query: &str, variables: Value) -> Answer {
        let mut request = self
            .http
            .post(self.url())
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the gateway answers");
        let status = response.status().as_u16();
        let server_timing = response
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.json().await.expect("a JSON answer");
        Answer {
            status,
            body,
            server_timing,
        }
    }

    /// Sets a simulator's faults through its `/_sim/faults` endpoint, as a script would.
    pub async fn set_faults(&self, source: &str, faults: Value) {
        let root = self.source_root(source);
        let response = self
            .http
            .post(format!("{root}/_sim/faults"))
            .json(&faults)
            .send()
            .await
            .expect("simulator answers");
        assert!(
            response.status().is_success(),
            "setting faults: {}",
            response.status()
        );
    }

    /// The requests a simulator has received, from its `/_sim/stats` endpoint.
    pub async fn requests(&self, source: &str) -> u64 {
        self.sim_stats(source).await["requests"]
            .as_u64()
            .expect("a request count")
    }

    /// The requests a simulator has received over HTTP/2.
    pub async fn http2_requests(&self, source: &str) -> u64 {
        self.sim_stats(source).await["http2_requests"]
            .as_u64()
            .expect("a request count")
    }

    async fn sim_stats(&self, source: &str) -> Value {
        let root = self.source_root(source);
        self.http
            .get(format!("{root}/_sim/stats"))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("json")
    }

    /// A simulator's root URL, as `demo.json` gives it.
    pub fn source_root(&self, source: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(childgraph::demo::DEMO_JSON))
            .expect("demo.json");
        let demo: Value = serde_json::from_str(&text).expect("demo.json is JSON");
        demo["sources"][source]
            .as_str()
            .expect("a source URL")
            .to_owned()
    }

    /// Stops the gateway and starts it again on the same data directory: the same store, key and population.
    pub async fn restart(&mut self) {
        if let Some(demo) = self.demo.take() {
            demo.stop().await.expect("clean stop");
        }
        self.demo = Some(
            Demo::start(self.options.clone())
                .await
                .expect("the demo starts again"),
        );
    }

    /// Stops the gateway as SIGTERM would, keeping its data directory for a look at what it left.
    pub async fn shut_down(&mut self) {
        if let Some(demo) = self.demo.take() {
            demo.stop().await.expect("clean stop");
        }
    }

    pub async fn stop(mut self) {
        if let Some(demo) = self.demo.take() {
            demo.stop().await.expect("clean stop");
        }
    }
}
