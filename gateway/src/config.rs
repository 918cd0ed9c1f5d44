//! The gateway's config file: typed structs that refuse unknown keys, with `${VAR}` expansion for secrets.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why a config file was refused. Messages name the file and the key, never a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: environment variable {var} is not set")]
    MissingVariable { path: PathBuf, var: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The address the GraphQL endpoint listens on.
    pub listen: SocketAddr,
    pub store: StoreConfig,
    /// The policy file; the built-in default policy when absent.
    #[serde(default)]
    pub policy: Option<PathBuf>,
    #[serde(default)]
    pub request: RequestConfig,
    #[serde(default)]
    pub linkage: LinkageConfig,
    pub auth: AuthConfig,
    #[serde(default)]
    pub accounts: AccountsConfig,
    #[serde(default)]
    pub monitoring: MonitoringConfig,
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    pub sources: SourcesConfig,
}

/// How the gateway stops on SIGTERM.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long requests in flight may run on once the gateway stops accepting; then they are cut. A pod's
    /// termination grace period must be longer.
    #[serde(default = "default_drain_seconds")]
    pub drain_seconds: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_seconds: default_drain_seconds(),
        }
    }
}

impl ShutdownConfig {
    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.drain_seconds)
    }
}

fn default_drain_seconds() -> u64 {
    20
}

/// How accounts are kept authorised.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsConfig {
    /// An authoriser recertifies each user at least this often, in months; access lapses when it is missed.
    #[serde(default = "default_recertify_months")]
    pub recertify_months: u32,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            recertify_months: default_recertify_months(),
        }
    }
}

fn default_recertify_months() -> u32 {
    4
}

/// Where the gateway keeps what it owns: one of `sqlite: PATH` or `postgres: {url: ...}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "StoreKeys")]
pub enum StoreConfig {
    /// The SQLite database file, created if missing: for one gateway process.
    Sqlite(PathBuf),
    /// A PostgreSQL database, which several gateway replicas can share.
    Postgres(PostgresConfig),
}

/// The `store` section as written, before it is known to name exactly one backend.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreKeys {
    #[serde(default)]
    sqlite: Option<PathBuf>,
    #[serde(default)]
    postgres: Option<PostgresConfig>,
}

impl TryFrom<StoreKeys> for StoreConfig {
    type Error = String;

