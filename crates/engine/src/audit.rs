//! The audit log, as the server and the CLI use it: appending an entry stamped by the engine's
//! clock, listing, retention and verification (the chain itself is the store's, see
//! [`latchkey_store::audit`]).

use latchkey_store::{AuditEntry, AuditFilter, AuditPage, AuditRecord, AuditTrim, AuditVerdict};

use crate::{Engine, EngineError};

/// The engine's audit log, from [`Engine::audit`].
#[derive(Debug, Clone, Copy)]
pub struct Audit<'e> {
    pub(crate) engine: &'e Engine,
}

impl Audit<'_> {
    /// Appends `record` to the chain (its `at` as given) and returns the entry written.
    pub async fn append(&self, record: &AuditRecord) -> Result<AuditEntry, EngineError> {
        Ok(self.engine.store.append_audit(record).await?)
    }

    /// One page of the entries that match `filter`.
    pub async fn list(
        &self,
        filter: &AuditFilter,
        page: &AuditPage,
    ) -> Result<Vec<AuditEntry>, EngineError> {
        Ok(self.engine.store.list_audit(filter, page).await?)
    }

    /// Removes the entries older than `retention` (by the engine's clock), keeping the chain
    /// verifiable from an anchor, and records the trim as an entry when it removed any.
    pub async fn trim(&self, retention: std::time::Duration) -> Result<AuditTrim, EngineError> {
        let now = self.engine.clock.now();
        // A retention longer than the calendar keeps everything.
        let before = time::Duration::try_from(retention)
            .ok()
            .and_then(|retention| now.checked_sub(retention))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        Ok(self.engine.store.trim_audit(before, now).await?)
    }

    /// Checks the whole chain: the first broken entry, or how many verified.
    pub async fn verify(&self) -> Result<AuditVerdict, EngineError> {
        Ok(self.engine.store.verify_audit().await?)
    }
}

impl Engine {
    /// Records what became of a deleted connection's tokens as a `connection.revocation` entry
    /// by Latchkey itself (so it is there whoever deleted it: the API, the CLI or an embedding
    /// program). A failed write is logged: the deletion has happened either way.
    pub(crate) async fn audit_revocation(
        &self,
        record: &latchkey_store::ConnectionRecord,
        revocation: &crate::Revocation,
    ) {
        let outcome = match revocation {
            crate::Revocation::Failed(_) => latchkey_store::AuditOutcome::Failed,
            _ => latchkey_store::AuditOutcome::Success,
        };
        let entry = AuditRecord {
            at: self.clock.now(),
            actor_id: latchkey_store::audit::SYSTEM_ACTOR.to_owned(),
            actor_name: "revocation".to_owned(),
            action: "connection.revocation".to_owned(),
            object: Some(latchkey_store::AuditObject {
                kind: "connection".to_owned(),
                id: record.id.clone(),
            }),
            environment: Some(record.environment.clone()),
            address: None,
            outcome,
            status: None,
            detail: Some(revocation.to_string()),
        };
        if let Err(error) = self.store.append_audit(&entry).await {
            tracing::error!(connection = %record.id, %error, "cannot record the revocation in the audit log");
        }
    }
}
