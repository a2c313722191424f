//! Hook semantics: globals in and out, abort, exceptions, signals, header injection, `check`.

mod common;

use common::{RecordingHost, action_globals, engine, globals};
use latchkey_script::{ScriptError, Signal};
use serde_json::json;

#[test]
fn bearer_pattern_sets_the_authorization_header() {
    let script = "function before_action() {\n  method_request_headers.Authorization = 'Bearer ' + method_auth_value;\n  return true;\n}";
    let out = engine()
        .run(script, "before_action", action_globals(), &RecordingHost::default(), None)
        .unwrap();
    assert!(out.defined && !out.aborted && out.signal.is_none());
    assert_eq!(
        out.globals["method_request_headers"],
        json!({"Accept": "application/json", "Authorization": "Bearer s3cr3t-token"})
    );
    assert_eq!(out.globals["method_request"], json!({"name": "x"}));
}

/// Cyclr's examples read `method_request_headers['Content-Type']`; the engine hands headers
/// over with lower-case names. Reads, writes and deletes go to the one entry per header.
#[test]
fn header_names_read_and_write_case_insensitively() {
    let script = r#"function before_action() {
  var seen = [method_request_headers['Content-Type'], method_request_headers['CONTENT-TYPE'],
              'Content-Type' in method_request_headers,
              Object.prototype.hasOwnProperty.call(method_request_headers, 'X-Trace'),
              method_request_headers['X-Missing']];
  method_request_headers['Content-Type'] = 'application/xml';
  method_request_headers['authorization'] = 'Bearer ' + method_auth_value;
  method_request_headers['Authorization'] = 'Bearer ' + method_auth_value + '-2';
  delete method_request_headers['X-TRACE'];
  method_request_headers['X-New'] = 'n';
  method_request = {seen: seen, keys: Object.keys(method_request_headers)};
}"#;
    let mut globals = action_globals();
    globals.insert(
        "method_request_headers".into(),
        json!({"content-type": "application/json", "x-trace": "t1"}),
    );
    let out =
        engine().run(script, "before_action", globals, &RecordingHost::default(), None).unwrap();
    assert_eq!(
        out.globals["method_request_headers"],
        json!({"content-type": "application/xml", "authorization": "Bearer s3cr3t-token-2", "X-New": "n"})
    );
    assert_eq!(
        out.globals["method_request"],
        json!({
            "seen": ["application/json", "application/json", true, true, null],
            "keys": ["content-type", "authorization", "X-New"],
        })
    );
}

#[test]
fn response_header_names_read_case_insensitively() {
    let script = r#"function after_action() {
  method_response = {type: method_response_headers['Content-Type']};
  method_response_headers['X-RateLimit-Remaining'] = '0';
}"#;
    let globals = globals(json!({
        "method_response": null,
        "method_response_headers": {"content-type": "text/csv", "x-ratelimit-remaining": "9"},
    }));
    let out =
        engine().run(script, "after_action", globals, &RecordingHost::default(), None).unwrap();
    assert_eq!(out.globals["method_response"], json!({"type": "text/csv"}));
    assert_eq!(
        out.globals["method_response_headers"],
        json!({"content-type": "text/csv", "x-ratelimit-remaining": "0"})
    );
}

#[test]
fn a_missing_event_is_not_defined_and_leaves_globals() {
    let out = engine()
        .run(
            "function after_action() { return true; }",
            "before_action",
            action_globals(),
            &RecordingHost::default(),
            None,
        )
        .unwrap();
    assert!(!out.defined);
    assert_eq!(out.globals, action_globals());
}

#[test]
fn returning_false_aborts_and_other_values_do_not() {
    let e = engine();
    let host = RecordingHost::default();
    let out = e
        .run(
            "function before_action() { return false; }",
            "before_action",
            action_globals(),
            &host,
            None,
        )
        .unwrap();
    assert!(out.aborted);
    let out = e
        .run(
            "function before_action() { return 0; }",
            "before_action",
            action_globals(),
            &host,
            None,
        )
        .unwrap();
    assert!(!out.aborted);
    let out = e
        .run("function before_action() {}", "before_action", action_globals(), &host, None)
        .unwrap();
    assert!(!out.aborted);
}

#[test]
fn a_script_may_replace_whole_globals() {
    let script = "function after_action() { method_response = {items: method_response.data.length}; method_request_parameters = {page: 2}; return true; }";
    let mut g = action_globals();
    g.insert("method_response".into(), json!({"data": [1, 2, 3]}));
    let out = engine().run(script, "after_action", g, &RecordingHost::default(), None).unwrap();
    assert_eq!(out.globals["method_response"], json!({"items": 3}));
    assert_eq!(out.globals["method_request_parameters"], json!({"page": 2}));
}