    fn try_from(keys: StoreKeys) -> Result<Self, String> {
        match (keys.sqlite, keys.postgres) {
            (Some(path), None) => Ok(StoreConfig::Sqlite(path)),
            (None, Some(postgres)) => {
                postgres.check()?;
                Ok(StoreConfig::Postgres(postgres))
            }
            (Some(_), Some(_)) => Err("store: give sqlite or postgres, not both".to_owned()),
            (None, None) => {
                Err("store: give sqlite: PATH or postgres: {url: postgres://...}".to_owned())
            }
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE`, with libpq's parameters that sqlx reads (`sslmode=verify-full`
    /// and `sslrootcert=FILE` for TLS, say);
    /// write `${VAR}` to take it, or its password, from the environment.
    url: String,
    /// The most connections this gateway opens to the database.
    #[serde(default = "default_postgres_connections")]
    pub max_connections: u32,
    /// How long a request waits for a connection, or for the database to answer a connection attempt, before it
    /// fails with `INTERNAL`: the database being down costs a request this long, not the driver's 30 s.
    #[serde(default = "default_postgres_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
}

fn default_postgres_acquire_timeout_ms() -> u64 {
    crate::store::DEFAULT_POSTGRES_ACQUIRE_TIMEOUT.as_millis() as u64
}

fn default_postgres_connections() -> u32 {
    crate::store::DEFAULT_POSTGRES_CONNECTIONS
}

/// The URL parameters the PostgreSQL driver reads (and `options[NAME]`).
const POSTGRES_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

impl PostgresConfig {
    /// The connection URL. It may hold a password: it is never logged or printed.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn check(&self) -> Result<(), String> {
        if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            return Err(
                "store.postgres.url: must start with postgres:// or postgresql://".to_owned(),
            );
        }
        // A parameter the driver does not read would be logged with its value (and may be a password): refused, by
        // name.
        if let Ok(url) = url::Url::parse(&self.url)
            && let Some((key, _)) = url.query_pairs().find(|(key, _)| {
                !POSTGRES_PARAMETERS.contains(&&**key) && !key.starts_with("options[")
            })
        {
            return Err(format!(
                "store.postgres.url: the parameter {key} is not one the gateway reads; it takes {}",
                POSTGRES_PARAMETERS.join(", ")
            ));
        }
        // Parsed as the store will parse it, so that `config check` finds a bad parameter. The error names the
        // parameter, never the URL.
        <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&self.url)
            .map_err(|e| format!("store.postgres.url: {e}"))?;
        if self.max_connections == 0 {
            return Err("store.postgres.max_connections: must be at least 1".to_owned());
        }
        if self.acquire_timeout_ms == 0 {
            return Err("store.postgres.acquire_timeout_ms: must be at least 1".to_owned());
        }
        Ok(())
    }

    /// How long a request waits for a connection.
    pub fn acquire_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.acquire_timeout_ms)
    }
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password, in its user part or its parameters: only where it points is shown.
        let server = url::Url::parse(&self.url).ok().map(|u| {
            format!(
                "{}://{}:{}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.port().unwrap_or(5432),
                u.path()
            )
        });
        f.debug_struct("PostgresConfig")
            .field("server", &server.as_deref().unwrap_or("[unparsed]"))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .finish_non_exhaustive()
    }
}

/// How records are linked into children.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkageConfig {
    /// A parameters file written by `childgraph linkage evaluate --save-parameters`; the built-in defaults when absent.
    #[serde(default)]
    pub parameters: Option<PathBuf>,
    /// A name frequencies file (`kind,name,share`, as `childgraph linkage evaluate --save-frequencies` writes): an
    /// exact match on a common name then weighs less than one on a rare name. No adjustment when absent.
    #[serde(default)]
    pub frequencies: Option<PathBuf>,
    /// The least match probability at which records from different sources are joined into one child.
    #[serde(default = "default_link_threshold")]
    pub link_threshold: f64,
    /// The least match probability at which records are a possible match, which a shield covers.
    #[serde(default = "default_possible_threshold")]
    pub possible_threshold: f64,
}

impl Default for LinkageConfig {
    fn default() -> Self {
        Self {
            parameters: None,
            frequencies: None,
            link_threshold: default_link_threshold(),
            possible_threshold: default_possible_threshold(),
        }
    }
}

fn default_link_threshold() -> f64 {
    childgraph_linkage::LINK_THRESHOLD
}
fn default_possible_threshold() -> f64 {
    childgraph_linkage::POSSIBLE_THRESHOLD
}

impl LinkageConfig {
    /// The linker: the parameters file read and checked, with the thresholds.
    pub fn linker(&self) -> anyhow::Result<childgraph_linkage::Linker> {
        let parameters = match &self.parameters {
            Some(path) => crate::linkage_cli::load_parameters(path)?,
            None => childgraph_linkage::model::Parameters::default(),
        };
        let linker = childgraph_linkage::Linker::new(
            parameters,
            self.link_threshold,
            self.possible_threshold,
        )
        .map_err(|e| anyhow::anyhow!("linkage: {e}"))?;
        Ok(match &self.frequencies {
            Some(path) => linker.with_frequencies(crate::linkage_cli::load_frequencies(path)?),
            None => linker,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// One deadline for the whole GraphQL request, which every source call respects.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// The most matches a search returns; beyond it the answer is `tooManyResults` and no list.
    #[serde(default = "default_max_results")]
    pub max_results: usize,
    /// The largest request body accepted, in bytes.
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: usize,
    /// Searches each user may start a minute, smoothed by a token bucket; beyond it, `RATE_LIMITED` with when to
    /// retry. 0 turns the quota off.
    #[serde(default = "default_searches_per_minute")]
    pub searches_per_minute: u32,
    /// Distinct children each user may be shown an hour, by searches and views together, smoothed by a token bucket;
    /// a child shown to them within the hour is free. Beyond it, `RATE_LIMITED` with when to retry. 0 turns it off.
    #[serde(default = "default_children_per_hour")]
    pub children_per_hour: u32,
    /// Registered operations, by the SHA-256 of their text: clients may send an id instead of the text, and in
    /// trusted mode only registered operations run.
    #[serde(default)]
    pub trusted_documents: Option<TrustedDocumentsConfig>,
    /// Whether the schema answers introspection queries (`__schema`, `__type`). Off unless set: the committed SDL
    /// is the contract, and production need not describe itself to anyone who asks. The demo turns it on.
    #[serde(default)]
    pub introspection: bool,
}

impl Default for RequestConfig {
    fn default() -> Self {
        Self {
            deadline_ms: default_deadline_ms(),
            max_results: default_max_results(),
            body_limit_bytes: default_body_limit(),
            searches_per_minute: default_searches_per_minute(),
            children_per_hour: default_children_per_hour(),
            trusted_documents: None,
            introspection: false,
        }
    }
}

impl RequestConfig {
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

fn default_searches_per_minute() -> u32 {
    30
}

/// The trusted documents' list, and who is held to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedDocumentsConfig {
    /// An Apollo persisted-query manifest, or a JSON map of id to text.
    pub manifest: PathBuf,
    /// `clients` (partner agencies' API clients send only registered operations) or `everyone`.
    #[serde(default = "default_enforce")]
    pub enforce: crate::graphql::trusted::Enforce,
}

fn default_enforce() -> crate::graphql::trusted::Enforce {
    crate::graphql::trusted::Enforce::Clients
}

fn default_children_per_hour() -> u32 {
    100
}

/// The audit monitor: an alert when a user views more distinct children than a threshold within a window.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringConfig {
    /// Alert when a user is shown more distinct children than this within the window; 0 turns the alert off.
    #[serde(default = "default_distinct_children_alert")]
    pub distinct_children_alert: u32,
    #[serde(default = "default_window_minutes")]
    pub window_minutes: u32,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        Self {
            distinct_children_alert: default_distinct_children_alert(),
            window_minutes: default_window_minutes(),
        }
    }
}

impl MonitoringConfig {
    pub fn window(&self) -> Duration {
        Duration::from_secs(u64::from(self.window_minutes) * 60)
    }
}

fn default_distinct_children_alert() -> u32 {
    50
}

fn default_window_minutes() -> u32 {
    60
}

fn default_deadline_ms() -> u64 {
    2000
}
fn default_max_results() -> usize {
    10
}
fn default_body_limit() -> usize {
    64 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub issuers: Vec<IssuerConfig>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// How long an active account is kept after it was read from the store, in seconds: a revoked or changed account
    /// takes effect within this time. 0 reads the store on every request.
    #[serde(default = "default_account_cache")]
    pub account_cache_seconds: u64,
}

fn default_leeway() -> u64 {
    30
}

fn default_account_cache() -> u64 {
    5
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` claim this issuer's tokens carry.
    pub issuer: String,
    /// The `aud` the tokens must name.
    pub audience: String,
    /// The token's `amr` must include one of these methods.
    #[serde(default = "default_amr")]
    pub required_amr: Vec<String>,
    /// Whether this issuer's client-credentials tokens (`client_id` equal to `sub`) are taken, for partner agencies'
    /// API clients: they carry no `amr`, and name a client account, never a person's.
    #[serde(default)]
    pub client_credentials: bool,
    /// Static verification keys (PEM public keys). An issuer needs these, a `jwks_url`, or both.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// The issuer's JWK Set (RFC 7517), fetched at start and kept fresh in the background. https, or http to a
    /// loopback address only.
    #[serde(default)]
    pub jwks_url: Option<url::Url>,
    /// How often the JWK Set is fetched again, in seconds (default 300).
    #[serde(default)]
    pub jwks_refresh_seconds: Option<u64>,
    /// The least time between two fetches of the JWK Set triggered by a token naming an unknown `kid`, in seconds
    /// (default 30): tokens with made-up key ids cannot turn into a flood of fetches.
    #[serde(default)]
    pub jwks_min_refetch_seconds: Option<u64>,
    /// A PEM bundle of CA certificates trusted for the JWKS endpoint, besides the public roots.
    #[serde(default)]
    pub jwks_ca_file: Option<PathBuf>,
}

impl IssuerConfig {
    /// How often the JWK Set is fetched again.
    pub fn jwks_refresh(&self) -> Duration {
        Duration::from_secs(
            self.jwks_refresh_seconds
                .unwrap_or(crate::jwks::DEFAULT_REFRESH_SECONDS),
        )
    }

    /// The least time between two fetches triggered by an unknown `kid`.
    pub fn jwks_min_refetch(&self) -> Duration {
        Duration::from_secs(
            self.jwks_min_refetch_seconds
                .unwrap_or(crate::jwks::DEFAULT_MIN_REFETCH_SECONDS),
        )
    }

    /// Why this issuer's entry cannot be used, if it cannot.
    fn check(&self, index: usize) -> Result<(), String> {
        let name = format!("auth.issuers[{index}] ({})", self.issuer);
        let Some(url) = &self.jwks_url else {
            if self.keys.is_empty() {
                return Err(format!("{name}: an issuer needs keys, a jwks_url, or both"));
            }
            if self.jwks_refresh_seconds.is_some()
                || self.jwks_min_refetch_seconds.is_some()
                || self.jwks_ca_file.is_some()
            {
                return Err(format!(
                    "{name}: jwks_refresh_seconds, jwks_min_refetch_seconds and jwks_ca_file need a jwks_url"
                ));
            }
            return Ok(());
        };
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(format!(
                    "{name}: jwks_url must be https (http only to a loopback address)"
                ));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{name}: jwks_url must not carry credentials"));
        }
        if self.jwks_refresh_seconds == Some(0) {
            return Err(format!("{name}: jwks_refresh_seconds must be at least 1"));
        }
        if self.jwks_min_refetch_seconds == Some(0) {
            return Err(format!(
                "{name}: jwks_min_refetch_seconds must be at least 1"
            ));
        }
        Ok(())
    }
}

fn default_amr() -> Vec<String> {
    vec!["mfa".into(), "otp".into(), "hwk".into()]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum KeyAlgorithm {
    RS256,
    ES256,
    EdDSA,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub kid: String,
    pub algorithm: KeyAlgorithm,
    pub public_key_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    pub health: SourceConfig,
    pub school: SchoolSourceConfig,
    pub early_years: SourceConfig,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub base_url: url::Url,
    /// Sent as `Authorization: Bearer`; write `${VAR}` to take it from the environment.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// OAuth2 client credentials, instead of a static bearer token.
    #[serde(default)]
    pub client_credentials: Option<ClientCredentialsConfig>,
    /// A PEM bundle of CA certificates trusted for this source, besides the public roots.
    #[serde(default)]
    pub ca_certificate_file: Option<PathBuf>,
    /// A PEM file holding the client certificate and its key, for mutual TLS.
    #[serde(default)]
    pub client_identity_file: Option<PathBuf>,
    /// The longest one request may take, retries included.
    #[serde(default = "default_source_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default)]
    pub retry: RetrySettings,
    #[serde(default)]
    pub breaker: BreakerSettings,
    #[serde(default)]
    pub cache: CacheSettings,
    /// `auto` (HTTP/2 if the source offers it over TLS, else HTTP/1.1), `http1` or `http2` (required; at an
    /// `http://` URL, spoken from the first byte).
    #[serde(default)]
    pub http_version: childgraph_connectors::HttpVersion,
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of debug output.
        f.debug_struct("SourceConfig")
            .field("base_url", &self.base_url.as_str())
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "client_credentials",
                &self
                    .client_credentials
                    .as_ref()
                    .map(|c| c.token_url.as_str()),
            )
            .field("timeout_ms", &self.timeout_ms)
            .field("http_version", &self.http_version)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsConfig {
    pub token_url: url::Url,
    pub client_id: String,
    /// Write `${VAR}` to take it from the environment.
    pub client_secret: String,
    #[serde(default)]
    pub scope: Option<String>,
}

impl std::fmt::Debug for ClientCredentialsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentialsConfig")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Retries of idempotent reads; absent keys take the connector's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    pub max_retries: Option<u32>,
    pub base_backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
    /// Retries allowed per first attempt, over time.
    pub budget_ratio: Option<f64>,
    /// Retries allowed in a burst.
    pub budget_max: Option<f64>,
}

/// The circuit breaker; absent keys take the connector's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: Option<u32>,
    /// How long it stays open before one probe is let through.
    pub open_for_ms: Option<u64>,
}

