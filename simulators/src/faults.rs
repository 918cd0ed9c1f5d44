//! Fault injection and request counting shared by the simulators: a layer around each protocol's routes, and the `/_sim` control routes that set faults at runtime.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Faults a simulator injects into its protocol routes. Every field is optional; `{}` means no faults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Fixed delay before every answer.
    pub latency_ms: u64,
    /// Extra delay, a whole number of milliseconds drawn uniformly from 0 to this, added to the fixed delay. Either
    /// is counted from the request's arrival, to within a fraction of a millisecond ([`wait_until`]).
    pub jitter_ms: u64,
    /// Share of requests (0 to 1) answered with a protocol-appropriate 500.
    pub error_rate: f64,
    /// Never answer: the request waits until the client gives up or the simulator shuts down.
    pub hang: bool,
    /// Answer 200 with a truncated, invalid JSON body.
    pub malformed: bool,
}

impl Faults {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err("error_rate must be between 0 and 1".to_owned());
        }
        Ok(())
    }
}

/// The faults in force and the request counter of one simulator, shared between its layer, its control routes and its handle.
#[derive(Debug)]
pub struct FaultState {
    faults: Mutex<Faults>,
    requests: AtomicU64,
    /// Those of them that came over HTTP/2.
    http2_requests: AtomicU64,
    /// Becomes true at shutdown, so hanging requests end and graceful shutdown can finish.
    released: watch::Sender<bool>,
}

impl FaultState {
    pub fn new(initial: Faults) -> Self {
        Self {
            faults: Mutex::new(initial),
            requests: AtomicU64::new(0),
            http2_requests: AtomicU64::new(0),
            released: watch::channel(false).0,
        }
    }

    pub fn get(&self) -> Faults {
        *self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the faults in force; invalid faults are refused and the current ones kept.
    pub fn set(&self, faults: Faults) -> Result<(), String> {
        faults.validate()?;
        *self.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
        Ok(())
    }

    /// Requests received on the protocol routes since the simulator started.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Those of [`Self::requests`] that came over HTTP/2.
    pub fn http2_requests(&self) -> u64 {
        self.http2_requests.load(Ordering::Relaxed)
    }

    /// Ends every request held by `hang`, now and from now on.
    pub fn release_hangs(&self) {
        self.released.send_replace(true);
    }
}

/// The protocol a simulator speaks, which decides the shape of its error bodies and its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Fhir,
    OneRoster,
    EarlyYears,
}

impl Protocol {
    fn error(self, status: StatusCode, message: &str) -> Response {
        match self {
            Protocol::Fhir => crate::fhir::outcome(status, "exception", message),
            Protocol::OneRoster => {
                crate::oneroster::status_info(status, "internal_server_error", message)
            }
            Protocol::EarlyYears => crate::early_years::problem(status, message),
        }
    }
}

/// The layer around protocol routes: count, then apply the faults in force.
pub(crate) async fn inject(
    State((state, protocol)): State<(Arc<FaultState>, Protocol)>,
    request: Request,
    next: Next,
) -> Response {
    let arrived = std::time::Instant::now();
    state.requests.fetch_add(1, Ordering::Relaxed);
    if request.version() == axum::http::Version::HTTP_2 {
        state.http2_requests.fetch_add(1, Ordering::Relaxed);
    }
    let faults = state.get();
    if faults.hang {
        let mut released = state.released.subscribe();
        // Resolves only at shutdown; a dropped connection drops this future instead.
        let _ = released.wait_for(|r| *r).await;
        return protocol.error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the simulator is shutting down",
        );
    }
    let delay = faults.latency_ms
        + if faults.jitter_ms > 0 {
            rand::thread_rng().gen_range(0..=faults.jitter_ms)
        } else {
            0
        };
    if delay > 0 {
        wait_until(arrived + Duration::from_millis(delay)).await;
    }
    if faults.error_rate > 0.0 && rand::thread_rng().r#gen::<f64>() < faults.error_rate {
        return protocol.error(StatusCode::INTERNAL_SERVER_ERROR, "injected fault");
    }
    let response = next.run(request).await;
    if !faults.malformed {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    // Any strict prefix of a JSON object or array is invalid JSON; an empty body gets an unclosed brace.
    let truncated = if bytes.len() > 1 {
        bytes.slice(..bytes.len() / 2)
    } else {
        Bytes::from_static(b"{")
    };
    parts.status = StatusCode::OK;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(truncated))
}

/// Waits until `deadline`, to within a fraction of a millisecond.
///
/// Tokio's timer counts whole milliseconds and rounds each sleep up to the next one: a sleep of 10 ms ends anywhere
/// from 10 to 11 ms later, and requests that came a moment apart are answered together or a whole millisecond apart,
/// by where the millisecond's edge fell between them. A source set to 10 ms answers every request 10 ms after it
/// came, so the wait is `async-io`'s timer, which its reactor keeps with a Linux `timerfd`, not rounded to the millisecond.
async fn wait_until(deadline: std::time::Instant) {
    async_io::Timer::at(deadline).await;
}

async fn stats(State(state): State<Arc<FaultState>>) -> Response {
    axum::Json(serde_json::json!({
        "requests": state.requests(),
        "http2_requests": state.http2_requests(),
    }))
    .into_response()
}

async fn show_faults(State(state): State<Arc<FaultState>>) -> Response {
    axum::Json(state.get()).into_response()
}

async fn set_faults(State(state): State<Arc<FaultState>>, body: Bytes) -> Response {
    let bad = |message: String| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "error": message })),
        )
            .into_response()
    };
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return bad(format!("invalid faults: {e}")),
    };
    match state.set(faults) {
        Ok(()) => axum::Json(faults).into_response(),
        Err(e) => bad(e),
    }
}

/// `GET /_sim/stats`, `GET /_sim/faults` and `POST /_sim/faults`. These are neither counted nor faulted.
pub(crate) fn control_routes(state: Arc<FaultState>) -> Router {
    Router::new()
        .route("/_sim/stats", get(stats))
        .route("/_sim/faults", get(show_faults).post(set_faults))
        .with_state(state)
}