#[test]
fn after_error_can_downgrade_an_error() {
    let script = "function after_error() { if (method_error.statusCode === 404) { method_error.isError = false; method_error.isSuccess = true; method_error.content = '[]'; } return true; }";
    let g = globals(
        json!({"method_error": {"statusCode": 404, "reasonPhrase": "Not Found", "content": "", "isError": true, "isWarning": false, "isSuccess": false}}),
    );
    let out = engine().run(script, "after_error", g, &RecordingHost::default(), None).unwrap();
    assert_eq!(
        out.globals["method_error"],
        json!({"statusCode": 404, "reasonPhrase": "Not Found", "content": "[]", "isError": false, "isWarning": false, "isSuccess": true})
    );
}

#[test]
fn thrown_errors_and_strings_give_their_message() {
    let e = engine();
    let host = RecordingHost::default();
    let err = e
        .run(
            "function before_action() { throw new Error('no account id'); }",
            "before_action",
            action_globals(),
            &host,
            None,
        )
        .unwrap_err();
    assert_eq!(err, ScriptError::Thrown("no account id".into()));
    let err = e
        .run(
            "function before_action() { throw 'plain'; }",
            "before_action",
            action_globals(),
            &host,
            None,
        )
        .unwrap_err();
    assert_eq!(err, ScriptError::Thrown("plain".into()));
    let err = e
        .run("function before_action() { null.x; }", "before_action", action_globals(), &host, None)
        .unwrap_err();
    assert!(matches!(err, ScriptError::Thrown(m) if m.contains("null")));
}

#[test]
fn thrown_messages_do_not_carry_the_auth_value() {
    let err = engine()
        .run(
            "function before_action() { throw new Error('bad key ' + method_auth_value); }",
            "before_action",
            action_globals(),
            &RecordingHost::default(),
            None,
        )
        .unwrap_err();
    assert_eq!(err, ScriptError::Thrown("bad key [redacted]".into()));
}

#[test]
fn auth_exceptions_become_signals() {
    let e = engine();
    let host = RecordingHost::default();
    let out = e
        .run("function after_action() { if (method_response.error === 'invalid_grant') throw new AuthRefreshException(); return true; }", "after_action",
            globals(json!({"method_response": {"error": "invalid_grant"}})), &host, None)
        .unwrap();
    assert_eq!(out.signal, Some(Signal::AuthRefresh));
    let out = e
        .run(
            "function after_error() { throw new AuthSessionException('logged out'); }",
            "after_error",
            action_globals(),
            &host,
            None,
        )
        .unwrap();
    assert_eq!(out.signal, Some(Signal::AuthSession));
    // An exception class is still an Error a script can catch.
    let out = e.run("function after_error() { try { throw new AuthRefreshException(); } catch (e) { return e instanceof Error; } }", "after_error", action_globals(), &host, None).unwrap();
    assert_eq!(out.signal, None);
}

#[test]
fn header_values_with_line_breaks_fail_the_run() {
    let e = engine();
    let host = RecordingHost::default();
    let err = e
        .run(
            "function before_action() { method_request_headers['X-Evil'] = 'a\\r\\nHost: evil'; }",
            "before_action",
            action_globals(),
            &host,
            None,
        )
        .unwrap_err();
    assert_eq!(err, ScriptError::Thrown("header X-Evil contains a line break".into()));
    let err = e.run("function before_action() { method_request_headers = {Authorization: 'Bearer x\\ny'}; }", "before_action", action_globals(), &host, None).unwrap_err();
    assert!(matches!(err, ScriptError::Thrown(m) if m.contains("line break")));
}

#[test]
fn check_reports_the_line_of_a_syntax_error() {
    let e = engine();
    assert_eq!(e.check("function before_action() {\n  return true;\n}\n"), Ok(()));
    match e.check("function before_action() {\n  var x = ;\n  return true;\n}") {
        Err(ScriptError::Syntax { line, message }) => {
            assert_eq!(line, 2, "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    // A script whose top level would loop forever is only parsed, not run.
    assert_eq!(e.check("while (true) {}"), Ok(()));
}

#[test]
fn run_reports_a_syntax_error_with_its_line_and_a_runtime_one_as_thrown() {
    let e = engine();
    let host = RecordingHost::default();
    let err = e
        .run("\n\nfunction before_action( {", "before_action", action_globals(), &host, None)
        .unwrap_err();
    assert!(matches!(err, ScriptError::Syntax { line: 3, .. }), "{err:?}");
    let err = e
        .run(
            "function before_action() { JSON.parse('{'); }",
            "before_action",
            action_globals(),
            &host,
            None,
        )
        .unwrap_err();
    assert!(matches!(err, ScriptError::Thrown(_)), "{err:?}");
}
