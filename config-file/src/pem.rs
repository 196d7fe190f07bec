//! Certificates, private keys and revocation lists named by a configuration key,
//! read from PEM files (a CRL may also be DER), with errors that name the key, the
//! file, what is wrong and the fix.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

/// A file named by a configuration key is missing, unreadable or not what the key
/// wants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} = {}: {problem}; fix: {fix}", path.display())]
pub struct FileError {
    /// The configuration key naming the file (`endpoint.key_file`).
    pub key: String,
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

impl FileError {
    /// An error of the file `path` that `key` names.
    pub fn new(key: &str, path: &Path, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        FileError {
            key: key.to_owned(),
            path: path.to_owned(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// Reads a whole file, with the error naming the key and the file.
pub fn read_file(key: &str, path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => FileError::new(
            key,
            path,
            "does not exist",
            "create the file, or correct the path",
        ),
        std::io::ErrorKind::PermissionDenied => FileError::new(
            key,
            path,
            "cannot be read: permission denied",
            "make it readable by the user the service runs as (e.g. chgrp pganalytics FILE \
             and chmod 0640 FILE)",
        ),
        _ => FileError::new(key, path, format!("cannot be read: {e}"), "check the path"),
    })
}

/// Every certificate (PEM `CERTIFICATE` block) of a file; at least one.
pub fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, FileError> {
    let bytes = read_file(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            FileError::new(
                key,
                path,
                format!("is not valid PEM: {e}"),
                "point it at a PEM file of -----BEGIN CERTIFICATE----- blocks",
            )
        })?;
    if certs.is_empty() {
        return Err(FileError::new(
            key,
            path,
            "holds no certificate (no -----BEGIN CERTIFICATE----- block)",
            "point it at a PEM certificate file; convert a DER one with \
             `openssl x509 -inform der -in FILE -out FILE.pem`",
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1), unencrypted.
pub fn read_private_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, FileError> {
    let bytes = read_file(key, path)?;
    if bytes
        .windows(b"ENCRYPTED PRIVATE KEY".len())
        .any(|w| w == b"ENCRYPTED PRIVATE KEY")
    {
        return Err(FileError::new(
            key,
            path,
            "is encrypted, and a service cannot ask for a passphrase",
            "store it unencrypted, readable only by the service: \
             `openssl pkey -in FILE -out FILE.plain`, then chmod 0600",
        ));
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        let problem = match e {
            pem::Error::NoItemsFound => "holds no private key (no -----BEGIN \
                 PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY block)"
                .to_owned(),
            e => format!("is not valid PEM: {e}"),
        };
        FileError::new(
            key,
            path,
            problem,
            "point it at the PEM private key of the certificate it goes with",
        )
    })
}

/// The revocation lists of a file: PEM `X509 CRL` blocks, or one DER CRL; at least
/// one. Their contents are not checked here.
pub fn read_crls(
    key: &str,
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, FileError> {
    let bytes = read_file(key, path)?;
    let is_pem = bytes
        .windows(b"-----BEGIN".len())
        .any(|w| w == b"-----BEGIN");
    let crls: Vec<CertificateRevocationListDer<'static>> = if is_pem {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                FileError::new(
                    key,
                    path,
                    format!("is not valid PEM: {e}"),
                    "point it at a PEM file of -----BEGIN X509 CRL----- blocks, or a DER CRL",
                )
            })?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if crls.is_empty() {
        return Err(FileError::new(
            key,
            path,
            "holds no revocation list (no -----BEGIN X509 CRL----- block)",
            "point it at the CRL the CA publishes (PEM or DER)",
        ));
    }
    Ok(crls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn wrong_files_name_key_problem_and_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let missing = read_certs("tls.ca_file", &d.join("nope.pem")).unwrap_err();
        assert_eq!(missing.key, "tls.ca_file");
        assert_eq!(missing.problem, "does not exist");
        assert!(
            missing.to_string().starts_with("tls.ca_file = "),
            "{missing}"
        );

        let empty = write(d, "empty.pem", "just text\n");
        let e = read_certs("tls.ca_file", &empty).unwrap_err();
        assert!(e.problem.starts_with("holds no certificate"), "{e}");
        let e = read_private_key("tls.key_file", &empty).unwrap_err();
        assert!(e.problem.starts_with("holds no private key"), "{e}");
        let e = read_crls("crl", &write(d, "c.pem", "-----BEGIN NOTHING-----\n")).unwrap_err();
        assert!(!e.problem.is_empty(), "{e}");

        let enc = write(
            d,
            "enc.pem",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        let e = read_private_key("tls.key_file", &enc).unwrap_err();
        assert!(e.problem.contains("encrypted"), "{e}");
    }

    #[test]
    fn a_der_crl_is_taken_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("c.der");
        std::fs::write(&p, [0x30, 0x03, 0x02, 0x01, 0x00]).unwrap();
        let crls = read_crls("crl", &p).unwrap();
        assert_eq!(crls.len(), 1);
        assert_eq!(crls[0].as_ref(), [0x30, 0x03, 0x02, 0x01, 0x00]);
    }
}
