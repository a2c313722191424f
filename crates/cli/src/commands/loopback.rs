//! The OAuth2 flow for a native app (RFC 8252 §7.3): a loopback redirect on a free port, PKCE,
//! the authorization URL printed (and opened where a browser exists), one callback accepted.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use latchkey_engine::{CallbackParams, Engine};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the CLI waits for the user to finish in the browser.
const WAIT: Duration = Duration::from_secs(600);

pub async fn run(
    engine: &Engine,
    environment: &latchkey_engine::EnvironmentId,
    integration: &latchkey_core::IntegrationId,
    auth: Option<&str>,
    connection_id: Option<latchkey_core::ConnectionId>,
    config: std::collections::BTreeMap<String, String>,
    open_browser: bool,
) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot open a loopback port")?;
    let redirect_uri = format!("http://127.0.0.1:{}/callback", listener.local_addr()?.port());
    let (url, flow) = engine
        .connect()
        .begin_local_authorization(environment, integration, auth, &redirect_uri, config)
        .await?;
    println!("{url}");
    eprintln!(
        "Open the URL above in a browser to connect; waiting for the redirect to {redirect_uri}"
    );
    if open_browser {
        try_open(url.as_str());
    }
    let waiting = super::progress::spinner(
        &format!(
            "Waiting for the browser to finish at {url} (gives up after {} minutes)",
            WAIT.as_secs() / 60
        ),
        super::progress::on_terminal(),
    );
    let params = tokio::time::timeout(WAIT, wait_for_callback(&listener)).await;
    waiting.finish_and_clear();
    let params = params.with_context(|| {
        format!("timed out after {} minutes waiting for the browser", WAIT.as_secs() / 60)
    })??;
    let record = engine.connect().complete_local_authorization(flow, params, connection_id).await?;
    match &record.label {
        Some(label) => println!("{}\t{}", record.id, label),
        None => println!("{}", record.id),
    }
    Ok(ExitCode::SUCCESS)
}

/// Accepts connections until one is `GET /callback?…`; answers it with a short page.
/// Hand-written: one request line is all this needs, and no server framework has to start.
async fn wait_for_callback(listener: &tokio::net::TcpListener) -> anyhow::Result<CallbackParams> {
    loop {
        let (mut stream, _) = listener.accept().await?;
        let mut buf = vec![0u8; 16 * 1024];
        let mut len = 0;
        while len < buf.len() {
            let n = stream.read(&mut buf[len..]).await?;
            if n == 0 {
                break;
            }
            len += n;
            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let head = String::from_utf8_lossy(&buf[..len]);
        let target = head.lines().next().and_then(|l| l.split_whitespace().nth(1)).unwrap_or("");
        let Some(query) = target.strip_prefix("/callback") else {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            continue;
        };
        let query = query.strip_prefix('?').unwrap_or("");
        let params =
            CallbackParams::from_pairs(form_urlencoded::parse(query.as_bytes()).into_owned());
        let body = "<!doctype html><title>Latchkey</title><p>You can close this window and return to the terminal.</p>";
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        if params.state.is_none() && params.error.is_none() {
            bail!("the callback carried neither a code nor an error");
        }
        return Ok(params);
    }
}

/// Opens `url` in the user's browser (the `webbrowser` crate: `$BROWSER`, `xdg-open`, …), on
/// Linux only where a display exists, so a headless machine never starts a text browser in
/// the terminal that prints the URL. On a thread of its own: a text browser named by `$BROWSER`
/// would block until it quits.
fn try_open(url: &str) {
    let has_display =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if cfg!(target_os = "linux") && !has_display {
        return;
    }
    let url = url.to_owned();
    std::thread::spawn(move || {
        if let Err(e) = webbrowser::open(&url) {
            tracing::debug!(error = %e, "cannot open a browser");
        }
    });
}
