//! Whole-flow tests of `Client::send`: policy refusal, redirects left alone, size caps, timeouts,
//! address blocking and error messages, against real servers on loopback.

mod support;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get as route;
use bytes::Bytes;
use futures_util::StreamExt;
use latchkey_net::{Client, ClientConfig, NetError};
use support::{Tripwire, client, get, pattern, policy, serve};

fn app() -> Router {
    Router::new()
        .route("/ok", route(|| async { "hello" }))
        .route("/json", route(|| async { axum::Json(serde_json::json!({"ok": true})) }))
        .route("/bad-json", route(|| async { "{\"token\": SECRET-BODY" }))
        .route("/redirect", route(|| async { (StatusCode::FOUND, [(header::LOCATION, "/ok")]) }))
        .route("/sized/{n}", route(|n: axum::extract::Path<usize>| async move { vec![b'x'; n.0] }))
        .route("/chunked/{n}", route(|n: axum::extract::Path<usize>| async move { chunked(n.0) }))
        .route("/stall", route(|| async { stalled_body() }))
        .route("/trickle", route(|| async { trickled_body() }))
        .route(
            "/ua",
            route(|h: HeaderMap| async move {
                h.get(header::USER_AGENT).unwrap().to_str().unwrap().to_owned()
            }),
        )
}

/// `n` bytes in 256-byte chunks with no Content-Length.
fn chunked(n: usize) -> Body {
    let chunks = (0..n)
        .step_by(256)
        .map(move |i| Ok::<_, std::io::Error>(Bytes::from(vec![b'y'; 256.min(n - i)])));
    Body::from_stream(futures_util::stream::iter(chunks))
}

/// One chunk, then nothing, forever.
fn stalled_body() -> Body {
    let first = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(Bytes::from_static(b"partial"))
    });
    Body::from_stream(first.chain(futures_util::stream::pending()))
}

/// Ten chunks, 100 ms apart: a body that takes about a second but never stalls.
fn trickled_body() -> Body {
    let chunks = futures_util::stream::iter(0..10).then(|i| async move {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<_, std::io::Error>(Bytes::from_static(b"0123456789"))
    });
    Body::from_stream(chunks)
}

fn small(limit: u64) -> Client {
    client(ClientConfig {
        max_response_bytes: limit,
        max_streamed_response_bytes: Some(limit),
        ..ClientConfig::default()
    })
}

#[tokio::test]
async fn sends_within_policy_with_user_agent() {
    let addr = serve(app()).await;
    let client = client(ClientConfig::default());
    let allowed = policy(&[pattern(addr)]);
    let res = client.send(get(&format!("http://{addr}/ok"), &[]), &allowed).await.unwrap();
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap(), "hello");
    let ua = client.send(get(&format!("http://{addr}/ua"), &[]), &allowed).await.unwrap();
    assert_eq!(ua.bytes().await.unwrap(), concat!("latchkey/", env!("CARGO_PKG_VERSION")));
    let json: serde_json::Value = client
        .send(get(&format!("http://{addr}/json"), &[]), &allowed)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json, serde_json::json!({"ok": true}));
}

#[tokio::test]
async fn host_outside_policy_is_refused_without_connecting() {
    let wire = Tripwire::new().await;
    let client = client(ClientConfig::default());
    let url = format!("http://{}/v1/users?api_key=SECRET", wire.addr);
    let err = client
        .send(
            get(&url, &[("authorization", "Bearer SECRET")]),
            &policy(&["api.example.com".into()]),
        )
        .await
        .unwrap_err();
    let NetError::HostNotAllowed { host } = &err else { panic!("unexpected {err:?}") };
    assert_eq!(host, &pattern(wire.addr));
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("SECRET"), "{text}");
        assert!(!text.contains("/v1/users"), "{text}");
    }
    wire.assert_untouched().await;
}

#[tokio::test]
async fn same_host_on_another_port_is_refused_when_pattern_names_a_port() {
    let wire = Tripwire::new().await;
    let client = client(ClientConfig::default());
    let only = policy(&["127.0.0.1:1".into()]);
    let err = client.send(get(&format!("http://{}/", wire.addr), &[]), &only).await.unwrap_err();
    assert!(matches!(err, NetError::HostNotAllowed { .. }), "{err:?}");
    wire.assert_untouched().await;
}

#[tokio::test]
async fn non_http_schemes_are_refused() {
    let client = client(ClientConfig::default());
    let any_local = policy(&["127.0.0.1".into()]);
    for url in ["ftp://127.0.0.1/x", "file://127.0.0.1/etc/passwd", "ws://127.0.0.1/"] {
        let err = client.send(get(url, &[]), &any_local).await.unwrap_err();
        assert!(matches!(err, NetError::InvalidUrl(_)), "{url}: {err:?}");
    }
    let err = client.send(get("/relative", &[]), &any_local).await.unwrap_err();
    assert!(matches!(err, NetError::InvalidUrl(_)), "{err:?}");
}

