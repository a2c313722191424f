//! Test servers on `127.0.0.1:0`: an axum app, and a raw listener that reports every connection.

#![allow(dead_code)]

use std::net::SocketAddr;

use axum::Router;
use latchkey_net::{Client, ClientConfig, HostPolicy};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Serves `app` on a free loopback port.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A listener that never answers and sends each accepted connection's peer address down a
/// channel, so a test can prove no connection was made.
pub struct Tripwire {
    pub addr: SocketAddr,
    accepted: mpsc::UnboundedReceiver<SocketAddr>,
}

impl Tripwire {
    pub async fn new() -> Tripwire {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, accepted) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, peer)) = listener.accept().await {
                held.push(stream);
                if tx.send(peer).is_err() {
                    break;
                }
            }
        });
        Tripwire { addr, accepted }
    }

    /// Asserts nothing connected before now: connects a probe and checks that the first
    /// connection the listener accepted is the probe's (connections are accepted in order).
    pub async fn assert_untouched(mut self) {
        let probe = TcpStream::connect(self.addr).await.unwrap();
        let first = self.accepted.recv().await.unwrap();
        assert_eq!(first, probe.local_addr().unwrap(), "a connection was made before the probe");
    }
}

/// A client with `config`.
pub fn client(config: ClientConfig) -> Client {
    Client::new(config).unwrap()
}

/// A policy allowing exactly these host patterns.
pub fn policy(patterns: &[String]) -> HostPolicy {
    HostPolicy::new(patterns).unwrap()
}

/// `127.0.0.1:<port>` for `addr`.
pub fn pattern(addr: SocketAddr) -> String {
    format!("127.0.0.1:{}", addr.port())
}

/// A GET request for `url` with `headers`.
pub fn get(url: &str, headers: &[(&str, &str)]) -> http::Request<bytes::Bytes> {
    let mut builder = http::Request::get(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(bytes::Bytes::new()).unwrap()
}
