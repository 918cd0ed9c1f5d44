//! The HTTP server: GraphQL over HTTP at `/graphql` (GraphiQL for a browser), `/healthz`, `/readyz` and `/metrics`.
//!
//! `run` takes a bound listener and a shutdown future, so tests run the real server on `127.0.0.1:0`.

use std::future::Future;
use std::sync::Arc;

use async_graphql::http::GraphiQLSource;
use async_graphql::{ErrorExtensionValues, ServerError};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::{AuthError, Authenticator};
use crate::graphql::{Documents, Schemas};
use crate::pipeline::Pipeline;

const REQUEST_ID: &str = "x-request-id";

/// What every handler may need.
#[derive(Clone)]
pub struct AppState {
    pub schemas: Schemas,
    pub auth: Arc<Authenticator>,
    pub pipeline: Pipeline,
    pub body_limit: usize,
    /// Parsed query texts that carry no typed values, by text.
    pub documents: Documents,
    /// Registered operations, when configured.
    pub trusted: Option<crate::graphql::trusted::TrustedDocuments>,
    /// Set once the gateway is stopping: readiness fails, and every response closes its connection.
    pub closing: Arc<std::sync::atomic::AtomicBool>,
}

/// How long a stopping gateway still accepts connections, at most (and at most a quarter of the drain): long enough
/// for a load balancer to see readiness fail, and for each kept-alive connection to be told, with its next response,
/// that it closes. A connection closed between a response and the next request could cut that request.
const CLOSING: std::time::Duration = std::time::Duration::from_secs(1);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("pipeline", &self.pipeline)
            .finish_non_exhaustive()
    }
}

/// The gateway's routes, with the layers every request passes: request id, tracing span, body limit.
pub fn router(state: AppState) -> Router {
    let body_limit = state.body_limit;
    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|State(state): State<AppState>| async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    state.pipeline.metrics.render(),
                )
            }),
        )
        .layer(axum::middleware::from_fn_with_state(body_limit, limit_body))
        .layer(axum::middleware::map_response_with_state(
            state.closing.clone(),
            close_when_stopping,
        ))
        .layer(PropagateRequestIdLayer::new(header::HeaderName::from_static(REQUEST_ID)))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            // The path only: query strings can carry search terms.
            let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(header::HeaderName::from_static(REQUEST_ID), MakeRequestUuid))
        .layer(axum::middleware::map_request(plain_request_id))
        .with_state(state)
}

