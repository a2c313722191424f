//! Fuzzes header building in the core auth strategies: API-key placements (header, query,
//! cookie, body) with `{{ … }}` value templates over hostile credentials and config, Basic
//! with fixed halves, and Bearer. Whatever the values, a strategy either refuses with an error
//! or yields a request the HTTP layer can send.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use latchkey_core::auth::{AuthContext, apply};
use latchkey_core::connector::{
    ApiKeyAuth, AuthMethod, BasicAuth, BasicPart, BearerAuth, BodyFormat, CredentialField,
    KeyLocation, OneOrMany, Placement,
};
use latchkey_core::{OutgoingRequest, Secret};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Location {
    Header,
    Query,
    Body,
    Cookie,
}

#[derive(Debug, Arbitrary)]
struct FuzzPlacement<'a> {
    location: Location,
    name: Option<&'a str>,
    value: Option<&'a str>,
    form: Option<bool>,
}

#[derive(Debug, Arbitrary)]
enum Method<'a> {
    ApiKey { field: &'a str, placements: Vec<FuzzPlacement<'a>> },
    Basic { username: Option<&'a str>, password: Option<&'a str> },
    Bearer,
}

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    method: Method<'a>,
    credentials: Vec<(&'a str, &'a str)>,
    config: Vec<(&'a str, &'a str)>,
    content_type: Option<&'a str>,
    body: &'a [u8],
}

fn placement(p: &FuzzPlacement<'_>) -> Placement {
    Placement {
        location: match p.location {
            Location::Header => KeyLocation::Header,
            Location::Query => KeyLocation::Query,
            Location::Body => KeyLocation::Body,
            Location::Cookie => KeyLocation::Cookie,
        },
        name: p.name.map(str::to_owned),
        value: p.value.map(str::to_owned),
        format: p.form.map(|form| if form { BodyFormat::Form } else { BodyFormat::Json }),
    }
}

fuzz_target!(|input: Input<'_>| {
    let method = match &input.method {
        Method::ApiKey { field, placements } => AuthMethod::ApiKey(ApiKeyAuth {
            id: None,
            label: None,
            fields: vec![CredentialField {
                key: (*field).to_owned(),
                label: None,
                secret: true,
                pattern: None,
                help: None,
                example: None,
                docs_url: None,
                optional: false,
            }],
            apply: OneOrMany::Many(placements.iter().take(4).map(placement).collect()),
        }),
        Method::Basic { username, password } => AuthMethod::Basic(BasicAuth {
            username: BasicPart { value: username.map(str::to_owned), ..BasicPart::default() },
            password: BasicPart { value: password.map(str::to_owned), ..BasicPart::default() },
            ..BasicAuth::default()
        }),
        Method::Bearer => AuthMethod::Bearer(BearerAuth::default()),
    };
    let credentials: BTreeMap<String, Secret> =
        input.credentials.iter().take(8).map(|(k, v)| ((*k).to_owned(), Secret::new(*v))).collect();
    let config: BTreeMap<String, String> =
        input.config.iter().take(8).map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let mut request = OutgoingRequest::new(
        http::Method::POST,
        "https://api.example.com/v1/items?x=1".parse().unwrap(),
    );
    if let Some(content_type) = input.content_type
        && let Ok(value) = http::HeaderValue::from_str(content_type)
    {
        request.headers.insert(http::header::CONTENT_TYPE, value);
    }
    request.body = input.body.to_vec().into();
    let ctx = AuthContext {
        credentials: &credentials,
        config: &config,
        now: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
        nonce: "fuzz-nonce",
    };
    match apply(&method, &mut request, ctx) {
        Ok(()) => {
            let host = request.url.host_str().map(str::to_owned);
            assert_eq!(host.as_deref(), Some("api.example.com"), "the host moved");
            request.into_http().expect("a strategy built a request the HTTP layer refuses");
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
    let _ = latchkey_core::auth::auth_value(&method, ctx);
});