#[tokio::test]
async fn redirects_are_not_followed_by_default() {
    let addr = serve(app()).await;
    let res = client(ClientConfig::default())
        .send(get(&format!("http://{addr}/redirect"), &[]), &policy(&[pattern(addr)]))
        .await
        .unwrap();
    assert_eq!(res.status, StatusCode::FOUND);
    assert_eq!(res.headers[header::LOCATION], "/ok");
    assert_eq!(res.url().path(), "/redirect");
}

#[tokio::test]
async fn body_over_the_cap_fails_for_bytes_and_stream() {
    let addr = serve(app()).await;
    let allowed = policy(&[pattern(addr)]);
    let client = small(1024);
    for path in ["sized/1025", "chunked/1025", "sized/5000", "chunked/5000"] {
        let url = format!("http://{addr}/{path}");
        let res = client.send(get(&url, &[]), &allowed).await.unwrap();
        let err = res.bytes().await.unwrap_err();
        assert!(matches!(err, NetError::ResponseTooLarge { limit: 1024 }), "{path}: {err:?}");

        let res = client.send(get(&url, &[]), &allowed).await.unwrap();
        let items: Vec<_> = res.into_stream().collect().await;
        let streamed: usize = items.iter().filter_map(|i| i.as_ref().ok()).map(Bytes::len).sum();
        assert!(streamed <= 1024, "{path}: streamed {streamed} bytes past the cap");
        let last = items.last().unwrap();
        assert!(
            matches!(last, Err(NetError::ResponseTooLarge { limit: 1024 })),
            "{path}: {last:?}"
        );
    }
}

#[tokio::test]
async fn body_at_the_cap_is_read_whole() {
    let addr = serve(app()).await;
    let allowed = policy(&[pattern(addr)]);
    let client = small(1024);
    for path in ["sized/1024", "chunked/1024"] {
        let url = format!("http://{addr}/{path}");
        let res = client.send(get(&url, &[]), &allowed).await.unwrap();
        assert_eq!(res.bytes().await.unwrap().len(), 1024, "{path}");
        let res = client.send(get(&url, &[]), &allowed).await.unwrap();
        let chunks: Vec<Bytes> = res.into_stream().map(Result::unwrap).collect().await;
        assert_eq!(chunks.iter().map(Bytes::len).sum::<usize>(), 1024, "{path}");
    }
}

#[tokio::test]
async fn invalid_json_reports_position_not_content() {
    let addr = serve(app()).await;
    let res = client(ClientConfig::default())
        .send(get(&format!("http://{addr}/bad-json"), &[]), &policy(&[pattern(addr)]))
        .await
        .unwrap();
    let err = res.json::<serde_json::Value>().await.unwrap_err();
    assert!(matches!(err, NetError::Transport(_)), "{err:?}");
    assert!(!err.to_string().contains("SECRET"), "{err}");
}

#[tokio::test]
async fn connect_timeout_is_a_timeout() {
    // A listener with a full accept queue drops further SYNs, so connecting hangs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        match tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr))
            .await
        {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    let client = client(ClientConfig {
        connect_timeout: Duration::from_millis(300),
        total_timeout: Duration::from_secs(30),
        ..ClientConfig::default()
    });
    let started = std::time::Instant::now();
    let err = client
        .send(get(&format!("http://{addr}/"), &[]), &policy(&[pattern(addr)]))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "connect timeout not applied");
    drop((listener, fillers));
}

#[tokio::test]
async fn total_timeout_is_a_timeout_while_waiting_and_while_reading() {
    let wire = Tripwire::new().await;
    let client = client(ClientConfig {
        total_timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    });
    let err = client
        .send(
            get(&format!("http://{}/?api_key=SECRET", wire.addr), &[]),
            &policy(&[pattern(wire.addr)]),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(!err.to_string().contains("SECRET"));

    let addr = serve(app()).await;
    let allowed = policy(&[pattern(addr)]);
    let res = client.send(get(&format!("http://{addr}/stall"), &[]), &allowed).await.unwrap();
    let err = res.bytes().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let res = client.send(get(&format!("http://{addr}/stall"), &[]), &allowed).await.unwrap();
    let items: Vec<_> = res.into_stream().collect().await;
    assert!(matches!(items.last(), Some(Err(NetError::Timeout))), "{items:?}");
}

/// A streamed body may outlast the total timeout while data keeps coming (a long download
/// through the proxy); read whole, the same body is cut at the total timeout.
#[tokio::test]
async fn a_streamed_body_may_outlast_the_total_timeout_while_it_makes_progress() {
    let client = client(ClientConfig {
        total_timeout: Duration::from_millis(400),
        ..ClientConfig::default()
    });
    let addr = serve(app()).await;
    let allowed = policy(&[pattern(addr)]);
    let res = client.send(get(&format!("http://{addr}/trickle"), &[]), &allowed).await.unwrap();
    let mut body = Vec::new();
    let mut stream = std::pin::pin!(res.into_stream());
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(body.len(), 100);
    let res = client.send(get(&format!("http://{addr}/trickle"), &[]), &allowed).await.unwrap();
    let err = res.bytes().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
}

#[tokio::test]
async fn connection_errors_do_not_leak_the_url() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let err = client(ClientConfig::default())
        .send(get(&format!("http://{addr}/p?api_key=SECRET"), &[]), &policy(&[pattern(addr)]))
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Connect(_)), "{err:?}");
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("SECRET") && !text.contains("/p"), "{text}");
    }
    // A summary for people, not hyper's chain of causes.
    assert_eq!(err.to_string(), "could not reach 127.0.0.1: the connection was refused");
}

