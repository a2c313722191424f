//! OAuth 2.0 as pure functions: the authorization URL, token requests and token-response
//! parsing, and token revocation. They build and read values; the engine sends them.

mod authorize;
mod pkce;
mod resource;
mod revocation;
mod token;

pub use authorize::{AuthorizeRequest, authorize_url};
pub use pkce::PkceVerifier;
pub use resource::{
    BearerChallenge, authorization_server_metadata_urls, protected_resource_metadata_urls,
    same_identifier,
};
pub use revocation::{
    RevocationAnswer, TokenTypeHint, parse_revocation_response, revocation_request,
};
pub use token::{
    Client, DeviceAuthorization, MAX_TOKEN_LIFETIME, TokenError, TokenGrant, TokenSet,
    client_assertion, device_authorization_request, jwt_bearer_assertion, lookup,
    parse_device_authorization, parse_token_response, token_lifetime, token_request,
};
