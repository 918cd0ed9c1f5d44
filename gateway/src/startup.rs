//! Assembles a running gateway from its parts: store, policy, connectors and trusted issuers. `serve` and `demo` both start here.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use childgraph_connectors::Connector;
use childgraph_connectors::early_years::EarlyYearsConnector;
use childgraph_connectors::fhir::FhirConnector;
use childgraph_connectors::oneroster::OneRosterConnector;
use childgraph_policies::Policy;

use crate::auth::{Authenticator, IssuerSpec};
use crate::config::{Config, RequestConfig, SourcesConfig};
use crate::federation::Federation;
use crate::pipeline::{Limits, Pipeline};
use crate::server::AppState;
use crate::store::Store;

/// Everything a gateway is made of.
#[derive(Debug)]
pub struct Parts {
    pub store: Store,
    pub policy: Policy,
    pub connectors: Vec<Arc<dyn Connector>>,
    pub issuers: Vec<IssuerSpec>,
    pub leeway_seconds: u64,
    /// How long an active account is kept between reads of the store.
    pub account_cache: std::time::Duration,
    pub request: RequestConfig,
    pub accounts: crate::config::AccountsConfig,
    pub monitoring: crate::config::MonitoringConfig,
    pub linker: childgraph_linkage::Linker,
}

/// Puts the parts together into the state the server runs on.
pub fn assemble(parts: Parts) -> anyhow::Result<AppState> {
    let metrics = Arc::new(crate::metrics::Metrics::new());
    metrics.watch_sources(parts.connectors.clone());
    let federation = Federation::new(parts.connectors).with_metrics(metrics.clone());
    let pipeline = Pipeline {
        policy: crate::policy_reload::ActivePolicy::new(parts.policy, metrics.clone()),
        metrics,
        audit: crate::audit::AuditLog::counting_views(
            parts.store.clone(),
            parts.monitoring.window(),
        ),
        quotas: crate::pipeline::Quotas {
            searches: crate::quotas::SearchQuota::new(parts.request.searches_per_minute),
            views: crate::quotas::ViewQuota::new(parts.request.children_per_hour),
            monitor: crate::quotas::ViewMonitor::new(
                parts.monitoring.distinct_children_alert,
                parts.monitoring.window(),
            ),
        },
        store: parts.store.clone(),
        federation: federation.clone(),
        limits: Limits {
            max_results: parts.request.max_results,
            deadline: parts.request.deadline(),
        },
        linker: Arc::new(parts.linker),
        accounts: parts.accounts,
    };
    let trusted = parts
        .request
        .trusted_documents
        .as_ref()
        .map(|t| crate::graphql::trusted::TrustedDocuments::load(&t.manifest, t.enforce))
        .transpose()
        .context("loading the trusted documents")?;
    let auth = Authenticator::new(parts.issuers, parts.leeway_seconds, parts.store)
        .context("loading trusted keys")?
        .with_account_cache(parts.account_cache);
    Ok(AppState {
        schemas: crate::graphql::build(pipeline.clone(), parts.request.introspection),
        auth: Arc::new(auth),
        pipeline,
        body_limit: parts.request.body_limit_bytes,
        documents: crate::graphql::documents(),
        trusted,
        closing: Arc::default(),
    })
}

/// One connector per configured source.
pub fn connectors(sources: &SourcesConfig) -> anyhow::Result<Vec<Arc<dyn Connector>>> {
    let health = FhirConnector::new(sources.health.connector_config()?).context("health source")?;
    let school = OneRosterConnector::new(
        sources.school.source.connector_config()?,
        sources.school.filter_max_predicates,
    )
    .context("school source")?;
    let early_years = EarlyYearsConnector::new(sources.early_years.connector_config()?)
        .context("early_years source")?;
    Ok(vec![
        Arc::new(health),
        Arc::new(school),
        Arc::new(early_years),
    ])
}

/// How often a policy file is looked at for a change.
pub const POLICY_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads the policy file, or takes the built-in default.
pub fn load_policy(path: Option<&Path>) -> anyhow::Result<Policy> {
    match path {
        None => Ok(Policy::default_policy()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Policy::from_yaml(&text).map_err(|e| {
                anyhow::anyhow!(
                    "the policy is refused: {}",
                    e.in_file(&path.display().to_string())
                )
            })
        }
    }
}

/// `childgraph serve --config FILE`.
pub async fn serve(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let store = Store::open(&config.store)
        .await
        .context("opening the store")?;
    let issuers = crate::auth::load_issuers(&config.auth)?;
    let state = assemble(Parts {
        store,
        policy: load_policy(config.policy.as_deref())?,
        connectors: connectors(&config.sources)?,
        issuers,
        leeway_seconds: config.auth.leeway_seconds,
        account_cache: std::time::Duration::from_secs(config.auth.account_cache_seconds),
        accounts: config.accounts,
        monitoring: config.monitoring,
        request: config.request.clone(),
        linker: config.linkage.linker()?,
    })?;
    if let Some(path) = &config.policy {
        tokio::spawn(crate::policy_reload::watch(
            state.pipeline.policy.clone(),
            path.clone(),
            POLICY_POLL,
            std::future::pending(),
        ));
    }
    tracing::info!(policy_hash = %state.pipeline.policy.snapshot().hash(), "policy in force");
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, "childgraph serving");
    crate::server::run_draining(listener, state, shutdown_signal(), config.shutdown.drain())
        .await?;
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
