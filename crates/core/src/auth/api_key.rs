//! API keys: one or more credential values placed in a header (default `Authorization`), the
//! query string, or a JSON or form body, as the connector says.

use super::{AuthContext, AuthError, header_value};
use crate::Secret;
use crate::connector::{ApiKeyAuth, BodyFormat, KeyLocation, Placement};
use crate::request::OutgoingRequest;
use crate::template::render_secret;

pub(super) fn apply(
    method: &ApiKeyAuth,
    request: &mut OutgoingRequest,
    ctx: AuthContext<'_>,
) -> Result<(), AuthError> {
    let default = [Placement::default()];
    let placements = match method.apply.as_slice() {
        [] => &default[..],
        some => some,
    };
    for placement in placements {
        let value = match &placement.value {
            Some(template) => render_secret(template, ctx.scope()).map_err(AuthError::Template)?,
            None => {
                let first = method.fields.first().map(|f| f.key.as_str()).unwrap_or("api_key");
                ctx.credential(first)?.clone()
            }
        };
        place(placement, value, request)?;
    }
    Ok(())
}

fn place(
    placement: &Placement,
    value: Secret,
    request: &mut OutgoingRequest,
) -> Result<(), AuthError> {
    let name = placement.name.as_deref();
    match placement.location {
        KeyLocation::Header => {
            let name = name.unwrap_or("Authorization");
            let header = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| AuthError::InvalidHeaderValue(name.to_string()))?;
            let value = header_value(name, &value)?;
            request.set_sensitive_header(header, value);
        }
        KeyLocation::Query => {
            let name = name.unwrap_or("api_key");
            request.url.query_pairs_mut().append_pair(name, value.expose());
        }
        KeyLocation::Cookie => super::add_cookie(request, Some(name.unwrap_or("api_key")), &value)?,
        KeyLocation::Body => {
            let name = name.unwrap_or("api_key");
            match placement.format.unwrap_or_default() {
                BodyFormat::Json => put_json(request, name, value)?,
                BodyFormat::Form => put_form(request, name, value)?,
            }
        }
    }
    Ok(())
}

fn put_json(request: &mut OutgoingRequest, name: &str, value: Secret) -> Result<(), AuthError> {
    let mut body = if request.body.is_empty() {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice::<serde_json::Value>(&request.body) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => {
                return Err(AuthError::Body(
                    "the API key goes in a JSON body, but the request body is not a JSON object"
                        .into(),
                ));
            }
        }
    };
    body.insert(name.to_string(), serde_json::Value::String(value.expose().to_string()));
    let bytes = serde_json::to_vec(&body).map_err(|e| AuthError::Body(e.to_string()))?;
    request.body = bytes.into();
    request
        .headers
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    Ok(())
}

fn put_form(request: &mut OutgoingRequest, name: &str, value: Secret) -> Result<(), AuthError> {
    match request.content_type().as_deref() {
        None | Some("application/x-www-form-urlencoded") => {}
        Some(_) if request.body.is_empty() => {}
        Some(_) => {
            return Err(AuthError::Body(
                "the API key goes in a form body, but the request body is not a form".into(),
            ));
        }
    }
    let mut body = request.body.to_vec();
    if !body.is_empty() {
        body.push(b'&');
    }
    let pair: String =
        form_urlencoded::Serializer::new(String::new()).append_pair(name, value.expose()).finish();
    body.extend_from_slice(pair.as_bytes());
    request.body = body.into();
    request.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::connector::{CredentialField, OneOrMany};

    fn method(apply: Vec<Placement>, fields: &[&str]) -> ApiKeyAuth {
        ApiKeyAuth {
            id: None,
            label: None,
            fields: fields
                .iter()
                .map(|k| CredentialField {
                    key: (*k).into(),
                    label: None,
                    secret: true,
                    pattern: None,
                    help: None,
                    example: None,
                    docs_url: None,
                    optional: false,
                })
                .collect(),
            apply: OneOrMany::Many(apply),
        }
    }

    fn run(m: &ApiKeyAuth, r: &mut OutgoingRequest) -> Result<(), AuthError> {
        let creds = BTreeMap::from([
            ("api_key".to_string(), Secret::new("k-123")),
            ("account".to_string(), Secret::new("acc 9")),
        ]);
        let config = BTreeMap::new();
        apply(
            m,
            r,
            AuthContext {
                credentials: &creds,
                config: &config,
                now: std::time::SystemTime::UNIX_EPOCH,
                nonce: "n",
            },
        )
    }

    fn req() -> OutgoingRequest {
        OutgoingRequest::new(http::Method::POST, "https://api.example.com/x?a=1".parse().unwrap())
    }

    #[test]
    fn default_is_authorization_header() {
        let mut r = req();
        run(&method(vec![], &["api_key"]), &mut r).unwrap();
        assert_eq!(r.headers.get("authorization").unwrap(), "k-123");
    }

    #[test]
    fn renamed_header_with_template() {
        let mut r = req();
        let p = Placement {
            name: Some("X-Api-Key".into()),
            value: Some("Token {{ credentials.api_key }}".into()),
            ..Placement::default()
        };
        run(&method(vec![p], &["api_key"]), &mut r).unwrap();
        assert_eq!(r.headers.get("x-api-key").unwrap(), "Token k-123");
        assert!(r.headers.get("x-api-key").unwrap().is_sensitive());
    }

    #[test]
    fn query_and_second_field() {
        let mut r = req();
        let q = Placement {
            location: KeyLocation::Query,
            name: Some("key".into()),
            ..Placement::default()
        };
        let h = Placement {
            name: Some("X-Account".into()),
            value: Some("{{ credentials.account }}".into()),
            ..Placement::default()
        };
        run(&method(vec![q, h], &["api_key", "account"]), &mut r).unwrap();
        assert_eq!(r.url.as_str(), "https://api.example.com/x?a=1&key=k-123");
        assert_eq!(r.headers.get("x-account").unwrap(), "acc 9");
    }

    #[test]
    fn json_body_merges_into_object() {
        let mut r = req();
        r.body = br#"{"q":1}"#.to_vec().into();
        let p = Placement {
            location: KeyLocation::Body,
            name: Some("api_key".into()),
            ..Placement::default()
        };
        run(&method(vec![p], &["api_key"]), &mut r).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v, serde_json::json!({"q": 1, "api_key": "k-123"}));
    }

    #[test]
    fn json_body_refuses_non_object() {
        let mut r = req();
        r.body = b"[1,2]".to_vec().into();
        let p = Placement {
            location: KeyLocation::Body,
            name: Some("k".into()),
            ..Placement::default()
        };
        let err = run(&method(vec![p], &["api_key"]), &mut r).unwrap_err();
        assert!(!err.to_string().contains("k-123"));
    }

    #[test]
    fn form_body_appends() {
        let mut r = req();
        r.body = b"a=1".to_vec().into();
        let p = Placement {
            location: KeyLocation::Body,
            name: Some("key".into()),
            format: Some(BodyFormat::Form),
            value: Some("{{ credentials.account }}".into()),
        };
        run(&method(vec![p], &["api_key", "account"]), &mut r).unwrap();
        assert_eq!(&r.body[..], b"a=1&key=acc+9");
    }
}