/// The cache of raw source answers; absent keys take the connector's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    pub enabled: Option<bool>,
    pub ttl_ms: Option<u64>,
    pub max_entries: Option<u64>,
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchoolSourceConfig {
    #[serde(flatten)]
    pub source: SourceConfig,
    /// The most predicates the OneRoster server accepts in one `filter`.
    #[serde(default = "default_filter_predicates")]
    pub filter_max_predicates: usize,
}

fn default_source_timeout_ms() -> u64 {
    1500
}
fn default_connect_timeout_ms() -> u64 {
    500
}
fn default_filter_predicates() -> usize {
    2
}

impl SourceConfig {
    /// A source at this URL with every other setting at its default.
    pub fn at(base_url: url::Url) -> Self {
        Self {
            base_url,
            bearer_token: None,
            client_credentials: None,
            ca_certificate_file: None,
            client_identity_file: None,
            timeout_ms: default_source_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            retry: RetrySettings::default(),
            breaker: BreakerSettings::default(),
            cache: CacheSettings::default(),
            http_version: childgraph_connectors::HttpVersion::Auto,
        }
    }

    /// The connector's view of this source. Reads the CA and identity files it names.
    pub fn connector_config(&self) -> Result<childgraph_connectors::SourceConfig, ConfigError> {
        let mut c = childgraph_connectors::SourceConfig::new(self.base_url.clone());
        c.bearer_token = self.bearer_token.clone();
        if let Some(cc) = &self.client_credentials {
            c.credentials = childgraph_connectors::Credentials::ClientCredentials {
                token_url: cc.token_url.clone(),
                client_id: cc.client_id.clone(),
                client_secret: cc.client_secret.clone(),
                scope: cc.scope.clone(),
            };
        }
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })
        };
        c.ca_certificate_pem = self.ca_certificate_file.as_ref().map(read).transpose()?;
        c.client_identity_pem = self.client_identity_file.as_ref().map(read).transpose()?;
        c.request_timeout = Duration::from_millis(self.timeout_ms);
        c.connect_timeout = Duration::from_millis(self.connect_timeout_ms);
        c.http_version = self.http_version;
        let r = &self.retry;
        c.retry.max_retries = r.max_retries.unwrap_or(c.retry.max_retries);
        c.retry.base_backoff = r
            .base_backoff_ms
            .map_or(c.retry.base_backoff, Duration::from_millis);
        c.retry.max_backoff = r
            .max_backoff_ms
            .map_or(c.retry.max_backoff, Duration::from_millis);
        c.retry.budget_ratio = r.budget_ratio.unwrap_or(c.retry.budget_ratio);
        c.retry.budget_max = r.budget_max.unwrap_or(c.retry.budget_max);
        let b = &self.breaker;
        c.breaker.failure_threshold = b.failure_threshold.unwrap_or(c.breaker.failure_threshold);
        c.breaker.open_for = b
            .open_for_ms
            .map_or(c.breaker.open_for, Duration::from_millis);
        let k = &self.cache;
        c.cache.enabled = k.enabled.unwrap_or(c.cache.enabled);
        c.cache.ttl = k.ttl_ms.map_or(c.cache.ttl, Duration::from_millis);
        c.cache.max_entries = k.max_entries.unwrap_or(c.cache.max_entries);
        c.cache.max_bytes = k.max_bytes.unwrap_or(c.cache.max_bytes);
        Ok(c)
    }
}

