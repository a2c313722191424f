//! The request hooks: `before_action` sees the request with its credentials placed and may
//! change it before it is signed and sent;
//! `after_action` (a success) and `after_error` (a status of 400 or more) may change the
//! response, or ask for fresh credentials and one retry.

use http::StatusCode;
use latchkey_core::OutgoingRequest;
use latchkey_net::UpstreamResponse;
use latchkey_script::Signal;
use serde_json::{Map, Value, json};

use super::{
    HookScope, body_bytes, body_value, headers_from, headers_value, mentions, query_value,
    set_query,
};
use crate::send::Sent;
use crate::{Engine, EngineError};
use latchkey_core::Connector;

/// The caller's request as `action_data` shows it.
pub(crate) fn action_data(out: &OutgoingRequest) -> Value {
    json!({
        "method": out.method.as_str(),
        "url": out.url.as_str(),
        "body": body_value(&out.body),
    })
}

impl Engine {
    /// Runs `before_action` on the request (credentials placed, not yet signed) and applies what
    /// it changed. A header that held a credential stays marked sensitive when the script keeps
    /// or rewrites it.
    pub(crate) async fn before_action(
        &self,
        connector: &Connector,
        scope: HookScope,
        out: &mut OutgoingRequest,
    ) -> Result<Option<Signal>, EngineError> {
        const EVENT: &str = "before_action";
        if !mentions(connector, EVENT) {
            return Ok(None);
        }
        let mut endpoint = out.url.clone();
        endpoint.set_query(None);
        let before: [(&str, Value); 4] = [
            ("method_request_headers", headers_value(&out.headers)),
            ("method_request_parameters", query_value(&out.url)),
            ("method_request", body_value(&out.body)),
            ("method_endpoint", Value::String(endpoint.to_string())),
        ];
        let mut globals: Map<String, Value> =
            before.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        globals.insert("action_data".into(), action_data(out));
        let Some(run) = self.run_hook(connector, EVENT, scope, globals).await? else {
            return Ok(None);
        };
        if let Some(signal) = run.signal() {
            return Ok(Some(signal));
        }
        let [(_, headers), (_, parameters), (_, body), (_, endpoint)] = &before;
        if let Some(changed) = run.changed("method_endpoint", endpoint) {
            let text = changed.as_str().unwrap_or_default();
            let mut url = url::Url::parse(text).map_err(|e| {
                script_failure(connector, EVENT, format!("method_endpoint is not a URL: {e}"))
            })?;
            url.set_query(out.url.query());
            out.url = url;
        }
        if let Some(changed) = run.changed("method_request_parameters", parameters) {
            set_query(&mut out.url, changed);
        }
        if let Some(changed) = run.changed("method_request_headers", headers) {
            let mut headers = headers_from(connector, EVENT, changed)?;
            for (name, value) in headers.iter_mut() {
                let was_sensitive = out.headers.get_all(name).iter().any(|v| v.is_sensitive());
                if was_sensitive
                    || matches!(
                        *name,
                        http::header::AUTHORIZATION
                            | http::header::PROXY_AUTHORIZATION
                            | http::header::COOKIE
                    )
                {
                    value.set_sensitive(true);
                }
            }
            out.headers = headers;
        }
        if let Some(changed) = run.changed("method_request", body) {
            out.body = body_bytes(changed);
            if !changed.is_string()
                && !changed.is_null()
                && !out.headers.contains_key(http::header::CONTENT_TYPE)
            {
                out.headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
            }
        }
        Ok(None)
    }

    /// Runs `after_action` or `after_error` on the response, when the script may define it (the
    /// body is then read whole, under the size cap).
    pub(crate) async fn after_response(
        &self,
        connector: &Connector,
        scope: HookScope,
        response: UpstreamResponse,
    ) -> Result<Sent, EngineError> {
        let failed = response.status.as_u16() >= 400;
        let event = if failed { "after_error" } else { "after_action" };
        if !mentions(connector, event) {
            return Ok(Sent::Response(response));
        }
        let status = response.status;
        let mut headers = response.headers.clone();
        let version = response.version;
        let url = response.url().clone();
        let limit = response.limit();
        let mut body = response.bytes().await?;

        let content = body_value(&body);
        let before_headers = headers_value(&headers);
        let mut globals = Map::new();
        globals.insert("method_response".into(), content.clone());
        globals.insert("method_response_headers".into(), before_headers.clone());
        globals.insert("method_response_status".into(), json!(status.as_u16()));
        let error = json!({
            "statusCode": status.as_u16(),
            "reasonPhrase": status.canonical_reason().unwrap_or(""),
            "content": content,
            "isError": true,
            "isWarning": false,
            "isSuccess": false,
        });
        if failed {
            globals.insert("method_error".into(), error.clone());
        }
        let mut status = status;
        if let Some(run) = self.run_hook(connector, event, scope, globals).await? {
            if let Some(signal) = run.signal() {
                return Ok(Sent::Renew(signal, event));
            }
            if let Some(changed) = run.changed("method_response", &content) {
                body = body_bytes(changed);
            }
            if let Some(changed) = run.changed("method_response_headers", &before_headers) {
                headers = headers_from(connector, event, changed)?;
            }
            if let Some(code) = run.changed("method_response_status", &json!(status.as_u16())) {
                status = status_from(connector, event, code)?;
            }
            if failed && let Some(changed) = run.changed("method_error", &error) {
                let success = changed.get("isSuccess") == Some(&Value::Bool(true))
                    || changed.get("isError") == Some(&Value::Bool(false));
                if let Some(text) =
                    changed.get("content").filter(|c| Some(*c) != error.get("content"))
                {
                    body = body_bytes(text);
                }
                let code =
                    changed.get("statusCode").filter(|c| Some(*c) != error.get("statusCode"));
                status = match (code, success) {
                    (Some(code), _) => status_from(connector, event, code)?,
                    (None, true) => StatusCode::OK,
                    (None, false) => status,
                };
            }
        }
        headers.remove(http::header::CONTENT_LENGTH);
        Ok(Sent::Response(UpstreamResponse::buffered(status, headers, version, url, body, limit)))
    }
}

fn status_from(
    connector: &Connector,
    event: &str,
    value: &Value,
) -> Result<StatusCode, EngineError> {
    value
        .as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .and_then(|n| StatusCode::from_u16(n).ok())
        .ok_or_else(|| script_failure(connector, event, format!("{value} is not an HTTP status")))
}

pub(crate) fn script_failure(connector: &Connector, event: &str, message: String) -> EngineError {
    EngineError::Script {
        connector: connector.id.clone(),
        event: event.to_string(),
        error: latchkey_script::ScriptError::Thrown(message),
    }
}
