//! Installs the process-wide rustls crypto provider (`ring`), so reqwest and sqlx share one TLS
//! backend.

/// Installs `rustls::crypto::ring::default_provider()` as the process default.
///
/// Idempotent: a provider that is already installed (by an earlier call or by another crate) is
/// left in place.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: some provider is now installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
