//! Which IP addresses count as non-public, and a DNS resolver that drops them, so the check
//! applies to the addresses actually connected to rather than to the name in the URL.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether `ip` is loopback, private (RFC 1918), link-local, CGNAT (RFC 6598), unique-local
/// IPv6 (RFC 4193), unspecified, multicast, broadcast, "this network" (0/8) or reserved (240/4).
///
/// IPv6 addresses that embed an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64 `64:ff9b::/96`,
/// 6to4 `2002::/16`) are judged by the embedded address.
pub(crate) fn is_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_non_public_v4(v4),
        IpAddr::V6(v6) => is_non_public_v6(v6),
    }
}

fn is_non_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
}

fn is_non_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_non_public_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0 // deprecated site-local fec0::/10
}

fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low()),
        // IPv4-compatible ::a.b.c.d, excluding :: and ::1 which are judged as IPv6.
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => Some(low()),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low()),
        [0x2002, hi, lo, ..] => {
            Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8))
        }
        _ => None,
    }
}

/// The error a lookup fails with when every address it found is non-public; recognised again in
/// [`NetError::from_reqwest`](crate::NetError) to report [`NetError::BlockedAddress`](crate::NetError::BlockedAddress).
#[derive(Debug, thiserror::Error)]
#[error("every resolved address is non-public")]
pub(crate) struct BlockedResolution;

/// A lookup that failed (no such name, no answer); recognised again in
/// [`NetError::from_reqwest`](crate::NetError) to summarise it as "DNS lookup failed".
#[derive(Debug, thiserror::Error)]
#[error("DNS lookup failed: {0}")]
pub(crate) struct LookupFailed(#[source] pub(crate) BoxError);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Resolves with the system resolver (or, in tests, the one given), marking a failed lookup as
/// [`LookupFailed`], and with `block` on keeps only public addresses. reqwest connects only to the addresses a resolver returns, so the check holds for
/// the address actually connected to: a name that answers a public address to one lookup and
/// 127.0.0.1 to the next (DNS rebinding) never reaches the loopback listener.
#[derive(Clone)]
pub(crate) struct PublicOnlyResolver {
    inner: Option<Arc<dyn Resolve>>,
    block: bool,
}

impl PublicOnlyResolver {
    /// Resolves with `inner` (`None` is the system resolver), keeping only public addresses
    /// when `block` is on.
    pub(crate) fn new(inner: Option<Arc<dyn Resolve>>, block: bool) -> PublicOnlyResolver {
        PublicOnlyResolver { inner, block }
    }
}

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let inner = self.inner.clone();
        let block = self.block;
        Box::pin(async move {
            let failed = |e: BoxError| -> BoxError { Box::new(LookupFailed(e)) };
            let found: Vec<SocketAddr> = match inner {
                Some(inner) => inner.resolve(name).await.map_err(failed)?.collect(),
                None => tokio::net::lookup_host((host.as_str(), 0))
                    .await
                    .map_err(|e| failed(Box::new(e)))?
                    .collect(),
            };
            if !block {
                return Ok(Box::new(found.into_iter()) as Addrs);
            }
            let public: Vec<SocketAddr> =
                found.into_iter().filter(|a| !is_non_public(a.ip())).collect();
            if public.is_empty() {
                tracing::warn!(host = %host, "refused: host resolves only to non-public addresses");
                return Err(Box::new(BlockedResolution) as _);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(s: &str) -> bool {
        is_non_public(s.parse().unwrap())
    }

    #[test]
    fn non_public_ranges_are_blocked() {
        for ip in [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.255",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:0101::1",
        ] {
            assert!(blocked(ip), "{ip} should be blocked");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "193.0.14.129",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert!(!blocked(ip), "{ip} should pass");
        }
    }

    #[tokio::test]
    async fn resolver_refuses_localhost() {
        let name: Name = "localhost".parse().unwrap();
        let err = match PublicOnlyResolver::new(None, true).resolve(name).await {
            Ok(_) => panic!("localhost resolved to a public address"),
            Err(e) => e,
        };
        assert!(err.is::<BlockedResolution>());
    }

    /// Answers lookups alternately with a public address and 127.0.0.1 (DNS rebinding), every
    /// third with both at once.
    #[derive(Default)]
    struct Rebinding(std::sync::atomic::AtomicUsize);

    impl Resolve for Rebinding {
        fn resolve(&self, _: Name) -> Resolving {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let public: SocketAddr = "203.0.113.7:0".parse().unwrap();
            let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
            let answer = match n % 3 {
                0 => vec![public],
                1 => vec![loopback],
                _ => vec![loopback, public],
            };
            Box::pin(async move { Ok(Box::new(answer.into_iter()) as Addrs) })
        }
    }

    /// Sends `attempts` GETs to `rebind.test` on the listener's port through a client built on
    /// the rebinding resolver; returns how many connections the 127.0.0.1 listener accepted.
    async fn loopback_connections(block_private_addresses: bool, attempts: usize) -> usize {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let server = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
                });
            }
        });
        let config = crate::ClientConfig {
            block_private_addresses,
            connect_timeout: std::time::Duration::from_millis(250),
            ..crate::ClientConfig::default()
        };
        let client = crate::Client::with_resolver(config, Arc::new(Rebinding::default())).unwrap();
        let policy = crate::HostPolicy::new(["rebind.test"]).unwrap();
        let url = format!("http://rebind.test:{port}/");
        let sends = (0..attempts).map(|_| {
            let request = http::Request::get(&url).body(bytes::Bytes::new()).unwrap();
            let client = client.clone();
            let policy = policy.clone();
            async move { client.send(request, &policy).await.map(|_| ()) }
        });
        let results = futures_util::future::join_all(sends).await;
        if block_private_addresses {
            for result in &results {
                if let Err(e) = result {
                    // The host may be named ("could not reach rebind.test: …"), the URL not.
                    let text = e.to_string();
                    assert!(!text.contains(&format!(":{port}")), "no URL in errors: {e}");
                    assert!(!text.contains("http://"), "no URL in errors: {e}");
                }
            }
        }
        server.abort();
        accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn dns_rebinding_never_reaches_a_blocked_address() {
        // The control: without blocking, the same resolver does lead to the loopback listener,
        // so a zero below is the filter's doing.
        assert!(loopback_connections(false, 30).await > 0, "the rebinding resolver is inert");
        assert_eq!(loopback_connections(true, 300).await, 0, "a rebound name reached 127.0.0.1");
    }
}
