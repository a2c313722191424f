//! Session logins (`type: session`): the login request sent with the connection's credentials,
//! and the session it returns. Renewal goes through the same single-flight path as OAuth2
//! refresh (`refresh_connection`), so one login serves every request that found the session
//! expired.

use std::collections::BTreeMap;

use latchkey_core::auth::AuthContext;
use latchkey_core::auth::session::{SESSION_TOKEN, Session, login_request, read_session};
use latchkey_core::connector::SessionAuth;
use latchkey_core::{AuthMethod, Connector, Secret};
use latchkey_store::ConnectionRecord;

use crate::outbound::Target;
use crate::{Engine, EngineError};

/// The connector's session method with this id, if it is one.
pub(crate) fn session_method<'a>(
    connector: &'a Connector,
    auth: Option<&str>,
) -> Option<&'a SessionAuth> {
    match connector.auth_method(auth) {
        Some(AuthMethod::Session(m)) => Some(m),
        _ => None,
    }
}

impl Engine {
    /// Logs in with `credentials` and returns the session. The login goes only to a host the
    /// connector allows.
    pub(crate) async fn session_login(
        &self,
        connector: &Connector,
        auth_method: &str,
        method: &SessionAuth,
        credentials: &BTreeMap<String, Secret>,
        config: &BTreeMap<String, String>,
    ) -> Result<Session, EngineError> {
        let now = self.clock.now().into();
        let target = Target { connector, auth_method, credentials, config, now };
        let base = target.base_url()?;
        let policy = target.host_policy(&base)?;
        let request =
            login_request(method, &base, AuthContext { credentials, config, now, nonce: "" })?;
        let http_request = request
            .into_http()
            .map_err(|e| EngineError::Internal(format!("login request: {e}")))?;
        let response = self.net.send(http_request, &policy).await?;
        let status = response.status.as_u16();
        let headers = response.headers.clone();
        let body = crate::auth_response::read(response, "login endpoint").await?;
        Ok(read_session(method, status, &headers, &body)?)
    }

    /// Logs a connection being created in, putting its session into the record.
    pub(crate) async fn initial_login(
        &self,
        connector: &Connector,
        method: &SessionAuth,
        record: &mut ConnectionRecord,
    ) -> Result<(), EngineError> {
        let session = self
            .session_login(
                connector,
                &record.auth_method,
                method,
                &record.credentials,
                &record.config,
            )
            .await?;
        record.credentials.insert(SESSION_TOKEN.into(), session.token);
        record.expires_at = crate::oauth2::expiry(self.clock.now(), session.lifetime);
        Ok(())
    }
}
