//! The OAuth2 hooks: `before_oauth2_authorise` may change the authorization URL;
//! `before_oauth2_token` / `before_oauth2_refresh` the token request's headers, body and
//! endpoint path; `after_oauth2_token` / `after_oauth2_refresh` the token response before it is
//! parsed. The token request still goes only to the token endpoint's host.

use bytes::Bytes;
use latchkey_core::{Connector, OutgoingRequest};
use serde_json::{Map, Value, json};
use url::Url;

use super::action::script_failure;
use super::{
    HookScope, body_bytes, body_value, headers_from, headers_value, mentions, query_value,
    set_query,
};
use crate::{Engine, EngineError};

/// Which token exchange a hook is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenEvent {
    /// A first token (code exchange, client credentials, password, device).
    Token,
    /// A refresh.
    Refresh,
}

impl TokenEvent {
    fn before(self) -> &'static str {
        match self {
            TokenEvent::Token => "before_oauth2_token",
            TokenEvent::Refresh => "before_oauth2_refresh",
        }
    }

    fn after(self) -> &'static str {
        match self {
            TokenEvent::Token => "after_oauth2_token",
            TokenEvent::Refresh => "after_oauth2_refresh",
        }
    }
}

fn no_signals(connector: &Connector, event: &str, run: &super::HookRun) -> Result<(), EngineError> {
    match run.signal() {
        Some(_) => Err(script_failure(
            connector,
            event,
            "AuthRefreshException and AuthSessionException belong in after_action and after_error"
                .into(),
        )),
        None => Ok(()),
    }
}

impl Engine {
    /// Runs `before_oauth2_authorise` on the authorization URL.
    pub(crate) async fn before_authorise(
        &self,
        connector: &Connector,
        scope: HookScope,
        url: Url,
    ) -> Result<Url, EngineError> {
        const EVENT: &str = "before_oauth2_authorise";
        if !mentions(connector, EVENT) {
            return Ok(url);
        }
        let endpoint = Value::String(url.to_string());
        let parameters = query_value(&url);
        let mut globals = Map::new();
        globals.insert("method_endpoint".into(), endpoint.clone());
        globals.insert("method_request_parameters".into(), parameters.clone());
        let Some(run) = self.run_hook(connector, EVENT, scope, globals).await? else {
            return Ok(url);
        };
        no_signals(connector, EVENT, &run)?;
        let mut url = match run.changed("method_endpoint", &endpoint) {
            Some(changed) => Url::parse(changed.as_str().unwrap_or_default()).map_err(|e| {
                script_failure(connector, EVENT, format!("method_endpoint is not a URL: {e}"))
            })?,
            None => url,
        };
        if let Some(changed) = run.changed("method_request_parameters", &parameters) {
            set_query(&mut url, changed);
        }
        Ok(url)
    }

    /// Runs `before_oauth2_token` or `before_oauth2_refresh` on a token request.
    pub(crate) async fn before_token_request(
        &self,
        connector: &Connector,
        event: TokenEvent,
        scope: HookScope,
        out: &mut OutgoingRequest,
    ) -> Result<(), EngineError> {
        let name = event.before();
        if !mentions(connector, name) {
            return Ok(());
        }
        let form = out.content_type().as_deref() == Some("application/x-www-form-urlencoded");
        let body = if form {
            Value::Object(
                form_urlencoded::parse(&out.body)
                    .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                    .collect(),
            )
        } else {
            body_value(&out.body)
        };
        let headers = headers_value(&out.headers);
        let endpoint = Value::String(out.url.to_string());
        let mut globals = Map::new();
        globals.insert("method_request_headers".into(), headers.clone());
        globals.insert("method_request".into(), body.clone());
        globals.insert("method_endpoint".into(), endpoint.clone());
        let Some(run) = self.run_hook(connector, name, scope, globals).await? else {
            return Ok(());
        };
        no_signals(connector, name, &run)?;
        if let Some(changed) = run.changed("method_request_headers", &headers) {
            out.headers = headers_from(connector, name, changed)?;
        }
        if let Some(changed) = run.changed("method_endpoint", &endpoint) {
            out.url = Url::parse(changed.as_str().unwrap_or_default()).map_err(|e| {
                script_failure(connector, name, format!("method_endpoint is not a URL: {e}"))
            })?;
        }
        if let Some(changed) = run.changed("method_request", &body) {
            out.body = match (form, changed) {
                (true, Value::Object(map)) => {
                    let mut encoded = form_urlencoded::Serializer::new(String::new());
                    for (k, v) in map {
                        match v {
                            Value::Null => {}
                            Value::String(text) => {
                                encoded.append_pair(k, text);
                            }
                            other => {
                                encoded.append_pair(k, &other.to_string());
                            }
                        }
                    }
                    Bytes::from(encoded.finish())
                }
                (_, other) => body_bytes(other),
            };
        }
        Ok(())
    }

    /// Runs `after_oauth2_token` or `after_oauth2_refresh` on a token response: returns the
    /// status and body Latchkey then parses.
    pub(crate) async fn after_token_response(
        &self,
        connector: &Connector,
        event: TokenEvent,
        scope: HookScope,
        status: u16,
        headers: &http::HeaderMap,
        body: Bytes,
    ) -> Result<(u16, Bytes), EngineError> {
        let name = event.after();
        if !mentions(connector, name) {
            return Ok((status, body));
        }
        let content = body_value(&body);
        let mut globals = Map::new();
        globals.insert("method_response".into(), content.clone());
        globals.insert("method_response_headers".into(), headers_value(headers));
        globals.insert("method_response_status".into(), json!(status));
        let Some(run) = self.run_hook(connector, name, scope, globals).await? else {
            return Ok((status, body));
        };
        no_signals(connector, name, &run)?;
        let body = match run.changed("method_response", &content) {
            Some(changed) => body_bytes(changed),
            None => body,
        };
        let status = match run.changed("method_response_status", &json!(status)) {
            Some(code) => code.as_u64().and_then(|n| u16::try_from(n).ok()).ok_or_else(|| {
                script_failure(connector, name, format!("{code} is not an HTTP status"))
            })?,
            None => status,
        };
        Ok((status, body))
    }
}
