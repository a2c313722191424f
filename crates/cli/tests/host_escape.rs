//! Paths that try to move credentials to another host (`//evil`, `@evil`, `%2F%2F`, backslashes,
//! absolute URLs) never reach a second listener standing in for that host, through the CLI or
//! the proxy.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::{Home, http};

/// A listener that answers every request with 200 and counts connections.
fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (port, count)
}

const ATTACKS: &[&str] = &[
    "//127.0.0.1:{EVIL}/steal",
    "///127.0.0.1:{EVIL}/steal",
    "@127.0.0.1:{EVIL}/steal",
    "http://127.0.0.1:{EVIL}/steal",
    "https:127.0.0.1:{EVIL}/steal",
    "%2F%2F127.0.0.1:{EVIL}/steal",
    "%2f%2f127.0.0.1:{EVIL}/steal",
    "\\\\127.0.0.1:{EVIL}\\steal",
    "/\\127.0.0.1:{EVIL}/steal",
    "%5C%5C127.0.0.1:{EVIL}/steal",
    "/..%2F..%2F127.0.0.1:{EVIL}",
    "/../../127.0.0.1:{EVIL}/steal",
    "/x/../..//127.0.0.1:{EVIL}/steal",
];

#[test]
fn escape_paths_never_reach_another_host() {
    let (good_port, good_hits) = counting_listener();
    let (evil_port, evil_hits) = counting_listener();
    let home = Home::new();
    home.connector(
        "tight",
        &format!(
            "id: tight\nname: Tight\nbase_url: http://127.0.0.1:{good_port}/api\nauth:\n  - type: bearer\n"
        ),
    );
    home.ok(&["connect", "tight", "--id", "t1", "--set", "token=escape-canary", "--no-test"]);
    // The legitimate path works, so the listener and connection are sound.
    assert_eq!(home.ok(&["request", "t1", "GET", "/users"]), "ok");
    assert!(good_hits.load(Ordering::SeqCst) >= 1);

    for attack in ATTACKS {
        let path = attack.replace("{EVIL}", &evil_port.to_string());
        let _ = home.run(&["request", "t1", "GET", &path]);
    }
    assert_eq!(evil_hits.load(Ordering::SeqCst), 0, "a CLI path reached the other host");

    let server = home.serve("escape-api-key", &[]);
    let auth = "Bearer escape-api-key";
    for attack in ATTACKS {
        let path = attack.replace("{EVIL}", &evil_port.to_string());
        let raw = path.replace('\\', "%5C");
        let raw = raw.trim_start_matches('/');
        let _ = http(
            "GET",
            &format!("{}/v1/proxy/t1/{raw}", server.base),
            &[("Authorization", auth)],
            b"",
        );
    }
    assert_eq!(evil_hits.load(Ordering::SeqCst), 0, "a proxied path reached the other host");
}
