//! The tools `/mcp` offers: `list_connections` (what the caller may use, with its grants) and
//! `request` (an HTTP request through one connection). `request` takes the proxy's path:
//! the agent token's grants and budget, the connector's rate limits, the operation log and the
//! credentials applied by the engine, which the agent never sees. The response body comes back
//! cut at a limit, and says so when it was cut.
//!
//! A refusal or a failure to reach the API is a tool result with `isError` and the same
//! `code` the REST API would answer with; a malformed argument is an `invalid_params` error.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use http::HeaderMap;
use latchkey_engine::{
    AgentRefusal, ApiRequest, ConnectionFilter, ConnectionId, ConnectionSummary, ConnectorId,
    Cursor, EngineError, PageRequest, strip_hop_by_hop,
};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Caller;
use crate::{ApiError, AppState, Refusal};

/// The response body bytes `request` returns unless asked for another limit.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
/// The most response body bytes `request` returns, whatever it is asked.
pub const MAX_BODY_LIMIT: usize = 1024 * 1024;

/// Connections per `list_connections` page.
const LIST_PAGE_SIZE: u32 = 100;

/// The MCP server's tools, over the server's state.
#[derive(Debug, Clone)]
pub struct LatchkeyTools {
    state: AppState,
    tool_router: ToolRouter<Self>,
}

/// `list_connections`' arguments.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListConnections {
    /// The `next_cursor` of the previous page, to read the next one.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// `request`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// The connection's id, as `list_connections` gives it.
    pub connection: String,
    /// The HTTP method: GET, POST, PUT, PATCH, DELETE, …
    pub method: String,
    /// The path below the connection's base URL, starting with `/` (no query string: use
    /// `query`).
    pub path: String,
    /// Query parameters; a list sends the parameter once per value.
    #[serde(default)]
    pub query: BTreeMap<String, QueryValue>,
    /// Request headers. `Authorization` and Latchkey's own are not sent: the connection's
    /// credentials are applied by Latchkey.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body: a string is sent as it is; anything else as JSON (with `Content-Type:
    /// application/json` unless `headers` names another).
    #[serde(default)]
    pub body: Option<Value>,
    /// The most response body bytes to return (default 65536, at most 1048576); a longer body
    /// is cut, and the result says so.
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
}

/// One query parameter's value, or several.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum QueryValue {
    /// Sent once.
    One(String),
    /// Sent once per value.
    Many(Vec<String>),
}

/// A connection as the tools show it: never a credential.
#[derive(Debug, Serialize)]
struct ConnectionView {
    id: String,
    connector: String,
    connector_name: Option<String>,
    base_url: Option<String>,
    label: Option<String>,
    status: String,
    grants: Value,
}

#[tool_router]
impl LatchkeyTools {
    /// The tools over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state, tool_router: Self::tool_router() }
    }

    #[tool(
        description = "Lists the connections you may send requests through: each one's id, \
            connector, base URL, status and grants (the methods and path globs you may use, and \
            for an agent token its expiry and request budget). Page on with `cursor`.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_connections(
        &self,
        Extension(parts): Extension<http::request::Parts>,
        Parameters(args): Parameters<ListConnections>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller(&parts)?;
        match self.connections(&caller, args).await {
            Ok(listing) => Ok(CallToolResult::structured(listing)),
            Err(e) => Ok(refused(e)),
        }
    }

    #[tool(
        description = "Sends an HTTP request to a connection's API with the connection's \
            credentials applied by Latchkey (you never see them). `path` is below the \
            connection's base URL. Returns the status, headers and body (text, or base64 for \
            binary bodies), cut at `max_body_bytes` with `truncated: true` when longer.",
        annotations(read_only_hint = false, destructive_hint = true, open_world_hint = true)
    )]
    async fn request(
        &self,
        Extension(parts): Extension<http::request::Parts>,
        Parameters(args): Parameters<SendRequest>,
    ) -> Result<CallToolResult, ErrorData> {
        let caller = caller(&parts)?;
        let limit = args.max_body_bytes.unwrap_or(DEFAULT_BODY_LIMIT);
        if limit == 0 || limit > MAX_BODY_LIMIT {
            return Err(ErrorData::invalid_params(
                format!("max_body_bytes is 1 to {MAX_BODY_LIMIT}"),
                None,
            ));
        }
        let (connection, request) = api_request(args)?;
        match self.send(&caller, &connection, request, limit).await {
            Ok(answer) => Ok(CallToolResult::structured(answer)),
            Err(e) => Ok(refused(e)),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for LatchkeyTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("latchkey", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Latchkey sends HTTP requests to third-party APIs on a user's behalf. Call \
                 list_connections to see which connections you may use and within which \
                 grants, then request to call the API through one of them.",
            )
    }
}

