//! The authorization request, [RFC 6749 §4.1.1](https://www.rfc-editor.org/rfc/rfc6749#section-4.1.1)
//! with PKCE (RFC 7636 §4.3), plus the connector's extra parameters.

use url::Url;

use crate::connector::OAuth2Auth;

/// What the authorization request is built from.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizeRequest<'a> {
    /// The provider's authorization endpoint.
    pub endpoint: &'a Url,
    /// The integration's client id.
    pub client_id: &'a str,
    /// Latchkey's callback.
    pub redirect_uri: &'a str,
    /// Scopes to request.
    pub scopes: &'a [String],
    /// The single-use state.
    pub state: &'a str,
    /// The S256 challenge, when PKCE is on.
    pub code_challenge: Option<&'a str>,
}

/// The URL the user's browser is sent to.
pub fn authorize_url(method: &OAuth2Auth, request: AuthorizeRequest<'_>) -> Url {
    let mut url = request.endpoint.clone();
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("response_type", "code");
        query.append_pair("client_id", request.client_id);
        query.append_pair("redirect_uri", request.redirect_uri);
        if !request.scopes.is_empty() {
            query.append_pair("scope", &request.scopes.join(&method.scope_separator));
        }
        query.append_pair("state", request.state);
        if let Some(challenge) = request.code_challenge {
            query.append_pair("code_challenge", challenge);
            query.append_pair("code_challenge_method", "S256");
        }
        for (name, value) in &method.authorize_params {
            query.append_pair(name, value);
        }
    }
    url
}
