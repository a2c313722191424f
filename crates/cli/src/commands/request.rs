//! `latchkey request CONNECTION METHOD PATH`: a curl-like request with the connection's auth
//! applied. Exits non-zero on a transport error or a status of 400 or more.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use latchkey_engine::{ApiRequest, Engine};

pub struct Options {
    pub connection: latchkey_core::ConnectionId,
    pub method: String,
    pub path: String,
    pub headers: Vec<String>,
    pub data: Option<String>,
    pub query: Vec<String>,
    pub include: bool,
}

pub async fn run(engine: &Engine, options: Options) -> anyhow::Result<ExitCode> {
    let method = Method::from_bytes(options.method.to_ascii_uppercase().as_bytes())
        .with_context(|| format!("`{}` is not an HTTP method", options.method))?;
    let mut headers = HeaderMap::new();
    for header in &options.headers {
        let Some((name, value)) = header.split_once(':') else {
            bail!("-H takes `Name: value`");
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("`{}` is not a header name", name.trim()))?;
        let value = HeaderValue::from_str(value.trim()).context("invalid header value")?;
        headers.append(name, value);
    }
    let mut query = Vec::new();
    for pair in &options.query {
        let Some((k, v)) = pair.split_once('=') else { bail!("--query takes KEY=VALUE") };
        query.push((k.to_string(), v.to_string()));
    }
    let body = match options.data.as_deref() {
        None => Bytes::new(),
        Some("@-") => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            buf.into()
        }
        Some(data) if data.starts_with('@') => {
            std::fs::read(&data[1..]).with_context(|| format!("cannot read {}", &data[1..]))?.into()
        }
        Some(data) => Bytes::copy_from_slice(data.as_bytes()),
    };
    let response = engine
        .dispatch()
        .request(
            &options.connection,
            ApiRequest { method, path: options.path, query, headers, body },
        )
        .await?;
    let status = response.status;
    let mut out = std::io::stdout().lock();
    if options.include {
        writeln!(out, "{:?} {}", response.version, status)?;
        for (name, value) in &response.headers {
            writeln!(out, "{}: {}", name, String::from_utf8_lossy(value.as_bytes()))?;
        }
        writeln!(out)?;
    }
    let mut stream = std::pin::pin!(response.into_stream());
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk?)?;
    }
    out.flush()?;
    if status.as_u16() >= 400 {
        eprintln!("error: the API answered {status}");
        return Ok(ExitCode::from(22));
    }
    Ok(ExitCode::SUCCESS)
}
