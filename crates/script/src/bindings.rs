//! The functions and classes a script sees, installed once per sandbox before it is hardened:
//! `http_request`, `btoa`/`atob`, `cyclr_sign`/`sign`, `cyclr_storage_*`, `console`,
//! `AuthRefreshException`/`AuthSessionException`, and our `Math.random` and `performance`.
//!
//! They keep no JavaScript value between calls: what a call needs of its own (the host link,
//! the deadline, the clock's origin) is in [`State`], set for each call.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use rquickjs::function::{Opt, Rest};
use rquickjs::{Coerced, Ctx, Exception, Function, Object, Result, Value};

use crate::charset::Charset;
use crate::host::{HostCall, HostReply, HttpRequest};
use crate::sandbox::State;
use crate::signing;

const PRELUDE: &str = r#"
globalThis.AuthRefreshException = class AuthRefreshException extends Error {
  constructor(message) { super(message === undefined ? 'AuthRefreshException' : message); this.name = 'AuthRefreshException'; }
};
globalThis.AuthSessionException = class AuthSessionException extends Error {
  constructor(message) { super(message === undefined ? 'AuthSessionException' : message); this.name = 'AuthSessionException'; }
};
"#;

/// Makes a header object read and write its names case-insensitively (`headers.js`).
const HEADER_VIEW: &str = include_str!("headers.js");

/// `http_request` as scripts see it: the host function, with the response's `headers` made
/// case-insensitive.
const HTTP_REQUEST: &str = "((host, view) => function http_request(options) {\n  const response = host(options);\n  response.headers = view(response.headers);\n  return response;\n})";

/// Installs the script functions. Returns the function that makes a header object
/// case-insensitive, which the sandbox applies to `method_request_headers` and
/// `method_response_headers` on each call.
pub(crate) fn install<'js>(ctx: &Ctx<'js>, state: &Arc<State>) -> Result<Function<'js>> {
    let global = ctx.globals();
    ctx.eval::<(), _>(PRELUDE)?;
    let header_view: Function = ctx.eval(HEADER_VIEW)?;

    global.set("btoa", Function::new(ctx.clone(), btoa)?)?;
    global.set("atob", Function::new(ctx.clone(), atob)?)?;
    let sign = Function::new(ctx.clone(), sign)?;
    global.set("cyclr_sign", sign.clone())?;
    global.set("sign", sign)?;

    let s = Arc::clone(state);
    let http = move |ctx: Ctx<'js>, options: Object<'js>| http_request(&ctx, &s, &options);
    let wrap: Function = ctx.eval(HTTP_REQUEST)?;
    let http: Function = wrap.call((
        Function::new(ctx.clone(), http)?.with_name("http_request")?,
        header_view.clone(),
    ))?;
    global.set("http_request", http)?;

    install_storage(ctx, &global, state)?;

    let console = Object::new(ctx.clone())?;
    let s = Arc::clone(state);
    let log =
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, args: Rest<Value<'js>>| -> Result<()> {
            let parts = args
                .0
                .into_iter()
                .map(|v| Ok(to_text(&ctx, v)?.unwrap_or_else(|| "undefined".into())))
                .collect::<Result<Vec<_>>>()?;
            s.log(parts.join(" "));
            Ok(())
        })?;
    for level in ["log", "info", "warn", "error", "debug"] {
        console.set(level, log.clone())?;
    }
    global.set("console", console)?;

    install_clock_and_random(ctx, &global, state)?;
    Ok(header_view)
}

/// `Math.random`, `performance.now` and `performance.timeOrigin` replaced by functions of the
/// call: QuickJS's own keep state in the context (a generator a call could advance or read back,
/// the time the sandbox was built) that would outlive the call.
fn install_clock_and_random<'js>(
    ctx: &Ctx<'js>,
    global: &Object<'js>,
    state: &Arc<State>,
) -> Result<()> {
    let s = Arc::clone(state);
    let math: Object = global.get("Math")?;
    math.set("random", Function::new(ctx.clone(), move || s.random())?.with_name("random")?)?;

    let performance = Object::new(ctx.clone())?;
    let s = Arc::clone(state);
    performance.set("now", Function::new(ctx.clone(), move || s.now_ms())?.with_name("now")?)?;
    let s = Arc::clone(state);
    let origin = Function::new(ctx.clone(), move || s.time_origin_ms())?;
    let descriptor = Object::new(ctx.clone())?;
    descriptor.set("get", origin)?;
    descriptor.set("enumerable", true)?;
    let object: Object = global.get("Object")?;
    let define: Function = object.get("defineProperty")?;
    define.call::<_, Value>((performance.clone(), "timeOrigin", descriptor))?;
    global.set("performance", performance)?;
    Ok(())
}

fn throw(ctx: &Ctx<'_>, message: &str) -> rquickjs::Error {
    Exception::throw_message(ctx, message)
}

