//! Latchkey's HTTP server: the REST API under `/v1`, the proxy, health, metrics, the OpenAPI
//! document and the operator console under `/console`.
//! [`app`] builds the router without a socket, so tests call it directly.

// Outside tests a failure is an error value; an `expect` that cannot fail says why in an `allow`.
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod access;
pub mod audit;
mod body_limit;
mod console;
mod error;
mod extract;
pub mod mcp;
mod openapi;
mod pages;
mod proxy;
mod routes;
pub mod telemetry;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, OriginalUri, Request};
use axum::middleware::{self, Next};

use axum::routing::{any, delete, get, post, put};
use latchkey_core::Secret;
use latchkey_engine::Engine;

pub use access::Principal;
pub use body_limit::BodyLimits;
pub use error::{ApiError, Class, ErrorBody, Refusal, status_of};
pub use routes::connections::CreateConnection;

/// What every handler shares. Cloned for every middleware and handler a request passes, so it
/// is one pointer: cloning and dropping its fields one by one (a URL, cache handles) showed as
/// 2 % of the proxy's CPU.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

/// The fields of [`AppState`], reached through it.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The engine.
    pub engine: Arc<Engine>,
    /// The key callers present as `Authorization: Bearer <key>`.
    pub api_key: Arc<Secret>,
    /// The base URL browsers and providers reach this server at (`--public-url`).
    pub public_url: Arc<url::Url>,
    /// Failed authentications per address, for the back-off.
    pub auth_throttle: Arc<access::AuthThrottle>,
    /// The console's OpenID Connect sign-in, when configured.
    pub console_oidc: Option<Arc<latchkey_engine::OperatorOidc>>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// The state of a server over `engine`, whose bootstrap administrator key is `api_key`.
    pub fn new(engine: Arc<Engine>, api_key: Secret, public_url: url::Url) -> Self {
        Self(Arc::new(Shared {
            engine,
            api_key: Arc::new(api_key),
            public_url: Arc::new(public_url),
            auth_throttle: Arc::default(),
            console_oidc: None,
        }))
    }

    /// The same state, with console operators also signing in through OpenID Connect.
    pub fn with_console_oidc(mut self, oidc: latchkey_engine::OperatorOidc) -> Self {
        Arc::make_mut(&mut self.0).console_oidc = Some(Arc::new(oidc));
        self
    }

    /// The one OAuth redirect URI: `{public_url}/oauth/callback`.
    pub fn callback_url(&self) -> String {
        format!("{}/oauth/callback", self.public_url.as_str().trim_end_matches('/'))
    }
}

/// The whole router, with the default [`BodyLimits`].
pub fn app(state: AppState) -> Router {
    app_with_limits(state, BodyLimits::default())
}