impl LatchkeyTools {
    /// The caller's connections: an agent token's one, or a page of its key's environment.
    async fn connections(&self, caller: &Caller, args: ListConnections) -> Result<Value, ApiError> {
        let engine = &self.state.engine;
        match caller {
            Caller::Agent { record, .. } => {
                let id = ConnectionId::new(&record.connection)
                    .map_err(|e| ApiError::internal(format!("a stored agent token: {e}")))?;
                let connection = engine.connections().get(&id).await?.summary();
                let grants = json!({
                    "methods": record.methods,
                    "paths": record.paths,
                    "expires_at": crate::routes::rfc3339(record.expires_at),
                    "max_requests": record.max_requests,
                    "used_requests": record.used_requests,
                });
                let view = self.view(connection, grants);
                Ok(json!({ "connections": [view], "next_cursor": null }))
            }
            Caller::Key(principal) => {
                let after = args
                    .cursor
                    .as_deref()
                    .map(Cursor::parse)
                    .transpose()
                    .map_err(|e| ApiError::invalid_request(format!("cursor: {e}")))?;
                let page = engine
                    .connections()
                    .list(
                        &ConnectionFilter::in_environment(principal.environment.as_str()),
                        &PageRequest { limit: LIST_PAGE_SIZE, after },
                    )
                    .await?;
                let grants = json!({ "methods": ["*"], "paths": ["/**"] });
                let views: Vec<ConnectionView> =
                    page.items.into_iter().map(|c| self.view(c, grants.clone())).collect();
                Ok(json!({
                    "connections": views,
                    "next_cursor": page.next.map(|c| c.token()),
                }))
            }
        }
    }

    fn view(&self, connection: ConnectionSummary, grants: Value) -> ConnectionView {
        let connector = ConnectorId::new(&connection.connector)
            .ok()
            .and_then(|id| self.state.engine.connectors().get(&id).ok())
            .map(|entry| entry.connector);
        ConnectionView {
            id: connection.id,
            connector_name: connector.as_ref().map(|c| c.name.clone()),
            base_url: connector.as_ref().map(|c| c.base_url.clone()),
            connector: connection.connector,
            label: connection.label,
            status: connection.status.to_string(),
            grants,
        }
    }

    /// Sends `request` through `connection` for `caller` and reads at most `limit` body bytes.
    async fn send(
        &self,
        caller: &Caller,
        connection: &ConnectionId,
        request: ApiRequest,
        limit: usize,
    ) -> Result<Value, ApiError> {
        let engine = &self.state.engine;
        if let Caller::Agent { token, .. } = caller {
            let path = request.path.as_str();
            let authorized = engine
                .agent_tokens()
                .authorize(token, connection.as_str(), request.method.as_str(), path)
                .await?;
            if let Err(refusal) = authorized {
                return Err(agent_refusal(refusal));
            }
        }
        engine.connections().check_environment(&caller.environment()?, connection).await?;
        let upstream = engine.dispatch().request(connection, request).await?;
        let secrets = Redactor::of(&engine.connections().get(connection).await?.credentials);
        let status = upstream.status.as_u16();
        let headers = header_map(&strip_hop_by_hop(&upstream.headers), &secrets);
        let mut stream = Box::pin(upstream.into_stream());
        let mut body = BytesMut::new();
        let mut truncated = false;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(EngineError::from)?;
            let room = limit - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        drop(stream);
        let body = secrets.redact(&body, truncated);
        let (text, encoding) = body_text(Bytes::from(body), truncated);
        let mut answer = json!({
            "status": status,
            "headers": headers,
            "body": text,
            "body_encoding": encoding,
            "truncated": truncated,
        });
        if truncated {
            answer["note"] = Value::String(format!(
                "the body was cut after {limit} bytes; ask again with a larger max_body_bytes \
                 (at most {MAX_BODY_LIMIT}) or a narrower request"
            ));
        }
        Ok(answer)
    }
}