/// The issuer name of demo tokens. `serve` refuses a config that trusts it.
pub const DEMO_ISSUER: &str = "urn:childgraph:demo";

impl Config {
    /// Reads, expands and checks a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text, path, |var| std::env::var(var).ok())
    }

    /// Parses config text; `env` looks variables up, so tests need not touch the process environment.
    pub fn parse(
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.into(),
            message,
        };
        let mut tree: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut expanded = Vec::new();
        expand_strings(&mut tree, &env, &mut expanded).map_err(|var| {
            ConfigError::MissingVariable {
                path: path.into(),
                var,
            }
        })?;
        // A value taken from the environment is a secret, often: an error that quotes it names its variable instead.
        let conceal = |mut message: String| {
            for (var, value) in &expanded {
                if !value.is_empty() {
                    message = message.replace(value.as_str(), &format!("${{{var}}}"));
                }
            }
            message
        };
        // The error names the key at fault by its path (`sources.school.http_version: unknown variant…`).
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let path = e.path().to_string();
            let message = conceal(e.into_inner().to_string());
            invalid(if path == "." {
                message
            } else {
                format!("{path}: {message}")
            })
        })?;
        if config.auth.issuers.is_empty() {
            return Err(invalid(
                "auth.issuers: at least one issuer is needed".into(),
            ));
        }
        if config.auth.issuers.iter().any(|i| i.issuer == DEMO_ISSUER) {
            return Err(invalid(format!(
                "auth.issuers: {DEMO_ISSUER} is the demo's issuer and is never trusted by serve"
            )));
        }
        for (index, issuer) in config.auth.issuers.iter().enumerate() {
            issuer.check(index).map_err(invalid)?;
        }
        if config.request.max_results == 0 {
            return Err(invalid("request.max_results: must be at least 1".into()));
        }
        if let Err(e) = childgraph_linkage::Linker::new(
            childgraph_linkage::model::Parameters::default(),
            config.linkage.link_threshold,
            config.linkage.possible_threshold,
        ) {
            return Err(invalid(format!("linkage: {e}")));
        }
        if config.monitoring.window_minutes == 0 {
            return Err(invalid(
                "monitoring.window_minutes: must be at least 1".into(),
            ));
        }
        if !(1..=12).contains(&config.accounts.recertify_months) {
            return Err(invalid(
                "accounts.recertify_months: must be from 1 to 12".into(),
            ));
        }
        if config.sources.school.filter_max_predicates == 0 {
            return Err(invalid(
                "sources.school.filter_max_predicates: must be at least 1".into(),
            ));
        }
        Ok(config)
    }
}

