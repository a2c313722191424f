//! OpenID Connect sign-in for console operators (OpenID Connect Core 1.0 §3.1, the
//! authorization code flow): a redirect to the issuer with `state`, `nonce` and PKCE S256
//! (RFC 7636), then the code exchanged at the token endpoint with the client's secret
//! (`client_secret_basic`), and the ID token's signature checked against the issuer's JWKS and
//! its `iss`, `aud`, `exp` and `nonce` checked (§3.1.3.7). An operator is let in only when
//! their `sub`, or their `email` if the issuer says it is verified, is on the allowed list.
//! Written over `net` and `jsonwebtoken` because the flow is a few requests and the engine's
//! OAuth code is built for connections, not for sign-in.

use base64::Engine as _;
use latchkey_core::Secret;
use latchkey_core::oauth2::PkceVerifier;
use latchkey_net::HostPolicy;
use serde::Deserialize;
use url::Url;

use crate::Engine;

/// What the console's OpenID Connect sign-in is configured with (`--console-oidc-*`).
#[derive(Debug, Clone)]
pub struct OperatorOidc {
    /// The issuer URL; its discovery document names the endpoints.
    pub issuer: Url,
    /// The console's client id at the issuer.
    pub client_id: String,
    /// Its client secret.
    pub client_secret: Secret,
    /// Who may sign in: subjects (`sub:…` or a bare value) and verified emails (`email:…` or a
    /// bare value holding `@`).
    pub allowed: Vec<String>,
}

/// Why an OpenID Connect sign-in failed, in words safe to show the person signing in.
#[derive(Debug, thiserror::Error)]
pub enum OperatorSignInError {
    /// The issuer could not be reached or answered something unusable.
    #[error("the identity provider could not be used: {0}")]
    Provider(String),
    /// The response does not belong to a sign-in started in this browser.
    #[error("this sign-in response does not match a sign-in started in this browser; start again")]
    StateMismatch,
    /// The provider sent an error back (e.g. `access_denied`).
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    /// The ID token did not verify.
    #[error("the identity provider's ID token did not verify: {0}")]
    InvalidIdToken(String),
    /// The person is not an operator.
    #[error("{0} is not allowed to operate this Latchkey")]
    NotAllowed(String),
}

/// What the browser keeps (in an HttpOnly cookie) between the redirect and the callback.
#[derive(Debug)]
pub struct PendingSignIn {
    /// The `state` sent.
    pub state: Secret,
    /// The `nonce` sent, which the ID token must repeat.
    pub nonce: Secret,
    /// The PKCE verifier.
    pub verifier: Secret,
}

impl PendingSignIn {
    /// The three values as one cookie value (`state.nonce.verifier`, all base64url).
    pub fn to_cookie(&self) -> String {
        format!("{}.{}.{}", self.state.expose(), self.nonce.expose(), self.verifier.expose())
    }

    /// The values read back from a cookie value; `None` if it is not one.
    pub fn from_cookie(value: &str) -> Option<Self> {
        let mut parts = value.split('.');
        let (state, nonce, verifier) = (parts.next()?, parts.next()?, parts.next()?);
        let unreserved = |s: &str| {
            s.len() >= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        (parts.next().is_none() && unreserved(state) && unreserved(nonce) && unreserved(verifier))
            .then(|| Self {
                state: Secret::new(state),
                nonce: Secret::new(nonce),
                verifier: Secret::new(verifier),
            })
    }
}

/// The operator an ID token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedInOperator {
    /// `sub`.
    pub subject: String,
    /// `email`, if given and not marked unverified.
    pub email: Option<String>,
    /// `name`, if given.
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    nonce: Option<String>,
    email: Option<String>,
    email_verified: Option<bool>,
    name: Option<String>,
}

fn provider(what: &str, e: impl std::fmt::Display) -> OperatorSignInError {
    OperatorSignInError::Provider(format!("{what}: {e}"))
}

impl OperatorOidc {
    /// Whether `operator` is on the allowed list.
    pub fn allows(&self, operator: &SignedInOperator) -> bool {
        self.allowed.iter().any(|entry| {
            let entry = entry.trim();
            if let Some(sub) = entry.strip_prefix("sub:") {
                return sub == operator.subject;
            }
            let email = entry.strip_prefix("email:").or(entry.contains('@').then_some(entry));
            match email {
                Some(email) => {
                    operator.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(email))
                }
                None => entry == operator.subject,
            }
        })
    }
}

