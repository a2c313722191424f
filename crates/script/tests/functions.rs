//! The functions scripts call: http_request, btoa/atob, cyclr_sign/sign, storage, console.

mod common;

use std::collections::BTreeMap;

use common::{RecordingHost, action_globals, engine, globals};
use latchkey_script::{HttpRequest, HttpResponse};
use serde_json::json;

fn eval(host: &RecordingHost, body: &str) -> serde_json::Value {
    let script = format!(
        "function before_action() {{ result = (function() {{ {body} }})(); return true; }}"
    );
    let out = engine()
        .run(
            &script,
            "before_action",
            globals(json!({"result": null, "method_auth_value": "s3cr3t-token"})),
            host,
            None,
        )
        .unwrap();
    out.globals["result"].clone()
}

#[test]
fn http_request_marshals_both_ways() {
    let host = RecordingHost {
        response: Some(HttpResponse {
            status_code: 201,
            headers: BTreeMap::from([("content-type".into(), "application/json".into())]),
            content: "{\"token\":\"t\"}".into(),
        }),
        ..Default::default()
    };
    let result = eval(&host, "var r = http_request({method: 'post', url: 'https://api.example.com/login', headers: {'X-N': 5}, parameters: {q: 'a b'}, data: {user: 'u'}});
        return {status: r.status_code, type: r.headers['content-type'], Type: r.headers['Content-Type'], token: JSON.parse(r.content).token, echoed: r.request.url};");
    assert_eq!(
        result,
        json!({"status": 201, "type": "application/json", "Type": "application/json", "token": "t", "echoed": "https://api.example.com/login"})
    );
    assert_eq!(
        host.requests.lock().unwrap().as_slice(),
        [HttpRequest {
            method: "POST".into(),
            url: "https://api.example.com/login".into(),
            headers: BTreeMap::from([("X-N".into(), "5".into())]),
            parameters: BTreeMap::from([("q".into(), "a b".into())]),
            data: Some("{\"user\":\"u\"}".into()),
        }]
    );
}

#[test]
fn http_request_host_errors_are_catchable_exceptions() {
    let host = RecordingHost::default(); // no response: the host refuses
    let result = eval(
        &host,
        "try { http_request({url: 'https://evil.example/'}); return 'sent'; } catch (e) { return e.message; }",
    );
    assert_eq!(result, json!("http_request failed: host not allowed"));
}

#[test]
fn http_request_refuses_header_line_breaks() {
    let host = RecordingHost::default();
    let result = eval(
        &host,
        "try { http_request({url: 'https://a.example/', headers: {A: 'x\\r\\nB: y'}}); } catch (e) { return e.message; }",
    );
    assert_eq!(result, json!("header A contains a line break"));
    assert!(host.requests.lock().unwrap().is_empty());
}

#[test]
fn btoa_and_atob_follow_cyclrs_documented_charsets() {
    let host = RecordingHost::default();
    let result = eval(&host, "return [btoa('Hĕllō Wōrld'), btoa('Hĕllō Wōrld', 'ascii'), btoa('Hĕllō Wōrld', 'iso-8859-1'),
        atob('SMSVbGzFjSBXxY1ybGQ='), atob(btoa('Hĕllō 😀', 'UTF-16BE'), 'UTF-16BE'), btoa('hi', 'utf-16'), atob(btoa('x+y', 'utf-7'), 'utf-7')];");
    assert_eq!(
        result,
        json!([
            "SMSVbGzFjSBXxY1ybGQ=",
            "SD9sbD8gVz9ybGQ=",
            "SGVsbG8gV29ybGQ=",
            "Hĕllō Wōrld",
            "Hĕllō 😀",
            "aABpAA==",
            "x+y"
        ])
    );
    let result = eval(&host, "try { btoa('x', 'klingon'); } catch (e) { return e.message; }");
    assert_eq!(result, json!("unsupported charset 'klingon'"));
}

#[test]
fn cyclr_sign_hmac_is_base64_and_sign_is_the_same_function() {
    let host = RecordingHost::default();
    let result = eval(
        &host,
        "return [cyclr_sign('HMAC-SHA256', 'Jefe', 'what do ya want for nothing?'), sign('HMAC-SHA1', 'Jefe', 'what do ya want for nothing?', 'hex'), sign === cyclr_sign];",
    );
    // RFC 4231 test case 2 and RFC 2202 test case 2.
    assert_eq!(
        result,
        json!([
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=",
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
            true
        ])
    );
}

#[test]
fn cyclr_sign_rsa_matches_openssl_for_pkcs8_and_pkcs1_keys() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    let read = |name: &str| std::fs::read_to_string(format!("{dir}{name}")).unwrap();
    let host = RecordingHost::default();
    for key_file in ["rsa_pkcs8.pem", "rsa_pkcs1.pem"] {
        for digest in ["sha1", "sha224", "sha256", "sha384", "sha512"] {
            let g = globals(
                json!({"key": read(key_file), "alg": format!("RSA-{}", digest.to_uppercase()), "result": null}),
            );
            // Signed with: printf 'GET&/path&a=1' | openssl dgst -<digest> -sign rsa_pkcs8.pem | base64
            let out = engine()
                .run(
                    "function before_action() { result = cyclr_sign(alg, key, 'GET&/path&a=1'); }",
                    "before_action",
                    g,
                    &host,
                    None,
                )
                .unwrap();
            assert_eq!(
                out.globals["result"],
                json!(read(&format!("rsa_{digest}.b64")).trim()),
                "{key_file} {digest}"
            );
        }
    }
}

#[test]
fn storage_functions_go_through_the_host() {
    let host = RecordingHost::default();
    let result = eval(&host, "cyclr_storage_set('a', 'x'); cyclr_storage_set('n', 5); cyclr_storage_append('a', 'y');
        cyclr_storage_increment('n', 2); cyclr_storage_decrement('n'); cyclr_storage_set('gone', 1); cyclr_storage_delete('gone');
        return [cyclr_storage_get('a'), cyclr_storage_get('n'), cyclr_storage_get('missing'), cyclr_storage_list_keys(), cyclr_storage_list_values()];");
    assert_eq!(result, json!(["xy", "6", null, ["a", "n"], ["xy", "6"]]));
    eval(&host, "cyclr_storage_delete_all();");
    assert!(host.storage.lock().unwrap().is_empty());
}

#[test]
fn console_log_reaches_the_host_with_the_auth_value_redacted() {
    let host = RecordingHost::default();
    eval(&host, "console.log('token', method_auth_value, {a: 1}, 2); console.error('e');");
    assert_eq!(host.logs.lock().unwrap().as_slice(), ["token [redacted] {\"a\":1} 2", "e"]);
}

#[test]
fn globals_survive_a_round_trip_unchanged_when_untouched() {
    let out = engine()
        .run(
            "function before_action() { return true; }",
            "before_action",
            action_globals(),
            &RecordingHost::default(),
            None,
        )
        .unwrap();
    assert_eq!(out.globals, action_globals());
}
