//! Simulators of childgraph's three source systems (FHIR health, OneRoster school, early-years REST), serving a synthetic population generated from a seed, with fault injection for tests and demos.
//!
//! [`population`] generates the children and the truth, [`cast`] fixes the demo children, [`fhir`], [`oneroster`] and [`early_years`] serve the protocols
//! of `connectors/PROFILES.md`, and [`faults`] injects latency, errors, hangs and malformed bodies. [`spawn`] runs one simulator on a listener.

pub mod cast;
pub mod early_years;
pub mod faults;
pub mod fhir;
pub mod oneroster;
mod paging;
pub mod population;
pub(crate) mod text;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::serve::ListenerExt as _;
use childgraph_schema::SourceName;

pub use faults::{FaultState, Faults};
pub use population::{
    Crowd, ExportSummary, NoiseConfig, Population, PopulationConfig, export, nicknames,
};

use faults::Protocol;

/// Which source system a simulator plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimulatorKind {
    Health,
    School,
    EarlyYears,
}

impl SimulatorKind {
    pub const ALL: [SimulatorKind; 3] = [
        SimulatorKind::Health,
        SimulatorKind::School,
        SimulatorKind::EarlyYears,
    ];

    /// The source this simulator stands in for.
    pub fn source(self) -> SourceName {
        match self {
            SimulatorKind::Health => SourceName::Health,
            SimulatorKind::School => SourceName::School,
            SimulatorKind::EarlyYears => SourceName::EarlyYears,
        }
    }

    /// The protocol base path under the server root.
    pub fn base_path(self) -> &'static str {
        match self {
            SimulatorKind::Health => "/fhir",
            SimulatorKind::School => oneroster::BASE_PATH,
            SimulatorKind::EarlyYears => early_years::BASE_PATH,
        }
    }

    fn protocol(self) -> Protocol {
        match self {
            SimulatorKind::Health => Protocol::Fhir,
            SimulatorKind::School => Protocol::OneRoster,
            SimulatorKind::EarlyYears => Protocol::EarlyYears,
        }
    }
}

/// The whole simulator: protocol routes behind the fault layer, plus the `/_sim` control routes.
pub fn router(kind: SimulatorKind, population: Arc<Population>, faults: Arc<FaultState>) -> Router {
    let protocol = match kind {
        SimulatorKind::Health => fhir::router(population),
        SimulatorKind::School => oneroster::router(population),
        SimulatorKind::EarlyYears => early_years::router(population),
    };
    let layered = protocol.layer(axum::middleware::from_fn_with_state(
        (faults.clone(), kind.protocol()),
        faults::inject,
    ));
    layered.merge(faults::control_routes(faults))
}

/// A running simulator.
#[derive(Debug, Clone)]
pub struct SimulatorHandle {
    pub kind: SimulatorKind,
    pub addr: SocketAddr,
    /// Set faults at runtime, and read the request counter.
    pub faults: Arc<FaultState>,
}

impl SimulatorHandle {
    /// `http://127.0.0.1:PORT/`.
    pub fn root_url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}/", self.addr)).expect("a socket address makes a URL")
    }

    /// The protocol base: `…/fhir`, `…/ims/oneroster/rostering/v1p2` or `…/api/v1`.
    pub fn base_url(&self) -> url::Url {
        self.root_url()
            .join(self.kind.base_path().trim_start_matches('/'))
            .expect("base paths are valid")
    }

    /// Requests received on the protocol routes.
    pub fn requests(&self) -> u64 {
        self.faults.requests()
    }
}

/// Serves the three simulators, in the order of [`SimulatorKind::ALL`], each on a free port of 127.0.0.1 and with
/// `initial` faults, until the future `shutdown` makes for it resolves.
pub async fn spawn_all<F>(
    population: Arc<Population>,
    initial: Faults,
    shutdown: impl Fn() -> F,
) -> std::io::Result<[SimulatorHandle; 3]>
where
    F: Future<Output = ()> + Send + 'static,
{
    let mut handles = Vec::with_capacity(SimulatorKind::ALL.len());
    for kind in SimulatorKind::ALL {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        handles.push(spawn(kind, population.clone(), listener, initial, shutdown()).await?);
    }
    match handles.try_into() {
        Ok(all) => Ok(all),
        Err(_) => unreachable!("one simulator per kind"),
    }
}

/// Serves a simulator on `listener` until `shutdown` resolves. Requests held by `hang` end at shutdown.
pub async fn spawn(
    kind: SimulatorKind,
    population: Arc<Population>,
    listener: tokio::net::TcpListener,
    initial: Faults,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<SimulatorHandle> {
    initial
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let addr = listener.local_addr()?;
    let faults = Arc::new(FaultState::new(initial));
    let app = router(kind, population, faults.clone());
    let release = faults.clone();
    let shutdown = async move {
        shutdown.await;
        release.release_hangs();
    };
    tokio::spawn(async move {
        // As a real server does: without it, a response written in two parts (HTTP/2's HEADERS and DATA frames) waits
        // for the client's delayed ACK, up to 40 ms, before its second part is sent.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "TCP_NODELAY could not be set");
            }
        });
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "simulator stopped");
        }
    });
    tracing::info!(?kind, %addr, "simulator listening");
    Ok(SimulatorHandle { kind, addr, faults })
}
