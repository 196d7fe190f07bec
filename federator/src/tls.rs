//! What can go wrong building a TLS configuration from certificate files: the
//! agents' client (`[tls]`), the API's server (`[api]`), the notification receivers.

/// A TLS configuration that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file the configuration needs is not set.
    #[error("{key} is not set, and an agent URL is https:// (run check-config)")]
    NotSet { key: &'static str },
    /// A certificate or key file cannot be read.
    #[error(transparent)]
    File(#[from] pga_config::pem::FileError),
    /// rustls refuses what was read; `what` says which part.
    #[error("{what}: {source}")]
    Unusable {
        what: String,
        #[source]
        source: rustls::Error,
    },
    /// No CA certificate was found on the system, and none was configured.
    #[error("no system CA certificates found (install ca-certificates, or set ca_file)")]
    NoSystemRoots,
}

/// Maps a rustls error to [`TlsError::Unusable`] with `what`.
pub fn unusable(what: impl Into<String>) -> impl FnOnce(rustls::Error) -> TlsError {
    move |source| TlsError::Unusable {
        what: what.into(),
        source,
    }
}