/// The caller the authentication layer put on the request.
fn caller(parts: &http::request::Parts) -> Result<Arc<Caller>, ErrorData> {
    parts
        .extensions
        .get::<Arc<Caller>>()
        .cloned()
        .ok_or_else(|| ErrorData::internal_error("the request was not authenticated", None))
}

/// The tool's arguments as the engine's request; `invalid_params` for what cannot be sent.
fn api_request(args: SendRequest) -> Result<(ConnectionId, ApiRequest), ErrorData> {
    let invalid = |message: String| ErrorData::invalid_params(message, None);
    let connection =
        ConnectionId::new(&args.connection).map_err(|e| invalid(format!("connection: {e}")))?;
    let method = http::Method::from_bytes(args.method.trim().to_ascii_uppercase().as_bytes())
        .map_err(|_| invalid(format!("method: `{}` is not an HTTP method", args.method)))?;
    if !args.path.starts_with('/')
        || args.path.contains(['?', '#'])
        || args.path.chars().any(char::is_control)
    {
        return Err(invalid(
            "path starts with / and holds no query (use `query`), fragment or control character"
                .to_owned(),
        ));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &args.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("headers: `{name}` is not a header name")))?;
        let value = http::HeaderValue::from_str(value).map_err(|_| {
            invalid(format!("headers: the value of `{name}` is not a header value"))
        })?;
        headers.append(name, value);
    }
    let mut headers = strip_hop_by_hop(&headers);
    headers.remove(http::header::AUTHORIZATION);
    headers.remove(http::header::HOST);
    headers.remove(http::header::CONTENT_LENGTH);
    crate::proxy::drop_latchkey_headers(&mut headers);
    let body = match args.body {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(text)) => Bytes::from(text),
        Some(json) => {
            if !headers.contains_key(http::header::CONTENT_TYPE) {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
            }
            Bytes::from(json.to_string())
        }
    };
    let query = args
        .query
        .into_iter()
        .flat_map(|(name, value)| match value {
            QueryValue::One(v) => vec![(name, v)],
            QueryValue::Many(vs) => vs.into_iter().map(|v| (name.clone(), v)).collect(),
        })
        .collect();
    Ok((connection, ApiRequest { method, path: args.path, query, headers, body }))
}

/// Headers as a JSON object: one string per name (several values joined with `, `), those that
/// are not text left out, the connection's credentials redacted.
fn header_map(headers: &HeaderMap, secrets: &Redactor) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        let redacted = secrets.redact(value.as_bytes(), false);
        let value = String::from_utf8_lossy(&redacted);
        let value = value.as_ref();
        out.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }
    out
}

/// The body as text when it is UTF-8 (a character cut by the truncation is dropped), else as
/// base64; and which it is.
fn body_text(body: Bytes, truncated: bool) -> (String, &'static str) {
    match std::str::from_utf8(&body) {
        Ok(text) => (text.to_owned(), "text"),
        // Only the last character is incomplete: the cut went through it.
        Err(e) if truncated && e.error_len().is_none() => {
            (String::from_utf8_lossy(&body[..e.valid_up_to()]).into_owned(), "text")
        }
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(&body), "base64"),
    }
}

/// What stands in for a credential found in a response.
const REDACTED: &[u8] = b"[redacted]";
/// Credentials shorter than this are not looked for: too likely to match by chance.
const MIN_REDACTED_LEN: usize = 8;

/// The connection's credential values, to take out of what the agent is given: an API that
/// echoes a request (its headers, a token-info endpoint) must not hand the agent what Latchkey
/// applied. Only the values as stored are recognised, not encodings of them (a Basic header's
/// base64); see docs/mcp.md.
struct Redactor(Vec<Vec<u8>>);

impl Redactor {
    fn of(credentials: &BTreeMap<String, latchkey_core::Secret>) -> Self {
        let mut values: Vec<Vec<u8>> = credentials
            .values()
            .map(|s| s.expose().as_bytes().to_vec())
            .filter(|v| v.len() >= MIN_REDACTED_LEN)
            .collect();
        // The longest first, so that a secret containing another is replaced whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        Self(values)
    }