/// Reads a request's body whole, refusing one longer than the limit with 413 before reading it when its
/// `Content-Length` says so, and as soon as it passes the limit when it comes in chunks. The GraphQL extractor reads
/// the body stream itself, so axum's `DefaultBodyLimit` would never apply to it.
async fn limit_body(
    State(limit): State<usize>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let too_large = || {
        coded_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BAD_REQUEST",
            &format!("the request body is longer than the limit of {limit} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(error) => {
            let over = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            return if over {
                too_large()
            } else {
                coded_response(
                    StatusCode::BAD_REQUEST,
                    "BAD_REQUEST",
                    "the request body could not be read",
                )
            };
        }
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// A client's own request id is kept only when it is short and plain (ASCII letters, digits, `-`, `_`, `.`, `:`):
/// it goes into the logs, the spans and the audit log, so it may carry nothing else. Otherwise the gateway makes one.
async fn plain_request_id(mut request: axum::extract::Request) -> axum::extract::Request {
    let plain = request.headers().get(REQUEST_ID).is_none_or(|id| {
        id.len() <= 64
            && id
                .as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    });
    if !plain {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

/// Once the gateway is stopping, each response says the connection closes after it, so that the client sends its
/// next request elsewhere rather than on a connection about to close.
async fn close_when_stopping(
    State(closing): State<Arc<std::sync::atomic::AtomicBool>>,
    mut response: Response,
) -> Response {
    if closing.load(std::sync::atomic::Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The longest the last audit record (`gateway.stop`) may take once requests have drained.
const STOP_RECORD: std::time::Duration = std::time::Duration::from_secs(5);

/// How long connections accepted last have to send their request, once the listener is closed, before connections
/// without a request in progress are closed: a request already sent on them is served, not cut.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(100);

/// Serves until `shutdown` completes; then closes the listener, and lets in-flight requests finish while closing
/// each connection once it has no request in progress.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = hyper_util::service::TowerToHyperService::new(tower::ServiceExt::map_request(
        router(state),
        |r: axum::http::Request<hyper::body::Incoming>| r.map(axum::body::Body::new),
    ));
    let builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    // The connections' tasks belong to this future: dropped (at the drain deadline), it aborts them, so a request
    // still running then is cut, in this process as in one about to exit.
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    let serve = |stream: tokio::net::TcpStream, tasks: &mut tokio::task::JoinSet<()>| {
        let _ = stream.set_nodelay(true);
        let connection = builder
            .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service.clone())
            .into_owned();
        let connection = connections.watch(connection);
        tasks.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a connection ended with an error");
            }
        });
    };
    loop {
        tokio::select! {
            // Finished connections are reaped as they end.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => serve(stream, &mut tasks),
                // Out of file descriptors, say: the listener stays, and the next accept may succeed.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    // Connections the system has already accepted on the listener's behalf are served too: closing the listener
    // would reset them, and a request may be on its way on each.
    while let Some(Ok((stream, _))) = futures::FutureExt::now_or_never(listener.accept()) {
        serve(stream, &mut tasks);
    }
    drop(listener);
    tokio::time::sleep(SETTLE).await;
    connections.shutdown().await;
    Ok(())
}

/// Serves until `shutdown` completes; then fails readiness and closes each connection after its next response,
/// stops accepting (after [`CLOSING`], or a quarter of `drain`), lets in-flight requests finish until `drain` has
/// passed since the signal, and flushes the audit log: a last record, `gateway.stop`, committed after every record
/// queued before it.
pub async fn run_draining(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: std::time::Duration,
) -> std::io::Result<()> {
    let pipeline = state.pipeline.clone();
    let closing = state.closing.clone();
    let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
    let server = run(listener, state, async move {
        shutdown.await;
        closing.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            drain_seconds = drain.as_secs(),
            "stopping: readiness fails, connections close after their next response"
        );
        let _ = signalled.send(());
        tokio::time::sleep(CLOSING.min(drain / 4)).await;
        tracing::info!("stopping: no new connections; draining requests in flight");
    });
    tokio::pin!(server);
    let deadline = async {
        match on_signal.await {
            Ok(()) => tokio::time::sleep(drain).await,
            Err(_) => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        served = &mut server => {
            served?;
            "drained"
        }
        () = deadline => {
            tracing::warn!("the drain deadline passed: requests still in flight are cut");
            "deadline"
        }
    };
    let entry = crate::audit::AuditEntry::outside_a_request(
        format!("stop-{}", uuid::Uuid::new_v4()),
        "childgraph".to_owned(),
        "OPERATIONS",
        "gateway.stop",
        outcome,
        pipeline.policy.snapshot().hash(),
    );
    // Bounded, so that a store gone down cannot hold the process past its grace period.
    match tokio::time::timeout(STOP_RECORD, pipeline.audit.append(entry)).await {
        Ok(Ok(())) => tracing::info!(outcome, "stopped; the audit log is flushed"),
        Ok(Err(e)) => tracing::error!(error = %e, "stopped; the audit log could not be flushed"),
        Err(_) => tracing::error!("stopped; the audit log's last record was not down within 5 s"),
    }
    Ok(())
}

async fn graphql_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Result<GraphQLRequest, async_graphql_axum::rejection::GraphQLRejection>,
) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html {
        return Html(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .title("childgraph")
                .finish(),
        )
        .into_response();
    }
    match request {
        Ok(request) => execute(state, headers, request, Method::Get).await,
        Err(rejection) => rejection.into_response(),
    }
}

/// How the request came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

/// Whether the operation a parsed document would run is a mutation: GET must not change anything (GraphQL over
/// HTTP).
fn is_mutation(
    document: &async_graphql::parser::types::ExecutableDocument,
    operation_name: Option<&str>,
) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    match &document.operations {
        DocumentOperations::Single(op) => op.node.ty == OperationType::Mutation,
        DocumentOperations::Multiple(ops) => match operation_name {
            Some(name) => ops
                .get(name)
                .is_some_and(|op| op.node.ty == OperationType::Mutation),
            None => ops.values().any(|op| op.node.ty == OperationType::Mutation),
        },
    }
}