#[tokio::test]
async fn a_failed_lookup_reads_as_a_dns_failure_naming_the_host() {
    // `.invalid` never resolves (RFC 6761).
    let host = "no-such-host.invalid";
    for block in [false, true] {
        let config = ClientConfig { block_private_addresses: block, ..ClientConfig::default() };
        let err = client(config)
            .send(get(&format!("http://{host}/p?api_key=SECRET"), &[]), &policy(&[host.into()]))
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::Connect(_)), "{err:?}");
        assert_eq!(err.to_string(), format!("could not reach {host}: DNS lookup failed"));
    }
}

#[tokio::test]
async fn private_addresses_are_refused_when_blocking() {
    let wire = Tripwire::new().await;
    let client = client(ClientConfig { block_private_addresses: true, ..ClientConfig::default() });
    let port = wire.addr.port();
    let allowed = policy(&["127.0.0.1".into(), "localhost".into(), "[::ffff:7f00:1]".into()]);
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://0x7f.0.0.1:{port}/"),
    ] {
        let err = client.send(get(&url, &[]), &allowed).await.unwrap_err();
        assert!(matches!(err, NetError::BlockedAddress), "{url}: {err:?}");
    }
    wire.assert_untouched().await;
}

#[tokio::test]
async fn streams_past_the_whole_body_cap_when_no_streaming_cap_is_set() {
    let addr = serve(app()).await;
    let allowed = policy(&[pattern(addr)]);
    let client = client(ClientConfig { max_response_bytes: 1024, ..ClientConfig::default() });
    for path in ["sized/5000", "chunked/5000"] {
        let url = format!("http://{addr}/{path}");
        let res = client.send(get(&url, &[]), &allowed).await.unwrap();
        let chunks: Vec<Bytes> = res.try_into_stream().unwrap().map(Result::unwrap).collect().await;
        assert_eq!(chunks.iter().map(Bytes::len).sum::<usize>(), 5000, "{path}");
        let res = client.send(get(&url, &[]), &allowed).await.unwrap();
        let err = res.bytes().await.unwrap_err();
        assert!(matches!(err, NetError::ResponseTooLarge { limit: 1024 }), "{path}: {err:?}");
    }
}

#[tokio::test]
async fn a_declared_length_over_the_streaming_cap_fails_before_streaming() {
    let addr = serve(app()).await;
    let allowed = policy(&[pattern(addr)]);
    let client = small(1024);
    let res = client.send(get(&format!("http://{addr}/sized/1025"), &[]), &allowed).await.unwrap();
    let Err(err) = res.try_into_stream() else { panic!("a 1025-byte body streamed under 1024") };
    assert!(matches!(err, NetError::ResponseTooLarge { limit: 1024 }), "{err:?}");
    // Without a declared length the cap can only be found crossing it, mid-stream.
    let res =
        client.send(get(&format!("http://{addr}/chunked/1025"), &[]), &allowed).await.unwrap();
    let items: Vec<_> = res.try_into_stream().unwrap().collect().await;
    assert!(matches!(items.last(), Some(Err(NetError::ResponseTooLarge { limit: 1024 }))));
}

#[tokio::test]
async fn limited_to_lowers_the_whole_body_cap_and_never_raises_it() {
    let addr = serve(app()).await;
    let allowed = policy(&[pattern(addr)]);
    let url = format!("http://{addr}/chunked/600");
    let res = client(ClientConfig::default()).send(get(&url, &[]), &allowed).await.unwrap();
    let err = res.limited_to(512).bytes().await.unwrap_err();
    assert!(matches!(err, NetError::ResponseTooLarge { limit: 512 }), "{err:?}");
    let res = small(512).send(get(&url, &[]), &allowed).await.unwrap();
    assert_eq!(res.limited_to(1 << 20).limit(), 512);
}