fn btoa(ctx: Ctx<'_>, text: Coerced<String>, charset: Opt<String>) -> Result<String> {
    let charset = Charset::from_label(charset.0.as_deref()).map_err(|e| throw(&ctx, &e))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(charset.encode(&text.0)))
}

fn atob(ctx: Ctx<'_>, encoded: Coerced<String>, charset: Opt<String>) -> Result<String> {
    let charset = Charset::from_label(charset.0.as_deref()).map_err(|e| throw(&ctx, &e))?;
    let compact: String = encoded.0.chars().filter(|c| !c.is_whitespace()).collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes =
        engine.decode(compact).map_err(|e| throw(&ctx, &format!("atob: invalid base64: {e}")))?;
    Ok(charset.decode(&bytes))
}

fn sign(
    ctx: Ctx<'_>,
    algorithm: Coerced<String>,
    key: Coerced<String>,
    value: Coerced<String>,
    encoding: Opt<String>,
) -> Result<String> {
    let output = signing::Output::from_label(encoding.0.as_deref()).map_err(|e| throw(&ctx, &e))?;
    signing::sign(&algorithm.0, &key.0, &value.0, output).map_err(|e| throw(&ctx, &e))
}

/// A JavaScript value as text: strings as they are, objects as JSON, `null`/`undefined` as `None`.
fn to_text<'js>(ctx: &Ctx<'js>, value: Value<'js>) -> Result<Option<String>> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    if let Some(text) = value.as_string() {
        return text.to_string().map(Some);
    }
    if value.is_object() && !value.is_function() {
        if let Some(json) = ctx.json_stringify(value)? {
            return json.to_string().map(Some);
        }
        return Ok(None);
    }
    Ok(Some(value.get::<Coerced<String>>()?.0))
}

fn text_map<'js>(ctx: &Ctx<'js>, object: Option<Object<'js>>) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    if let Some(object) = object {
        for entry in object.props::<String, Value>() {
            let (key, value) = entry?;
            if let Some(text) = to_text(ctx, value)? {
                map.insert(key, text);
            }
        }
    }
    Ok(map)
}

fn http_request<'js>(ctx: &Ctx<'js>, state: &State, options: &Object<'js>) -> Result<Object<'js>> {
    let method = options
        .get::<_, Option<Coerced<String>>>("method")?
        .map_or_else(|| "GET".to_owned(), |m| m.0.to_ascii_uppercase());
    let url = options
        .get::<_, Option<Coerced<String>>>("url")?
        .ok_or_else(|| throw(ctx, "http_request: url is required"))?
        .0;
    let headers = text_map(ctx, options.get("headers")?)?;
    let parameters = text_map(ctx, options.get("parameters")?)?;
    let data = to_text(ctx, options.get("data")?)?;
    if let Some((name, _)) =
        headers.iter().find(|(k, v)| k.contains(['\r', '\n']) || v.contains(['\r', '\n']))
    {
        let message = format!("header {} contains a line break", name.escape_debug());
        return Err(throw(ctx, &message));
    }
    state.count_http_request().map_err(|m| throw(ctx, &format!("http_request failed: {m}")))?;
    let request = HttpRequest { method, url, headers, parameters, data };
    let echo = request_object(ctx, &request)?;
    let response = match state.call(HostCall::Http(request)) {
        Ok(HostReply::Http(Ok(response))) => response,
        Ok(HostReply::Http(Err(message))) | Err(message) => {
            return Err(throw(ctx, &format!("http_request failed: {message}")));
        }
        Ok(_) => return Err(throw(ctx, "http_request: unexpected host reply")),
    };
    let result = Object::new(ctx.clone())?;
    result.set("status_code", i32::from(response.status_code))?;
    result.set("headers", string_object(ctx, &response.headers)?)?;
    result.set("content", response.content)?;
    result.set("request", echo)?;
    Ok(result)
}

fn request_object<'js>(ctx: &Ctx<'js>, request: &HttpRequest) -> Result<Object<'js>> {
    let object = Object::new(ctx.clone())?;
    object.set("method", request.method.as_str())?;
    object.set("url", request.url.as_str())?;
    object.set("headers", string_object(ctx, &request.headers)?)?;
    object.set("parameters", string_object(ctx, &request.parameters)?)?;
    object.set("data", request.data.as_deref())?;
    Ok(object)
}

fn string_object<'js>(ctx: &Ctx<'js>, map: &BTreeMap<String, String>) -> Result<Object<'js>> {
    let object = Object::new(ctx.clone())?;
    for (key, value) in map {
        object.set(key.as_str(), value.as_str())?;
    }
    Ok(object)
}