async fn graphql_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    execute(state, headers, request, Method::Post).await
}

/// Runs a GraphQL request and times it, by the HTTP status of its answer.
async fn execute(
    state: AppState,
    headers: HeaderMap,
    request: GraphQLRequest,
    method: Method,
) -> Response {
    let started = std::time::Instant::now();
    let metrics = state.pipeline.metrics.clone();
    let response = execute_untimed(state, headers, request, method).await;
    metrics.request(response.status().as_u16(), started.elapsed());
    response
}

async fn execute_untimed(
    state: AppState,
    headers: HeaderMap,
    request: GraphQLRequest,
    method: Method,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let request_id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let principal = match state.auth.sign_in(authorization).await {
        Ok(principal) => principal,
        Err(refused) => return refused_sign_in(&state, request_id, refused).await,
    };
    let scope = Arc::new(state.pipeline.scope(request_id, principal));
    let started = std::time::Instant::now();
    let loader = crate::graphql::child_loader(state.pipeline.clone(), scope.clone());
    let mut request = request.into_inner();
    if let Some(trusted) = &state.trusted
        && let Err(refusal) = trusted.resolve(&mut request, scope.principal.client.is_some())
    {
        return untrusted(&scope, refusal).await;
    }
    let prepared = state.documents.prepare(&mut request);
    // The document parsed once, for the executor and for these checks. One that does not parse is left for the
    // executor to refuse with its own error.
    let operation_name = request.operation_name.clone();
    if method == Method::Get
        && request
            .parsed_query()
            .is_ok_and(|d| is_mutation(d, operation_name.as_deref()))
    {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            axum::Json(serde_json::json!({"errors": [{
                "message": "a mutation is sent with POST",
                "extensions": {"code": "BAD_REQUEST"}
            }]})),
        )
            .into_response();
    }
    if let Some(why) = request
        .parsed_query()
        .ok()
        .and_then(crate::graphql::documents::too_large)
    {
        let mut error = ServerError::new(why, None);
        let mut extensions = ErrorExtensionValues::default();
        extensions.set("code", "QUERY_TOO_COMPLEX");
        error.extensions = Some(extensions);
        return GraphQLResponse::from(async_graphql::Response::from_errors(vec![error]))
            .into_response();
    }
    let mut response = state
        .schemas
        .for_request(&prepared)
        .execute(
            request
                .data(scope.clone())
                .data(loader)
                .data(state.auth.clone()),
        )
        .await;
    prepared.answered(&response);
    // One error per failed source, however many resolvers called it.
    for report in scope.reports.failed() {
        response.errors.push(crate::graphql::source_error(report));
    }
    // Errors the schema itself raised (syntax, validation, input coercion) are the client's: say so in the code.
    for error in &mut response.errors {
        let extensions = error
            .extensions
            .get_or_insert_with(ErrorExtensionValues::default);
        if extensions.get("code").is_none() {
            let too_complex = error.message.starts_with("Query is too complex")
                || error.message.starts_with("Query is nested too deep");
            extensions.set(
                "code",
                if too_complex {
                    "QUERY_TOO_COMPLEX"
                } else {
                    "BAD_REQUEST"
                },
            );
        }
    }
    let mut http = GraphQLResponse::from(response).into_response();
    // The answer was composed, and written out, while its access records were committed: none of it leaves before
    // they are down, and a refused or failed one leaves nothing but its error.
    let composed = std::time::Instant::now();
    if let Err(e) = state.pipeline.settle(&scope).await {
        http = GraphQLResponse::from(crate::graphql::unrecorded(&e)).into_response();
    }
    let recording = composed.elapsed();
    // Where the time went, for clients and load tests: waiting on sources, the slowest source's own time (its
    // calls' times added up, as its `responseTimeMs`), the wait, once the answer was composed, for its access records'
    // commit, and the whole of the GraphQL execution.
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let timing = format!(
        "source;dur={:.1};desc=\"waiting on sources\", slowest-source;dur={:.1};desc=\"the slowest source\", audit;dur={:.2};desc=\"waiting for the access record\", gateway;dur={:.1}",
        ms(scope.reports.waited()),
        ms(scope.reports.slowest()),
        ms(recording),
        ms(started.elapsed())
    );
    if let Ok(value) = HeaderValue::from_str(&timing) {
        http.headers_mut().insert("server-timing", value);
    }
    http
}

