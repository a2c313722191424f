//! Prometheus metrics: the process-wide recorder behind the `metrics` facade (the engine records
//! through it too), a layer timing every HTTP request by its route template and writing its
//! access-log line, and `GET /metrics`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::Instrument as _;

/// HTTP requests served, by route template, method and status.
pub const HTTP_REQUESTS: &str = "latchkey_http_requests_total";
/// Time to the response head, by route template.
pub const HTTP_SECONDS: &str = "latchkey_http_request_seconds";

/// The tracing target of the access log: one line per request at info. Turn it off with the
/// filter directive `latchkey::access=off` (`latchkey serve --access-log false`).
pub const ACCESS_LOG: &str = "latchkey::access";

/// Histogram buckets in seconds: from a cache hit to a slow token endpoint.
const BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

/// The recorder's handle, installed on first use. When the embedding program installed its own
/// recorder first, Latchkey's metrics go there and `/metrics` shows none.
#[allow(clippy::expect_used, reason = "BUCKETS is a non-empty constant")]
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
        }
        let upkeep = handle.clone();
        let spawned =
            std::thread::Builder::new().name("latchkey-metrics".into()).spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
        }
        handle
    })
}

/// Counts and times a request under its route template (never the raw path, which holds ids and
/// connect-session tokens), and logs it on [`ACCESS_LOG`]: method, route template, status,
/// latency and the connection id when the route names one. No header, query or body is logged.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let (mut parts, body) = request.into_parts();
    let connection = path_param(&route, &mut parts, CONNECTION_ROUTES).await;
    let integration = path_param(&route, &mut parts, INTEGRATION_ROUTES).await;
    let request = Request::from_parts(parts, body);
    let method = request.method().as_str().to_string();
    // Every line logged while the request is handled names what it is about: the connection
    // or integration in its path here, the connect session and its integration once a page
    // has found them ([`name_session`]).
    let span = tracing::info_span!(
        "request",
        route = %route,
        connection = connection.as_deref(),
        integration = integration.as_deref(),
        session = tracing::field::Empty,
        connector = tracing::field::Empty,
    );
    let started = Instant::now();
    let response = next.run(request).instrument(span).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    tracing::info!(
        target: ACCESS_LOG,
        method = %method,
        route = %route,
        status,
        latency_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3,
        connection = connection.as_deref(),
        "request"
    );
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status.to_string())
        .increment(1);
    metrics::histogram!(HTTP_SECONDS, "route" => route).record(elapsed.as_secs_f64());
    response
}

/// The routes that name a connection: (route prefix, path parameter).
const CONNECTION_ROUTES: &[(&str, &str)] =
    &[("/v1/proxy/{connection}", "connection"), ("/v1/connections/{id}", "id")];

/// The routes that name an integration.
const INTEGRATION_ROUTES: &[(&str, &str)] = &[("/v1/integrations/{id}", "id")];

/// The id a route names by one of `routes`' parameters. Other parameters (connect-session
/// tokens among them) are never read.
async fn path_param(
    route: &str,
    parts: &mut http::request::Parts,
    routes: &[(&str, &str)],
) -> Option<String> {
    let (_, name) = routes.iter().find(|(prefix, _)| route.starts_with(prefix))?;
    let params = RawPathParams::from_request_parts(parts, &()).await.ok()?;
    params.iter().find(|(key, _)| key == name).map(|(_, value)| value.to_owned())
}

/// Names the connect session a page works on (and its integration and environment) in the
/// request's log lines.
pub fn name_session(session: &latchkey_store::ConnectSession) {
    let span = tracing::Span::current();
    span.record("session", session.id.as_str());
    span.record("integration", session.integration.as_str());
}

/// Names the connector a page's connection uses in the request's log lines.
pub fn name_connector(connector: &str) {
    tracing::Span::current().record("connector", connector);
}

/// `GET /metrics`: the Prometheus text format.
pub async fn render() -> Response {
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle().render())
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::{Body, to_bytes};
    use latchkey_core::Secret;
    use latchkey_engine::{Catalog, Engine};
    use latchkey_store::{Keyring, MasterKey, SqliteStore};
    use tower::ServiceExt;

    use crate::{AppState, app};

    async fn state() -> AppState {
        let store =
            SqliteStore::open_in_memory(Keyring::single(MasterKey::generate())).await.unwrap();
        let net = latchkey_net::Client::new(latchkey_net::ClientConfig::default()).unwrap();
        let engine =
            Engine::builder(Arc::new(store), Catalog::default(), net).build().await.unwrap();
        AppState::new(engine, Secret::new("metrics-key"), "http://127.0.0.1:1".parse().unwrap())
    }

    async fn get(state: &AppState, path: &str, key: Option<&str>) -> (u16, String) {
        let mut request = http::Request::get(path);
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let response = app(state.clone()).oneshot(request.body(Body::empty()).unwrap()).await;
        let response = response.unwrap();
        let status = response.status().as_u16();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_template_behind_the_api_key() {
        let state = state().await;
        let (status, _) =
            get(&state, "/v1/proxy/user-42-secret-id/some/path", Some("metrics-key")).await;
        assert_eq!(status, 404, "no such connection");
        assert_eq!(get(&state, "/metrics", None).await.0, 401, "metrics need the API key");
        let (status, text) = get(&state, "/metrics", Some("metrics-key")).await;
        assert_eq!(status, 200);
        let line = text
            .lines()
            .find(|l| l.starts_with(super::HTTP_REQUESTS) && l.contains("status=\"404\""))
            .unwrap_or_else(|| panic!("no proxy request counted: {text}"));
        assert!(line.contains(r#"route="/v1/proxy/{connection}/{*path}""#), "{line}");
        assert!(!text.contains("user-42-secret-id"), "ids never become labels: {text}");
        assert!(text.contains(&format!("{}_bucket", super::HTTP_SECONDS)), "{text}");
    }
}
