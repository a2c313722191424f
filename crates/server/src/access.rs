//! Who is calling: the [`Principal`] the key check puts on every `/v1` request, which the
//! handlers, the audit log and the access log read.

use std::collections::BTreeSet;
use std::net::IpAddr;

use latchkey_engine::EnvironmentId;
use latchkey_store::Scope;

/// The caller of a `/v1` request, as its API key says: put on the request as an extension by
/// the key check, before any handler runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's id (`bootstrap` for `LATCHKEY_API_KEY`); never the key.
    pub key_id: String,
    /// The key's name, as its creator gave it.
    pub key_name: String,
    /// The environment the request acts in: the key's own, or for a key that spans
    /// environments the `X-Latchkey-Environment` header's (absent: `default`).
    pub environment: EnvironmentId,
    /// What the key may do.
    pub scopes: BTreeSet<Scope>,
    /// The address the request came from, when the server knows it.
    pub address: Option<IpAddr>,
}

impl Principal {
    /// The bootstrap administrator (`LATCHKEY_API_KEY`): every scope, in `environment`.
    pub fn bootstrap(environment: EnvironmentId, address: Option<IpAddr>) -> Self {
        Self {
            key_id: "bootstrap".to_owned(),
            key_name: "LATCHKEY_API_KEY".to_owned(),
            environment,
            scopes: Scope::ALL.into_iter().collect(),
            address,
        }
    }

    /// Whether the key holds `scope` (`admin` holds every scope).
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }
}
