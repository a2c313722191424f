//! Redirect following, when switched on: every hop re-checked against the policy, credentials
//! stripped on cross-origin hops, a hop limit, and RFC 9110 method rewriting.

mod support;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::routing::{any, get as route};
use latchkey_net::{ClientConfig, MAX_REDIRECTS, NetError};
use support::{Tripwire, client, get, pattern, policy, serve};

fn following() -> latchkey_net::Client {
    client(ClientConfig { follow_redirects: true, ..ClientConfig::default() })
}

/// Echoes the method and the received headers as JSON.
fn echo() -> Router {
    Router::new().route(
        "/echo",
        any(|method: Method, headers: HeaderMap| async move {
            let headers: serde_json::Map<_, _> =
                headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap().into())).collect();
            axum::Json(serde_json::json!({"method": method.as_str(), "headers": headers}))
        }),
    )
}

/// Redirects `/go` to `target` with `status`, and serves `/echo` itself.
fn redirector(target: String, status: StatusCode) -> Router {
    echo().route("/go", any(move || async move { (status, [(header::LOCATION, target)]) }))
}

async fn echoed(
    addr: SocketAddr,
    req: http::Request<bytes::Bytes>,
    allowed: &[String],
) -> serde_json::Value {
    let res = following().send(req, &policy(allowed)).await.unwrap();
    assert_eq!(res.status, StatusCode::OK, "{addr}");
    res.json().await.unwrap()
}

fn credentialed(url: &str) -> http::Request<bytes::Bytes> {
    let mut key = http::HeaderValue::from_static("SECRET-KEY");
    key.set_sensitive(true);
    let mut req = get(
        url,
        &[
            ("authorization", "Bearer SECRET"),
            ("cookie", "session=SECRET"),
            ("proxy-authorization", "Basic SECRET"),
            ("x-trace", "kept"),
        ],
    );
    req.headers_mut().insert("x-api-key", key);
    req
}

#[tokio::test]
async fn cross_host_redirect_strips_credentials() {
    let target = serve(echo()).await;
    let target_url = format!("http://localhost:{}/echo", target.port());
    let origin = serve(redirector(target_url, StatusCode::FOUND)).await;
    let allowed = [pattern(origin), format!("localhost:{}", target.port())];
    let body = echoed(origin, credentialed(&format!("http://{origin}/go")), &allowed).await;
    let headers = &body["headers"];
    for name in ["authorization", "cookie", "proxy-authorization", "x-api-key"] {
        assert!(headers.get(name).is_none(), "{name} leaked: {body}");
    }
    assert_eq!(headers["x-trace"], "kept");
    assert_eq!(headers["host"], format!("localhost:{}", target.port()));
}

#[tokio::test]
async fn same_origin_redirect_keeps_credentials() {
    let addr = serve(redirector("/echo".into(), StatusCode::TEMPORARY_REDIRECT)).await;
    let body = echoed(addr, credentialed(&format!("http://{addr}/go")), &[pattern(addr)]).await;
    assert_eq!(body["headers"]["authorization"], "Bearer SECRET");
    assert_eq!(body["headers"]["x-api-key"], "SECRET-KEY");
}

#[tokio::test]
async fn redirect_to_a_host_outside_the_policy_is_refused() {
    let wire = Tripwire::new().await;
    let origin = serve(redirector(format!("http://{}/steal", wire.addr), StatusCode::FOUND)).await;
    let err = following()
        .send(credentialed(&format!("http://{origin}/go")), &policy(&[pattern(origin)]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NetError::HostNotAllowed { host } if *host == pattern(wire.addr)),
        "{err:?}"
    );
    wire.assert_untouched().await;
}

#[tokio::test]
async fn redirect_to_another_scheme_is_refused() {
    let origin = serve(redirector("ftp://127.0.0.1/x".into(), StatusCode::FOUND)).await;
    let err = following()
        .send(get(&format!("http://{origin}/go"), &[]), &policy(&["127.0.0.1".into()]))
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::InvalidUrl(_)), "{err:?}");
}

#[tokio::test]
async fn at_most_five_hops_are_followed() {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().route(
        "/loop/{n}",
        route(move |Path(n): Path<u32>| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { (StatusCode::FOUND, [(header::LOCATION, format!("/loop/{}", n + 1))]) }
        }),
    );
    let addr = serve(app).await;
    let res = following()
        .send(get(&format!("http://{addr}/loop/0"), &[]), &policy(&[pattern(addr)]))
        .await
        .unwrap();
    assert_eq!(res.status, StatusCode::FOUND);
    assert_eq!(res.url().path(), format!("/loop/{MAX_REDIRECTS}"));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), MAX_REDIRECTS + 1);
}

#[tokio::test]
async fn see_other_after_post_becomes_get_without_body() {
    let addr = serve(redirector("/echo".into(), StatusCode::SEE_OTHER)).await;
    let req = http::Request::post(format!("http://{addr}/go"))
        .header("content-type", "application/json")
        .body(bytes::Bytes::from_static(b"{\"a\":1}"))
        .unwrap();
    let body = echoed(addr, req, &[pattern(addr)]).await;
    assert_eq!(body["method"], "GET");
    assert!(body["headers"].get("content-type").is_none(), "{body}");
}

#[tokio::test]
async fn temporary_redirect_keeps_method() {
    let addr = serve(redirector("/echo".into(), StatusCode::TEMPORARY_REDIRECT)).await;
    let req = http::Request::put(format!("http://{addr}/go"))
        .body(bytes::Bytes::from_static(b"x"))
        .unwrap();
    let body = echoed(addr, req, &[pattern(addr)]).await;
    assert_eq!(body["method"], "PUT");
    assert_eq!(body["headers"]["content-length"], "1");
}