impl Engine {
    async fn oidc_json<T: serde::de::DeserializeOwned>(
        &self,
        request: http::Request<bytes::Bytes>,
        what: &'static str,
    ) -> Result<T, OperatorSignInError> {
        let url = Url::parse(&request.uri().to_string()).map_err(|e| provider(what, e))?;
        let policy = HostPolicy::for_url(&url).map_err(|e| provider(what, e))?;
        let response = self.net.send(request, &policy).await.map_err(|e| provider(what, e))?;
        let status = response.status;
        let body: serde_json::Value = response
            .limited_to(crate::AUTH_RESPONSE_LIMIT)
            .json()
            .await
            .map_err(|e| provider(what, e))?;
        if !status.is_success() {
            let error = body.get("error").and_then(|v| v.as_str()).unwrap_or("no error code");
            return Err(provider(what, format!("HTTP {status} ({error})")));
        }
        serde_json::from_value(body).map_err(|e| provider(what, e))
    }

    async fn oidc_discovery(
        &self,
        config: &OperatorOidc,
    ) -> Result<Discovery, OperatorSignInError> {
        let issuer = config.issuer.as_str().trim_end_matches('/');
        let request = http::Request::get(format!("{issuer}/.well-known/openid-configuration"))
            .header(http::header::ACCEPT, "application/json")
            .body(bytes::Bytes::new())
            .map_err(|e| provider("discovery", e))?;
        let doc: Discovery = self.oidc_json(request, "discovery").await?;
        if doc.issuer.trim_end_matches('/') != issuer {
            return Err(provider("discovery", "the document names another issuer"));
        }
        Ok(doc)
    }

    /// Starts a sign-in: the issuer's authorization URL to send the browser to, and what the
    /// browser must bring back.
    pub async fn begin_operator_sign_in(
        &self,
        config: &OperatorOidc,
        redirect_uri: &str,
    ) -> Result<(Url, PendingSignIn), OperatorSignInError> {
        let doc = self.oidc_discovery(config).await?;
        let mut octets = [0u8; 32];
        rand::fill(&mut octets);
        let verifier = PkceVerifier::from_random(octets);
        let pending = PendingSignIn {
            state: Secret::new(crate::random_token(32)),
            nonce: Secret::new(crate::random_token(32)),
            verifier: verifier.secret().clone(),
        };
        let mut url = Url::parse(&doc.authorization_endpoint)
            .map_err(|e| provider("authorization_endpoint", e))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &config.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "openid email profile")
            .append_pair("state", pending.state.expose())
            .append_pair("nonce", pending.nonce.expose())
            .append_pair("code_challenge", &verifier.challenge())
            .append_pair("code_challenge_method", "S256");
        Ok((url, pending))
    }

    /// Finishes a sign-in from the callback's query: checks `state`, exchanges the code,
    /// verifies the ID token and the allowed list.
    pub async fn finish_operator_sign_in(
        &self,
        config: &OperatorOidc,
        pending: &PendingSignIn,
        query: &std::collections::BTreeMap<String, String>,
        redirect_uri: &str,
    ) -> Result<SignedInOperator, OperatorSignInError> {
        let state = query.get("state").map(Secret::new);
        if state.as_ref() != Some(&pending.state) {
            return Err(OperatorSignInError::StateMismatch);
        }
        if let Some(error) = query.get("error") {
            let safe: String =
                error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
            return Err(OperatorSignInError::Refused(safe));
        }
        let code =
            query.get("code").ok_or_else(|| OperatorSignInError::Refused("no code".into()))?;
        let doc = self.oidc_discovery(config).await?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_verifier", pending.verifier.expose())
            .finish();
        // RFC 6749 §2.3.1: the client id and secret form-encoded, then Basic.
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            enc(&config.client_id),
            enc(config.client_secret.expose())
        ));
        let mut authorization = http::HeaderValue::from_str(&format!("Basic {basic}"))
            .map_err(|e| provider("token request", e))?;
        authorization.set_sensitive(true);
        let request = http::Request::post(doc.token_endpoint.as_str())
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::AUTHORIZATION, authorization)
            .body(bytes::Bytes::from(form))
            .map_err(|e| provider("token request", e))?;
        #[derive(Deserialize)]
        struct TokenAnswer {
            id_token: String,
        }
        let answer: TokenAnswer = self.oidc_json(request, "token endpoint").await?;
        let jwks_request = http::Request::get(doc.jwks_uri.as_str())
            .header(http::header::ACCEPT, "application/json")
            .body(bytes::Bytes::new())
            .map_err(|e| provider("JWKS", e))?;
        let jwks: jsonwebtoken::jwk::JwkSet = self.oidc_json(jwks_request, "JWKS").await?;
        let claims = verify_id_token(&answer.id_token, &jwks, &doc.issuer, &config.client_id)?;
        if claims.nonce.as_deref().map(Secret::new) != Some(pending.nonce.clone()) {
            return Err(OperatorSignInError::InvalidIdToken(
                "its nonce is not this sign-in's".into(),
            ));
        }
        let operator = SignedInOperator {
            subject: claims.sub,
            email: claims.email.filter(|_| claims.email_verified != Some(false)),
            name: claims.name,
        };
        if !config.allows(&operator) {
            let who =
                operator.email.clone().unwrap_or_else(|| format!("subject {}", operator.subject));
            return Err(OperatorSignInError::NotAllowed(who));
        }
        Ok(operator)
    }
}