/// `cyclr_storage_*`. The host stores strings; other values are stored as their text (objects
/// as JSON). `append` concatenates text; `increment`/`decrement` treat a missing or non-numeric
/// value as 0 and return the new number.
fn install_storage<'js>(ctx: &Ctx<'js>, global: &Object<'js>, state: &Arc<State>) -> Result<()> {
    let s = Arc::clone(state);
    let get = move |ctx: Ctx<'js>, key: Coerced<String>| -> Result<Value<'js>> {
        let value = storage_get(&ctx, &s, key.0)?;
        text_or_null(&ctx, value)
    };
    global.set("cyclr_storage_get", Function::new(ctx.clone(), get)?)?;

    let s = Arc::clone(state);
    let set = move |ctx: Ctx<'js>, key: Coerced<String>, value: Value<'js>| -> Result<()> {
        let value = to_text(&ctx, value)?.unwrap_or_default();
        storage_done(&ctx, &s, HostCall::StorageSet(key.0, value))
    };
    global.set("cyclr_storage_set", Function::new(ctx.clone(), set)?)?;

    let s = Arc::clone(state);
    let delete = move |ctx: Ctx<'js>, key: Coerced<String>| -> Result<()> {
        storage_done(&ctx, &s, HostCall::StorageDelete(key.0))
    };
    global.set("cyclr_storage_delete", Function::new(ctx.clone(), delete)?)?;

    let s = Arc::clone(state);
    let delete_all = move |ctx: Ctx<'js>| -> Result<()> {
        for key in storage_keys(&ctx, &s)? {
            storage_done(&ctx, &s, HostCall::StorageDelete(key))?;
        }
        Ok(())
    };
    global.set("cyclr_storage_delete_all", Function::new(ctx.clone(), delete_all)?)?;

    let s = Arc::clone(state);
    let list_keys = move |ctx: Ctx<'js>| storage_keys(&ctx, &s);
    global.set("cyclr_storage_list_keys", Function::new(ctx.clone(), list_keys)?)?;

    let s = Arc::clone(state);
    let list_values = move |ctx: Ctx<'js>| -> Result<Vec<Value<'js>>> {
        let keys = storage_keys(&ctx, &s)?;
        keys.into_iter()
            .map(|key| {
                let value = storage_get(&ctx, &s, key)?;
                text_or_null(&ctx, value)
            })
            .collect()
    };
    global.set("cyclr_storage_list_values", Function::new(ctx.clone(), list_values)?)?;

    let s = Arc::clone(state);
    let append = move |ctx: Ctx<'js>, key: Coerced<String>, value: Value<'js>| -> Result<String> {
        let mut text = storage_get(&ctx, &s, key.0.clone())?.unwrap_or_default();
        text.push_str(&to_text(&ctx, value)?.unwrap_or_default());
        storage_done(&ctx, &s, HostCall::StorageSet(key.0, text.clone()))?;
        Ok(text)
    };
    global.set("cyclr_storage_append", Function::new(ctx.clone(), append)?)?;

    for (name, sign) in [("cyclr_storage_increment", 1.0), ("cyclr_storage_decrement", -1.0)] {
        let s = Arc::clone(state);
        let step = move |ctx: Ctx<'js>, key: Coerced<String>, amount: Opt<f64>| -> Result<f64> {
            let current = storage_get(&ctx, &s, key.0.clone())?
                .and_then(|t| t.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
            let next = current + sign * amount.0.unwrap_or(1.0);
            storage_done(&ctx, &s, HostCall::StorageSet(key.0, next.to_string()))?;
            Ok(next)
        };
        global.set(name, Function::new(ctx.clone(), step)?)?;
    }
    Ok(())
}

fn text_or_null<'js>(ctx: &Ctx<'js>, value: Option<String>) -> Result<Value<'js>> {
    Ok(match value {
        Some(text) => rquickjs::String::from_str(ctx.clone(), &text)?.into_value(),
        None => Value::new_null(ctx.clone()),
    })
}

fn storage_get(ctx: &Ctx<'_>, state: &State, key: String) -> Result<Option<String>> {
    match state.call(HostCall::StorageGet(key)) {
        Ok(HostReply::Value(value)) => Ok(value),
        Ok(_) => Err(throw(ctx, "storage: unexpected host reply")),
        Err(message) => Err(throw(ctx, &format!("storage failed: {message}"))),
    }
}

fn storage_done(ctx: &Ctx<'_>, state: &State, call: HostCall) -> Result<()> {
    match state.call(call) {
        Ok(HostReply::Done(Ok(()))) => Ok(()),
        Ok(HostReply::Done(Err(message))) | Err(message) => {
            Err(throw(ctx, &format!("storage failed: {message}")))
        }
        Ok(_) => Err(throw(ctx, "storage: unexpected host reply")),
    }
}

fn storage_keys(ctx: &Ctx<'_>, state: &State) -> Result<Vec<String>> {
    match state.call(HostCall::StorageKeys) {
        Ok(HostReply::Keys(keys)) => Ok(keys),
        Ok(_) => Err(throw(ctx, "storage: unexpected host reply")),
        Err(message) => Err(throw(ctx, &format!("storage failed: {message}"))),
    }
}