/// The whole router. Every route group has its own request-body cap (see [`BodyLimits`]);
/// axum's implicit default is off so that these are the only ones.
pub fn app_with_limits(state: AppState, limits: BodyLimits) -> Router {
    telemetry::handle();
    let capped = |limit: usize| {
        middleware::from_fn(move |request: Request, next: Next| {
            body_limit::enforce(limit, request, next)
        })
    };
    let api = Router::new()
        .route("/connectors", get(routes::connectors::list))
        .route("/connectors/{id}", get(routes::connectors::get).delete(routes::connectors::delete))
        .route("/integrations", get(routes::integrations::list).post(routes::integrations::create))
        .route(
            "/integrations/{id}",
            get(routes::integrations::get).delete(routes::integrations::delete),
        )
        .route("/mcp-integrations", post(routes::integrations::create_mcp))
        .route("/connections", get(routes::connections::list).post(routes::connections::create))
        .route(
            "/connections/{id}",
            get(routes::connections::get)
                .patch(routes::connections::update)
                .delete(routes::connections::delete),
        )
        .route("/connections/{id}/test", post(routes::connections::test))
        .route("/connections/{id}/check", post(routes::connections::check))
        .route("/connections/{id}/token", get(routes::connections::token))
        .route("/connections/{id}/refresh", post(routes::connections::refresh))
        .route("/connect-sessions", post(routes::connect_sessions::create))
        .route("/connect-sessions/{id}", get(routes::connect_sessions::get))
        .route("/environments", get(routes::environments::list).post(routes::environments::create))
        .route(
            "/environments/{id}",
            get(routes::environments::get).patch(routes::environments::update),
        )
        .route(
            "/environments/{id}/branding",
            get(routes::branding::get_environment).put(routes::branding::put_environment),
        )
        .route(
            "/integrations/{id}/branding",
            get(routes::branding::get_integration).put(routes::branding::put_integration),
        )
        .route(
            "/environments/{id}/webhook-secret/rotate",
            post(routes::environments::rotate_webhook_secret),
        )
        .route("/operations", get(routes::operations::list))
        .route("/webhook-deliveries", get(routes::webhook_deliveries::list))
        .route("/webhook-deliveries/{id}", get(routes::webhook_deliveries::get))
        .route("/webhook-deliveries/{id}/retry", post(routes::webhook_deliveries::retry))
        .route("/api-keys", get(routes::api_keys::list).post(routes::api_keys::create))
        .route("/api-keys/{id}", delete(routes::api_keys::revoke))
        .route("/agent-tokens", get(routes::agent_tokens::list).post(routes::agent_tokens::create))
        .route("/agent-tokens/{id}", delete(routes::agent_tokens::revoke))
        .route("/audit", get(routes::audit::list))
        .route_layer(middleware::from_fn(routes::refuse_unknown_query))
        .route_layer(middleware::from_fn(access::require_scope))
        .route_layer(capped(limits.api));
    let upload = Router::new()
        .route("/connectors/{id}", put(routes::connectors::put))
        .route_layer(middleware::from_fn(routes::refuse_unknown_query))
        .route_layer(middleware::from_fn(access::require_scope))
        .route_layer(capped(limits.connector_upload));
    let proxy = Router::new()
        .route("/proxy/{connection}", any(proxy::forward_root))
        .route("/proxy/{connection}/{*path}", any(proxy::forward))
        .route_layer(middleware::from_fn(access::require_scope))
        .route_layer(capped(limits.proxy));
    // The key is checked before any body is read, and before an unknown route is told apart:
    // without it, every path under `/v1` is a 401. The audit log records each write and
    // credential read right inside it, with its principal and final status; a scope check
    // belongs inside the audit layer (added before it), so its refusals are recorded.
    let v1 = api
        .merge(upload)
        .merge(proxy)
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), audit::record))
        .layer(middleware::from_fn_with_state(state.clone(), access::authenticate));
    let metrics = Router::new()
        .route("/metrics", get(telemetry::render))
        .route_layer(middleware::from_fn(access::require_scope))
        // `nest` does not reach `/v1/` itself: it too is an unknown route under `/v1`.
        .route("/v1/", any(unknown_route))
        .layer(middleware::from_fn_with_state(state.clone(), access::authenticate));
    let pages = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/openapi.json", get(openapi::document))
        .route("/latchkey.js", get(pages::sdk))
        .route("/latchkey.d.ts", get(pages::sdk_types))
        .route("/connect/{token}", get(pages::open).post(pages::submit))
        .route("/connect/{token}/session", get(pages::describe))
        .route("/connect/{token}/status", get(pages::status))
        .route("/oauth/callback", get(pages::callback))
        .route_layer(capped(limits.api));
    let console = console::routes().route_layer(capped(limits.api));
    Router::new()
        .merge(metrics)
        .merge(pages)
        .merge(console)
        .merge(mcp::router(&state, limits.proxy))
        .nest("/v1", v1)
        .route_layer(middleware::from_fn(telemetry::track))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// `/v1/…` that names no route: 404 `not_found`, as JSON.
async fn unknown_route(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

/// A route that exists, asked with another method: 405 `method_not_allowed`, as JSON.
async fn method_not_allowed(method: http::Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::refused(Refusal::MethodNotAllowed, format!("{} does not answer {method}", uri.path()))
}

/// Serves `app(state)` on `listener` until Ctrl-C or SIGTERM.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    serve_with_limits(listener, state, BodyLimits::default()).await
}

/// Serves `app_with_limits(state, limits)` on `listener` until Ctrl-C or SIGTERM.
pub async fn serve_with_limits(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: BodyLimits,
) -> std::io::Result<()> {
    let app = app_with_limits(state, limits);
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
