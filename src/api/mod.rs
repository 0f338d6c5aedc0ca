//! The lookup API: ask churnguard about one user, from any member of the group.
//!
//! `GET /v1/users/{user_id}` answers with the user's [`UserView`] scored now;
//! `GET /v1/users/{user_id}/export` with everything stored about them ([`UserExport`], a
//! right-of-access request). It runs on a port of its own (`/metrics` stays on the metrics port,
//! so scraping never needs the API's credentials) and only when configured.
//!
//! Every request needs a bearer token ([`auth`]); user ids are checked before any lookup
//! ([`user_id`]); requests are bounded in number and time so the API cannot starve the
//! pipeline. The state lives in the member that owns the user's partition: an instance
//! answers from its own state or asks the other members (`resolve`), and says 503 with
//! `Retry-After` while the answer could be wrong (a rebalance, a restore, a member
//! unreachable) rather than a wrong or empty one. The API knows nothing of Kafka: the state
//! and the members are reached through [`LocalLookup`] and [`Peers`].

pub mod auth;
mod resolve;
pub mod user_id;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::Semaphore;

use crate::engine::{UserExport, UserView};
pub use crate::metrics::ApiMetrics;
pub use auth::{TokenId, Tokens, TokensError};
use resolve::Want;

/// What this instance knows about a user.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer<T> {
    Found(T),
    /// Not in any partition this instance owns; `partitions` are those partitions, every one
    /// restored (so the user is in none of them).
    NotHere {
        partitions: Vec<i32>,
    },
    /// This instance cannot tell yet (starting, restoring a partition, between pipelines).
    Unavailable {
        reason: String,
    },
}

/// The state of this instance, as the API reads it.
pub trait LocalLookup: Send + Sync + 'static {
    fn describe(&self, user_id: &str) -> Answer<UserView>;
    fn export(&self, user_id: &str) -> Answer<UserExport>;
    /// How many partitions the input topic has, once known: a user is unknown only when the
    /// members' answers cover every one.
    fn partition_count(&self) -> Option<usize>;
}

/// The other members of the group that may own partitions.
pub trait Peers: Send + Sync + 'static {
    /// Base URLs (`http://host:port`) of the other members that advertise partitions.
    fn peers(&self) -> Vec<String>;
}

/// How the API is served.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub addr: SocketAddr,
    /// The URL other members reach this one at (included in answers as `served_by`).
    pub advertised_url: String,
    /// Requests served at once; more are refused with 503 rather than queued.
    pub max_concurrent: usize,
    /// Longest a request may take, forwarding included.
    pub request_timeout: Duration,
    /// Longest one forwarded request to another member may take.
    pub forward_timeout: Duration,
    /// Longest accepted user id, in bytes (the engine's bound).
    pub max_id_bytes: usize,
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot serve the lookup API on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the client that forwards lookups to other members: {0}")]
    Client(String),
}

pub(crate) struct App {
    config: ApiConfig,
    tokens: Arc<Tokens>,
    local: Arc<dyn LocalLookup>,
    peers: Option<Arc<dyn Peers>>,
    metrics: ApiMetrics,
    slots: Arc<Semaphore>,
    client: reqwest::Client,
}