/// The claims of `token` once its signature (by a key of `jwks`, with an asymmetric
/// algorithm), issuer, audience and expiry check out.
fn verify_id_token(
    token: &str,
    jwks: &jsonwebtoken::jwk::JwkSet,
    issuer: &str,
    client_id: &str,
) -> Result<IdClaims, OperatorSignInError> {
    use jsonwebtoken::Algorithm;
    let invalid = |e: &dyn std::fmt::Display| OperatorSignInError::InvalidIdToken(e.to_string());
    let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(&e))?;
    if matches!(header.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return Err(invalid(&"a symmetric signature is not accepted"));
    }
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid),
        None if jwks.keys.len() == 1 => jwks.keys.first(),
        None => None,
    }
    .ok_or_else(|| invalid(&"no key of the issuer's JWKS signed it"))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| invalid(&e))?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<IdClaims>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| invalid(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(allowed: &[&str]) -> OperatorOidc {
        OperatorOidc {
            issuer: "https://id.example".parse().unwrap(),
            client_id: "console".into(),
            client_secret: Secret::new("s"),
            allowed: allowed.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn operator(subject: &str, email: Option<&str>) -> SignedInOperator {
        SignedInOperator { subject: subject.into(), email: email.map(Into::into), name: None }
    }

    #[test]
    fn the_allowed_list_takes_subjects_and_emails() {
        let c = config(&["sub:alice", "ops@example.com", "email:Bob@Example.com", "carol"]);
        assert!(c.allows(&operator("alice", None)));
        assert!(c.allows(&operator("x", Some("ops@example.com"))));
        assert!(c.allows(&operator("y", Some("bob@example.com"))));
        assert!(c.allows(&operator("carol", None)));
        assert!(!c.allows(&operator("mallory", Some("mallory@example.com"))));
        assert!(!c.allows(&operator("ops@example.com", None)), "an email entry is not a subject");
        assert!(!config(&[]).allows(&operator("alice", None)));
    }

    #[test]
    fn pending_values_round_trip_through_the_cookie() {
        let pending = PendingSignIn {
            state: Secret::new(crate::random_token(32)),
            nonce: Secret::new(crate::random_token(32)),
            verifier: Secret::new(crate::random_token(32)),
        };
        let back = PendingSignIn::from_cookie(&pending.to_cookie()).unwrap();
        assert_eq!(back.state, pending.state);
        assert_eq!(back.verifier, pending.verifier);
        assert!(PendingSignIn::from_cookie("a.b.c").is_none());
        assert!(PendingSignIn::from_cookie(&format!("{}.x", pending.to_cookie())).is_none());
    }
}