    /// `data` with every credential replaced by `[redacted]`; when `cut` (the data was
    /// truncated), a tail that begins a credential is dropped too.
    fn redact(&self, data: &[u8], cut: bool) -> Vec<u8> {
        let mut out = data.to_vec();
        for secret in &self.0 {
            let mut replaced = Vec::with_capacity(out.len());
            let mut at = 0;
            while at < out.len() {
                if out[at..].starts_with(secret) {
                    replaced.extend_from_slice(REDACTED);
                    at += secret.len();
                } else {
                    replaced.push(out[at]);
                    at += 1;
                }
            }
            out = replaced;
        }
        if cut {
            let start = out.len().saturating_sub(
                MIN_REDACTED_LEN.max(self.0.iter().map(Vec::len).max().unwrap_or(0)),
            );
            // A few characters tell nothing; from four on, the start of a credential is cut.
            let begins_secret = (start..out.len().saturating_sub(3))
                .find(|&i| self.0.iter().any(|s| s.starts_with(&out[i..])));
            if let Some(i) = begins_secret {
                out.truncate(i);
            }
        }
        out
    }
}

/// An agent token's refusal, with the code and status the proxy answers it with.
fn agent_refusal(refusal: AgentRefusal) -> ApiError {
    match refusal {
        AgentRefusal::Invalid => ApiError::unauthorized(),
        AgentRefusal::Expired(_) => {
            ApiError::refused(Refusal::AgentTokenExpired, refusal.to_string())
        }
        AgentRefusal::OutsideGrant(_) => {
            ApiError::refused(Refusal::OutsideGrant, refusal.to_string())
        }
        AgentRefusal::Spent(_) => ApiError::refused(Refusal::AgentTokenSpent, refusal.to_string()),
    }
}

/// A refusal or failure as a tool error: the REST API's `code`, status and message.
fn refused(error: ApiError) -> CallToolResult {
    let body = error.body();
    CallToolResult::structured_error(json!({
        "error": {
            "code": body.code,
            "status": error.status().as_u16(),
            "message": body.message,
            "upstream_status": body.upstream_status,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_body_keeps_its_whole_characters_and_binary_is_base64() {
        let text = Bytes::from("héllo".as_bytes()[..2].to_vec());
        assert_eq!(body_text(text, true), ("h".to_owned(), "text"));
        assert_eq!(body_text(Bytes::from_static(b"ok"), false), ("ok".to_owned(), "text"));
        assert_eq!(body_text(Bytes::from_static(&[0xff, 0x00]), false).1, "base64");
    }

    #[test]
    fn credentials_in_a_response_are_redacted_even_when_cut() {
        let credentials = BTreeMap::from([
            ("token".to_owned(), latchkey_core::Secret::new("sk_live_123456")),
            ("short".to_owned(), latchkey_core::Secret::new("abc")),
        ]);
        let secrets = Redactor::of(&credentials);
        let echoed = secrets.redact(b"{\"auth\": \"Bearer sk_live_123456\", \"abc\": 1}", false);
        assert_eq!(echoed, b"{\"auth\": \"Bearer [redacted]\", \"abc\": 1}");
        assert_eq!(secrets.redact(b"token=sk_live_12", true), b"token=");
        assert_eq!(secrets.redact(b"token=sk_live_12", false), b"token=sk_live_12");
    }

    #[test]
    fn paths_with_a_query_or_without_a_slash_are_invalid_params() {
        let args = |path: &str| SendRequest {
            connection: "conn_1".into(),
            method: "get".into(),
            path: path.into(),
            query: BTreeMap::new(),
            headers: BTreeMap::from([
                ("Authorization".to_owned(), "Bearer mine".to_owned()),
                ("X-Latchkey-Environment".to_owned(), "prod".to_owned()),
                ("Accept".to_owned(), "application/json".to_owned()),
            ]),
            body: Some(json!({ "a": 1 })),
            max_body_bytes: None,
        };
        assert!(api_request(args("relative")).is_err());
        assert!(api_request(args("/a?b=c")).is_err());
        let (_, request) = api_request(args("/repos")).unwrap();
        assert_eq!(request.method, http::Method::GET);
        assert!(request.headers.get("authorization").is_none());
        assert!(request.headers.get("x-latchkey-environment").is_none());
        assert_eq!(request.headers["content-type"], "application/json");
        assert_eq!(request.body, Bytes::from_static(br#"{"a":1}"#));
    }
}