/// A running API server, on a thread and runtime of its own: lookups wake that thread, never
/// the pipeline's, so a lookup load does not reschedule the pipeline's work.
pub struct ApiServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ApiServer {
    /// Stops accepting, lets requests in flight finish, and waits for the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The header a member sets when it asks another: answer from your own state only.
pub const FORWARDED: &str = "x-churnguard-forwarded";

/// Binds `config.addr` and serves on a thread of its own until [`ApiServer::stop`] (or drop).
pub fn serve(
    config: ApiConfig,
    tokens: Arc<Tokens>,
    local: Arc<dyn LocalLookup>,
    peers: Option<Arc<dyn Peers>>,
    metrics: ApiMetrics,
) -> Result<ApiServer, ApiError> {
    let client = reqwest::Client::builder()
        .timeout(config.forward_timeout)
        .connect_timeout(config.forward_timeout)
        .pool_max_idle_per_host(8)
        .build()
        .map_err(|e| ApiError::Client(e.to_string()))?;
    let listener = std::net::TcpListener::bind(config.addr).map_err(|source| ApiError::Bind {
        addr: config.addr,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| ApiError::Bind {
        addr: config.addr,
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ApiError::Bind { addr, source })?;
    let app = Arc::new(App {
        slots: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
        config,
        tokens,
        local,
        peers,
        metrics,
        client,
    });
    let router = Router::new()
        .route("/v1/users/{user_id}", get(user))
        .route("/v1/users/{user_id}/export", get(export))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&app), guard))
        .with_state(Arc::clone(&app));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ApiError::Bind { addr, source })?;
    let thread = std::thread::Builder::new()
        .name("lookup-api".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "lookup API cannot listen");
                        return;
                    }
                };
                let serve = axum::serve(listener, router).with_graceful_shutdown(async {
                    let _ = stopped.await;
                });
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "lookup API stopped");
                }
            });
        })
        .map_err(|source| ApiError::Bind { addr, source })?;
    tracing::info!(%addr, "serving the lookup API on /v1/users");
    Ok(ApiServer {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot serialize: {e}"),
        )
            .into_response(),
    }
}

/// A JSON error body.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json(status, &serde_json::json!({ "error": message.into() }))
}

/// 503 with `Retry-After`: the answer could be wrong now, and will not be for long.
pub(crate) fn unavailable(message: impl Into<String>) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// The metric label of a path (bounded: never the user id).
fn route_of(path: &str) -> &'static str {
    match path.strip_prefix("/v1/users/") {
        Some(rest) if rest.ends_with("/export") => "export",
        Some(_) => "user",
        None => "other",
    }
}

/// Around every request: authentication, bounds (concurrency, time, no body) and metrics.
async fn guard(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_of(req.uri().path());
    let response = match app.tokens.check(req.headers()) {
        None => {
            let mut r = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
        Some(_) if has_body(req.headers()) => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the lookup API takes no request body",
        ),
        Some(token) => match Arc::clone(&app.slots).try_acquire_owned() {
            Err(_) => unavailable(format!(
                "busy: {} requests in flight (--api-max-concurrent)",
                app.config.max_concurrent
            )),
            Ok(_permit) => {
                req.extensions_mut().insert(token);
                match tokio::time::timeout(app.config.request_timeout, next.run(req)).await {
                    Ok(r) => r,
                    Err(_) => unavailable(format!(
                        "no answer within {} ms (--api-timeout-ms)",
                        app.config.request_timeout.as_millis()
                    )),
                }
            }
        },
    };
    app.metrics
        .observe(route, response.status().as_u16(), started.elapsed());
    response
}

fn has_body(headers: &HeaderMap) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != "0");
    length || headers.contains_key(header::TRANSFER_ENCODING)
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such route: GET /v1/users/{user_id} or /v1/users/{user_id}/export",
    )
}

async fn user(
    State(app): State<Arc<App>>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = user_id::check(&user_id, app.config.max_id_bytes) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    resolve::resolve(&app, Want::View, &user_id, &headers).await
}

async fn export(
    State(app): State<Arc<App>>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    axum::Extension(token): axum::Extension<TokenId>,
) -> Response {
    if let Err(e) = user_id::check(&user_id, app.config.max_id_bytes) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    let response = resolve::resolve(&app, Want::Export, &user_id, &headers).await;
    let status = response.status().as_u16();
    // Every access to a user's full data is on record, with who asked (the token's id, never
    // the token) and what came of it.
    tracing::info!(
        token_id = %token.0, user_id = %user_id, status,
        forwarded = headers.contains_key(FORWARDED),
        "user data export requested"
    );
    app.metrics.export(&token.0, status);
    response
}
