//! Fuzzes the connector YAML loader (`parse_connector`): YAML parsing, `deny_unknown_fields`,
//! validation, templates and patterns, then the lints and the auth methods' field lists of any
//! connector it accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    match latchkey_core::connector::parse_connector(source, "fuzz.yaml") {
        Ok(connector) => {
            let _ = latchkey_core::connector::lint(&connector, "fuzz");
            for method in &connector.auth {
                let _ = (method.id(), method.kind(), method.fields());
            }
            let _ = connector.auth_method(None);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