/// The answer to a document the trusted list does not allow; a refusal in trusted mode is audited.
async fn untrusted(
    scope: &crate::pipeline::RequestScope,
    refusal: crate::graphql::trusted::Refusal,
) -> Response {
    use crate::graphql::trusted::Refusal;
    let code = match refusal {
        Refusal::NotTrusted => {
            let purpose = crate::pipeline::Purpose {
                purpose: crate::access::Operation::Request.purpose(),
                justification: None,
            };
            let recorded = crate::access::AccessRecord::new(
                scope,
                &purpose,
                crate::access::Operation::Request,
            )
            .denied()
            .record()
            .await;
            if recorded.is_err() {
                return coded_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "internal error",
                );
            }
            "FORBIDDEN"
        }
        Refusal::UnknownId | Refusal::Mismatch => "BAD_REQUEST",
    };
    let status = if code == "FORBIDDEN" {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::BAD_REQUEST
    };
    coded_response(status, code, &refusal.to_string())
}

fn coded_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body =
        serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, axum::Json(body)).into_response()
}

/// Answers a refused sign-in. A refusal of a known user (the token was genuine, but the user has no MFA, no active
/// authorisation, or the wrong kind of account) is a denied attempt, recorded in the audit log before the answer; a
/// token that names nobody is only answered.
async fn refused_sign_in(
    state: &AppState,
    request_id: String,
    refused: crate::auth::Refused,
) -> Response {
    let Some(user_id) = refused
        .user_id
        .filter(|_| refused.error.code() == "FORBIDDEN")
    else {
        return auth_error(&refused.error);
    };
    let sign_in = crate::access::Operation::SignIn;
    let entry = crate::audit::AuditEntry::outside_a_request(
        request_id,
        user_id,
        sign_in.purpose(),
        sign_in.as_str(),
        "denied",
        state.pipeline.policy.snapshot().hash(),
    );
    let started = std::time::Instant::now();
    let appended = state.pipeline.audit.append(entry).await;
    state.pipeline.metrics.audit_write(started.elapsed());
    match appended {
        Ok(()) => auth_error(&refused.error),
        Err(e) => {
            tracing::error!(error = %e, operation = "sign_in", "the audit record could not be written");
            auth_error(&AuthError::Store)
        }
    }
}

fn auth_error(error: &AuthError) -> Response {
    let code = error.code();
    let status = match code {
        "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
        "FORBIDDEN" => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut server_error = ServerError::new(error.to_string(), None);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", code);
    server_error.extensions = Some(extensions);
    let body = serde_json::json!({ "errors": [server_error] });
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// Ready when the store answers and a policy is in force (one always is: a gateway starts only with a policy that
/// compiles, and a refused reload keeps the last good one). Each source's breaker and counters are reported; the
/// sources fail readiness only when every one of them is down (its breaker open), since a partial answer is still an
/// answer.
async fn readyz(State(state): State<AppState>) -> Response {
    let stats = state.pipeline.federation.stats();
    // A source is down while its breaker refuses requests. Once the breaker's wait is over the next request probes
    // the source, so the gateway is ready again: taken out of service, it would get no request to probe with.
    let all_down = !stats.is_empty()
        && stats
            .iter()
            .all(|(_, s)| s.breaker == childgraph_connectors::BreakerState::Open && !s.accepting);
    let sources: serde_json::Map<String, serde_json::Value> = stats
        .into_iter()
        .map(|(source, stats)| (source.as_str().to_owned(), serde_json::json!(stats)))
        .collect();
    let policy = state.pipeline.policy.snapshot().hash().to_owned();
    let store = state.pipeline.store.ping().await;
    if let Err(error) = &store {
        tracing::error!(error = %error, "readiness: store unreachable");
    }
    if all_down {
        tracing::warn!("readiness: every source is down");
    }
    let stopping = state.closing.load(std::sync::atomic::Ordering::Relaxed);
    let ready = store.is_ok() && !all_down && !stopping;
    let body = serde_json::json!({
        "ready": ready,
        "stopping": stopping,
        "store": if store.is_ok() { "ok" } else { "unreachable" },
        "policy": policy,
        "sources_down": all_down,
        "sources": sources,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