/// Expands `${VAR}` in every string value of the tree (never in keys or comments).
fn expand_strings(
    value: &mut serde_yaml_ng::Value,
    env: &impl Fn(&str) -> Option<String>,
    expanded: &mut Vec<(String, String)>,
) -> Result<(), String> {
    use serde_yaml_ng::Value;
    match value {
        Value::String(s) => *s = expand(s, env, expanded)?,
        Value::Sequence(items) => items
            .iter_mut()
            .try_for_each(|v| expand_strings(v, env, expanded))?,
        Value::Mapping(map) => map
            .iter_mut()
            .try_for_each(|(_, v)| expand_strings(v, env, expanded))?,
        Value::Tagged(tagged) => expand_strings(&mut tagged.value, env, expanded)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// Replaces `${VAR}` with the variable's value, noting each (variable, value) in `expanded`; `$${` stands for a
/// literal `${`.
fn expand(
    text: &str,
    env: &impl Fn(&str) -> Option<String>,
    expanded: &mut Vec<(String, String)>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if rest[..start].ends_with('$') {
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let var = &after[..end];
        let value = env(var).ok_or_else(|| var.to_owned())?;
        out.push_str(&value);
        expanded.push((var.to_owned(), value));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/childgraph.yaml");

    fn env(var: &str) -> Option<String> {
        match var {
            "HEALTH_TOKEN" | "SCHOOL_TOKEN" | "EARLY_YEARS_TOKEN" => Some("secret".into()),
            "DATABASE_URL" => Some(
                "postgres://childgraph:pw@db.example.org:5432/childgraph?sslmode=verify-full"
                    .into(),
            ),
            _ => None,
        }
    }

    #[test]
    fn example_config_is_valid() {
        let config = Config::parse(EXAMPLE, Path::new("examples/childgraph.yaml"), env)
            .expect("valid example");
        assert_eq!(
            config.sources.health.bearer_token.as_deref(),
            Some("secret")
        );
        assert_eq!(config.request.deadline(), Duration::from_secs(2));
        assert!(
            matches!(config.store, StoreConfig::Postgres { .. }),
            "{:?}",
            config.store
        );
    }

    #[test]
    fn unknown_keys_and_missing_variables_are_named() {
        let text = EXAMPLE.replace("listen:", "lisen: 1\nlisten:");
        let err = Config::parse(&text, Path::new("c.yaml"), env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.yaml") && err.contains("lisen"), "{err}");
        let err = Config::parse(EXAMPLE, Path::new("c.yaml"), |_| None)
            .unwrap_err()
            .to_string();
        // The first the file names.
        assert!(
            err.contains("DATABASE_URL") && !err.contains("secret"),
            "{err}"
        );
    }

    #[test]
    fn a_source_speaks_the_http_version_its_config_names() {
        use childgraph_connectors::HttpVersion;
        let config = Config::parse(EXAMPLE, Path::new("c.yaml"), env).expect("valid example");
        // Unsaid, as for health; and said, as the example says it for early years.
        assert_eq!(config.sources.health.http_version, HttpVersion::Auto);
        assert_eq!(config.sources.early_years.http_version, HttpVersion::Auto);
        let text = EXAMPLE.replace("http_version: auto", "http_version: http2");
        let config = Config::parse(&text, Path::new("c.yaml"), env).expect("http2");
        let early_years = config
            .sources
            .early_years
            .connector_config()
            .expect("connector config");
        assert_eq!(early_years.http_version, HttpVersion::Http2);
        let text = EXAMPLE.replace(
            "filter_max_predicates: 2",
            "filter_max_predicates: 2\n    http_version: http1",
        );
        let config = Config::parse(&text, Path::new("c.yaml"), env).expect("http1");
        assert_eq!(
            config.sources.school.source.http_version,
            HttpVersion::Http1
        );
        let text = EXAMPLE.replace("http_version: auto", "http_version: http3");
        let err = Config::parse(&text, Path::new("c.yaml"), env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sources.early_years.http_version")
                && err.contains("http3")
                && err.contains("http2"),
            "{err}"
        );
    }

    #[test]
    fn linkage_thresholds_must_leave_a_possible_band_below_the_link() {
        let text = EXAMPLE.replace("possible_threshold: 0.1", "possible_threshold: 0.95");
        let err = Config::parse(&text, Path::new("c.yaml"), env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("linkage: the thresholds"), "{err}");
        let config = Config::parse(EXAMPLE, Path::new("c.yaml"), env).expect("valid");
        assert_eq!(config.linkage.link_threshold, 0.5);
        let missing = LinkageConfig {
            parameters: Some("/nonexistent/linkage.yaml".into()),
            ..LinkageConfig::default()
        };
        let err = format!("{:#}", missing.linker().unwrap_err());
        assert!(
            err.contains("cannot read /nonexistent/linkage.yaml"),
            "{err}"
        );
    }

    #[test]
    fn demo_issuer_is_refused() {
        let text = EXAMPLE.replace("https://login.example.org", DEMO_ISSUER);
        assert!(Config::parse(&text, Path::new("c.yaml"), env).is_err());
    }

    /// The example with its issuer's keys and JWKS settings replaced by these lines.
    fn with_issuer_keys(lines: &str) -> String {
        let after = "      required_amr: [mfa, otp, hwk]\n";
        let start = EXAMPLE.find(after).expect("the example's issuer") + after.len();
        let end = EXAMPLE[start..].find("sources:").expect("sources") + start;
        format!("{}{lines}{}", &EXAMPLE[..start], &EXAMPLE[end..])
    }

    const STATIC_KEY: &str =
        "      keys:\n        - { kid: k, algorithm: EdDSA, public_key_file: /etc/k.pem }\n";

    #[test]
    fn an_issuer_needs_keys_or_a_jwks_url() {
        let err = Config::parse(&with_issuer_keys(""), Path::new("c.yaml"), env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("auth.issuers[0] (https://login.example.org)")
                && err.contains("needs keys, a jwks_url, or both"),
            "{err}"
        );
        let err = Config::parse(
            &with_issuer_keys("      keys: []\n"),
            Path::new("c.yaml"),
            env,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("needs keys, a jwks_url, or both"), "{err}");

        let config = Config::parse(
            &with_issuer_keys("      jwks_url: https://login.example.org/.well-known/jwks.json\n"),
            Path::new("c.yaml"),
            env,
        )
        .expect("a JWKS issuer");
        let issuer = &config.auth.issuers[0];
        assert!(issuer.keys.is_empty());
        assert_eq!(issuer.jwks_refresh(), Duration::from_secs(300));
        assert_eq!(issuer.jwks_min_refetch(), Duration::from_secs(30));

        let config = Config::parse(&with_issuer_keys(STATIC_KEY), Path::new("c.yaml"), env)
            .expect("a static key");
        assert!(config.auth.issuers[0].jwks_url.is_none());

        // The example has both.
        let config = Config::parse(EXAMPLE, Path::new("c.yaml"), env).expect("valid");
        assert_eq!(config.auth.issuers[0].keys.len(), 1);
        assert!(config.auth.issuers[0].jwks_url.is_some());
    }

    #[test]
    fn a_jwks_url_is_https_or_loopback_http_and_its_settings_need_it() {
        let parse = |lines: &str| Config::parse(&with_issuer_keys(lines), Path::new("c.yaml"), env);
        for url in [
            "http://127.0.0.1:8443/jwks",
            "http://[::1]/jwks",
            "http://localhost/jwks",
            "https://login.example.org/jwks",
        ] {
            assert!(parse(&format!("      jwks_url: {url}\n")).is_ok(), "{url}");
        }
        for (lines, message) in [
            (
                "      jwks_url: http://login.example.org/jwks\n",
                "must be https",
            ),
            (
                "      jwks_url: ftp://login.example.org/jwks\n",
                "must be https",
            ),
            (
                "      jwks_url: https://u:p@login.example.org/jwks\n",
                "credentials",
            ),
            (
                "      jwks_url: https://login.example.org/jwks\n      jwks_min_refetch_seconds: 0\n",
                "jwks_min_refetch_seconds must be at least 1",
            ),
            (
                "      jwks_url: https://login.example.org/jwks\n      jwks_refresh_seconds: 0\n",
                "jwks_refresh_seconds must be at least 1",
            ),
            (
                "      jwks_url: https://login.example.org/jwks\n      jwks_urls: x\n",
                "jwks_urls",
            ),
        ] {
            let err = parse(lines).unwrap_err().to_string();
            assert!(err.contains(message), "{lines}: {err}");
        }
        for setting in [
            "jwks_refresh_seconds: 60",
            "jwks_min_refetch_seconds: 60",
            "jwks_ca_file: /etc/ca.pem",
        ] {
            let err = parse(&format!("{STATIC_KEY}      {setting}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("need a jwks_url"), "{setting}: {err}");
        }
    }

    /// The example with its store section (its indented lines) replaced by these lines.
    fn with_store(lines: &str) -> String {
        let start = EXAMPLE.find("\nstore:\n").expect("the example's store") + 1;
        let body = start + "store:\n".len();
        let end = body
            + EXAMPLE[body..]
                .split_inclusive('\n')
                .take_while(|line| line.starts_with(' '))
                .map(str::len)
                .sum::<usize>();
        format!("{}store:\n{lines}{}", &EXAMPLE[..start], &EXAMPLE[end..])
    }

    #[test]
    fn the_store_is_sqlite_or_postgres() {
        let secret_env = |var: &str| match var {
            "DATABASE_URL" => {
                Some("postgres://childgraph:hunter2@db.internal:5433/childgraph".to_owned())
            }
            _ => env(var),
        };
        // The example is a production config: replicas on PostgreSQL.
        let config =
            Config::parse(EXAMPLE, Path::new("c.yaml"), secret_env).expect("a postgres store");
        let StoreConfig::Postgres(postgres) = &config.store else {
            panic!("{:?}", config.store);
        };
        assert_eq!(
            postgres.url(),
            "postgres://childgraph:hunter2@db.internal:5433/childgraph"
        );
        assert_eq!(postgres.max_connections, 10);
        // Where the database is shows in debug output; its password never does.
        let debug = format!("{config:?}");
        assert!(
            debug.contains("postgres://db.internal:5433/childgraph") && !debug.contains("hunter2"),
            "{debug}"
        );
        // Its commented SQLite line, taken instead, is one gateway's file.
        let sqlite = EXAMPLE
            .lines()
            .find_map(|line| line.strip_prefix("  # sqlite: "))
            .expect("the example's SQLite alternative");
        let config = Config::parse(
            &with_store(&format!("  sqlite: {sqlite}\n")),
            Path::new("c.yaml"),
            env,
        )
        .expect("a SQLite store");
        assert!(
            matches!(&config.store, StoreConfig::Sqlite(path) if path == Path::new("/var/lib/childgraph/childgraph.db"))
        );
        let config = Config::parse(
            &with_store("  postgres: {url: \"postgresql:///childgraph?host=/run/postgresql\", max_connections: 32}\n"),
            Path::new("c.yaml"),
            env,
        )
        .expect("a socket URL");
        assert!(matches!(config.store, StoreConfig::Postgres(p) if p.max_connections == 32));

        for (lines, message) in [
            (
                "  sqlite: /tmp/a.db\n  postgres: {url: \"postgres://db/cg\"}\n",
                "store: give sqlite or postgres, not both",
            ),
            (
                "  {}\n",
                "store: give sqlite: PATH or postgres: {url: postgres://...}",
            ),
            ("  postgres: {}\n", "missing field `url`"),
            (
                "  postgres: {url: \"mysql://db/cg\"}\n",
                "store.postgres.url: must start with postgres:// or postgresql://",
            ),
            (
                "  postgres: {url: \"postgres://db/cg\", max_connections: 0}\n",
                "store.postgres.max_connections: must be at least 1",
            ),
            (
                "  postgres: {url: \"postgres://db/cg?sslmode=verify-full&sslpassword=hunter2\"}\n",
                "the parameter sslpassword is not one the gateway reads",
            ),
            (
                "  postgres: {url: \"postgres://db/cg\", pool: 3}\n",
                "unknown field `pool`",
            ),
            ("  sqlite: /tmp/a.db\n  mysql: x\n", "unknown field `mysql`"),
        ] {
            let err = Config::parse(&with_store(lines), Path::new("c.yaml"), env)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("c.yaml") && err.contains(message),
                "{lines}: {err}"
            );
        }
    }

    #[test]
    fn dollar_escapes() {
        assert_eq!(
            expand("a $${B} c", &|_| None, &mut Vec::new()).expect("no variables"),
            "a ${B} c"
        );
    }

    #[test]
    fn an_error_names_a_secrets_variable_never_its_value() {
        // The URL given where the store wants a map: the error quotes the value it could not read.
        let url = "postgres://childgraph:hunter2-secret@db.internal:5432/childgraph";
        let env = |var: &str| match var {
            "DATABASE_URL" => Some(url.to_owned()),
            other => env(other),
        };
        let err = Config::parse(
            &with_store("  postgres: ${DATABASE_URL}\n"),
            Path::new("c.yaml"),
            env,
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("${DATABASE_URL}"), "{err}");
    }
}
