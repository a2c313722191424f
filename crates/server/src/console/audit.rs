//! The console's audit entries: each change an operator makes is recorded under the same
//! action name as its REST route (see [`crate::audit::ACTIONS`]), by the operator's identity
//! (the API key's id, or `oidc:<subject>`), with `detail` saying it came from the console.
//! Sign-in and sign-out are `console.sign_in` and `console.sign_out`.

use std::net::IpAddr;

use http::StatusCode;
use latchkey_store::{AuditObject, AuditOutcome, AuditRecord, ConsoleSessionRecord};

use super::Operator;
use crate::AppState;

/// What the `detail` of a console entry says.
const DETAIL: &str = "console";

/// Records that `operator` did `action` to the `kind` object `id`, answered `status`.
pub async fn record(
    state: &AppState,
    operator: &Operator,
    action: &str,
    object: Option<(&str, &str)>,
    status: StatusCode,
) {
    write(
        state,
        &operator.session,
        operator.environment.as_str(),
        operator.address,
        action,
        object,
        status,
    )
    .await;
}

/// Records a sign-in or sign-out of `session`.
pub async fn record_session(
    state: &AppState,
    session: &ConsoleSessionRecord,
    address: Option<IpAddr>,
    action: &str,
) {
    let environment = session.environment.clone();
    write(state, session, &environment, address, action, None, StatusCode::OK).await;
}

async fn write(
    state: &AppState,
    session: &ConsoleSessionRecord,
    environment: &str,
    address: Option<IpAddr>,
    action: &str,
    object: Option<(&str, &str)>,
    status: StatusCode,
) {
    let record = AuditRecord {
        at: state.engine.clock().now(),
        actor_id: session.actor_id.clone(),
        actor_name: session.actor_name.clone(),
        action: action.to_owned(),
        object: object.map(|(kind, id)| AuditObject { kind: kind.to_owned(), id: id.to_owned() }),
        environment: Some(environment.to_owned()),
        address: address.map(|a| a.to_string()),
        outcome: AuditOutcome::of_status(status.as_u16()),
        status: Some(status.as_u16()),
        detail: Some(DETAIL.to_owned()),
    };
    if let Err(error) = state.engine.audit().append(&record).await {
        metrics::counter!(crate::audit::AUDIT_WRITE_FAILURES, "action" => action.to_owned())
            .increment(1);
        tracing::error!(%action, %error, "cannot write the console's audit entry");
    }
}
