//! The rustls server configuration, built from PEM files, and the allow-list of
//! client identities.
//!
//! The configuration uses the ring provider and TLS 1.3 only; every client must
//! present a certificate that chains to the CA bundle (`WebPkiClientVerifier`),
//! and, when CRLs are given, whose revocation status they cover and clear. Session
//! resumption is off, so every connection is a full handshake and a certificate
//! revoked or expired since an earlier connection is caught at once.

use std::path::Path;
use std::sync::Arc;

use pga_config::pem::{read_certs, read_private_key};
use rustls::crypto::CryptoProvider;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::time::ASN1Time;

use super::{EndpointError, TlsFiles};
use crate::config::Problem;

/// The crypto provider of the endpoint: ring, rustls's defaults for it.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration loaded from the files, and what is worth a warning.
#[derive(Debug, Clone)]
pub struct LoadedTls {
    /// The configuration new connections use.
    pub config: Arc<ServerConfig>,
    /// The subject of the agent's certificate, for logs.
    pub server_subject: String,
    /// When the agent's certificate expires, for logs.
    pub server_not_after: String,
    /// CRLs loaded, over all `crl_files`.
    pub crls: usize,
    /// Things that work but probably not as meant: an expired certificate, a CRL
    /// past its next update.
    pub warnings: Vec<Problem>,
}

fn file_error(
    key: &str,
    path: &Path,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> EndpointError {
    EndpointError::File {
        key: key.to_owned(),
        path: path.to_owned(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// A name for logs: the subject as `CN=..., O=...`.
fn subject_of(cert: &X509Certificate<'_>) -> String {
    cert.subject().to_string()
}

/// Loads and checks every file of `files` and builds the server configuration.
/// Stops at the first file that is missing, unreadable or wrong.
pub fn load(files: &TlsFiles) -> Result<LoadedTls, EndpointError> {
    let provider = provider();
    let mut warnings = Vec::new();
    let now = ASN1Time::now();

    // The agent's certificate chain and key.
    let cert_key = "endpoint.cert_file";
    let chain = read_certs(cert_key, &files.cert_file)?;
    let (_, leaf) = X509Certificate::from_der(&chain[0]).map_err(|e| {
        file_error(
            cert_key,
            &files.cert_file,
            format!("its first certificate cannot be parsed: {e}"),
            "point it at the agent's certificate, first in the file, then any intermediates",
        )
    })?;
    let server_subject = subject_of(&leaf);
    let validity = leaf.validity();
    let server_not_after = validity.not_after.to_string();
    if validity.not_after < now {
        warnings.push(Problem::warning(
            cert_key,
            format!(
                "{}: the certificate ({server_subject}) expired on {server_not_after}; \
                 clients refuse it",
                files.cert_file.display()
            ),
            "install a new certificate; the agent picks it up without a restart",
        ));
    } else if validity.not_before > now {
        warnings.push(Problem::warning(
            cert_key,
            format!(
                "{}: the certificate ({server_subject}) is not valid before {}; clients \
                 refuse it until then",
                files.cert_file.display(),
                validity.not_before
            ),
            "check the clock of this host and of the CA",
        ));
    }
    if let Ok(Some(eku)) = leaf.extended_key_usage()
        && !eku.value.server_auth
        && !eku.value.any
    {
        warnings.push(Problem::warning(
            cert_key,
            format!(
                "{}: the certificate ({server_subject}) lacks the serverAuth extended key \
                 usage; clients refuse it",
                files.cert_file.display()
            ),
            "issue the agent's certificate with extendedKeyUsage = serverAuth",
        ));
    }
    let key = read_private_key("endpoint.key_file", &files.key_file)?;

    // The clients' CA bundle.
    let ca_key = "endpoint.client_ca_file";
    let ca_certs = read_certs(ca_key, &files.client_ca_file)?;
    let mut roots = RootCertStore::empty();
    let mut ca_subjects = Vec::new();
    for (i, ca) in ca_certs.iter().enumerate() {
        roots.add(ca.clone()).map_err(|e| {
            file_error(
                ca_key,
                &files.client_ca_file,
                format!("certificate #{} cannot be a trust anchor: {e}", i + 1),
                "remove it, or replace it with the CA certificate that signs the clients",
            )
        })?;
        if let Ok((_, c)) = X509Certificate::from_der(ca) {
            ca_subjects.push(c.subject().as_raw().to_vec());
            if c.validity().not_after < now {
                warnings.push(Problem::warning(
                    ca_key,
                    format!(
                        "{}: the CA certificate {} expired on {}; no client it signed gets in",
                        files.client_ca_file.display(),
                        subject_of(&c),
                        c.validity().not_after
                    ),
                    "install the CA's renewed certificate",
                ));
            }
        }
    }
    let roots = Arc::new(roots);

    // Revocation lists, each checked on its own so an error names its file.
    let mut crls = Vec::new();
    for (i, path) in files.crl_files.iter().enumerate() {
        let key = format!("endpoint.crl_files[{i}]");
        let these = read_crls(&key, path, &ca_subjects, &now, &mut warnings)?;
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .with_crls(these.iter().cloned())
            .build()
            .map_err(|e| file_error(&key, path, e.to_string(), "publish a well-formed CRL"))?;
        crls.extend(these);
    }
    let crl_count = crls.len();

    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .with_crls(crls)
        .build()
        .map_err(|e| {
            file_error(
                ca_key,
                &files.client_ca_file,
                format!("no client verifier can be built from it: {e}"),
                "point it at the PEM CA certificates that sign the clients",
            )
        })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| {
            file_error(
                cert_key,
                &files.cert_file,
                format!("rustls refused TLS 1.3 with the ring provider: {e}"),
                "report this as a bug",
            )
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| {
            file_error(
                "endpoint.key_file",
                &files.key_file,
                format!("cannot serve {} with it: {e}", files.cert_file.display()),
                "give the private key that belongs to endpoint.cert_file (compare \
                 `openssl pkey -in KEY -pubout` with `openssl x509 -in CERT -noout -pubkey`)",
            )
        })?;
    // HTTP/1.1 first; HTTP/1.0 for clients that offer only it (`curl --http1.0`).
    config.alpn_protocols = vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    // No resumption: every connection verifies the client's certificate afresh.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;

    Ok(LoadedTls {
        config: Arc::new(config),
        server_subject,
        server_not_after,
        crls: crl_count,
        warnings,
    })
}

/// The CRLs of one file (PEM `X509 CRL` blocks, or one DER CRL), each issued by a
/// CA of the bundle.
fn read_crls(
    key: &str,
    path: &Path,
    ca_subjects: &[Vec<u8>],
    now: &ASN1Time,
    warnings: &mut Vec<Problem>,
) -> Result<Vec<CertificateRevocationListDer<'static>>, EndpointError> {
    let crls = pga_config::pem::read_crls(key, path)?;
    for (j, der) in crls.iter().enumerate() {
        let (_, crl) = CertificateRevocationList::from_der(der).map_err(|e| {
            file_error(
                key,
                path,
                format!("CRL #{} cannot be parsed: {e}", j + 1),
                "point it at the CRL the CA publishes (PEM or DER)",
            )
        })?;
        if !ca_subjects.iter().any(|s| s == crl.issuer().as_raw()) {
            return Err(file_error(
                key,
                path,
                format!(
                    "CRL #{} is issued by {}, which is not a CA of endpoint.client_ca_file",
                    j + 1,
                    crl.issuer()
                ),
                "use the CRL of the CA that signs the clients' certificates, or add that CA \
                 to endpoint.client_ca_file",
            ));
        }
        if let Some(next) = crl.next_update()
            && next < *now
        {
            warnings.push(Problem::warning(
                key,
                format!(
                    "{}: CRL #{} of {} was due to be replaced on {next}",
                    path.display(),
                    j + 1,
                    crl.issuer()
                ),
                "publish a fresh CRL; the agent re-reads the file when it changes",
            ));
        }
    }
    Ok(crls)
}

/// The identities of a client certificate the allow-list matches: its DNS and URI
/// subject alternative names, or, when it has neither, its subject common names.
/// Empty when the certificate cannot be parsed (so nothing matches).
pub fn client_identities(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, x)) = X509Certificate::from_der(cert) else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    match x.subject_alternative_name() {
        Ok(Some(san)) => {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => ids.push((*d).to_owned()),
                    GeneralName::URI(u) => ids.push((*u).to_owned()),
                    _ => {}
                }
            }
        }
        Ok(None) => {}
        // A malformed or duplicated extension: trust none of the names.
        Err(_) => return Vec::new(),
    }
    if ids.is_empty() {
        ids.extend(
            x.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok().map(str::to_owned)),
        );
    }
    ids
}

/// `endpoint.allowed_clients`: who may connect once their certificate verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<String>);

impl AllowList {
    /// An allow-list of these identities; empty lets in every verified client.
    pub fn new(names: &[String]) -> Self {
        AllowList(names.iter().map(|n| n.trim().to_owned()).collect())
    }

    /// Whether every verified client gets in.
    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a client with these identities ([`client_identities`]) gets in. DNS
    /// names and common names compare without regard to ASCII case, URIs exactly.
    pub fn allows(&self, identities: &[String]) -> bool {
        self.is_open()
            || identities.iter().any(|id| {
                self.0.iter().any(|a| {
                    if id.contains("://") {
                        a == id
                    } else {
                        a.eq_ignore_ascii_case(id)
                    }
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
        ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType,
        SerialNumber,
    };
    use rustls_pki_types::pem::PemObject;
    use std::path::PathBuf;

    struct Ca {
        cert: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap().pem();
        Ca {
            cert,
            issuer: Issuer::new(p, key),
        }
    }

    fn leaf(
        ca: &Ca,
        cn: &str,
        sans: Vec<SanType>,
        eku: ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names = sans;
        p.extended_key_usages = vec![eku];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca.issuer).unwrap().pem();
        (cert, key.serialize_pem())
    }

    fn dns(s: &str) -> SanType {
        SanType::DnsName(s.try_into().unwrap())
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn files(dir: &Path, ca: &Ca) -> TlsFiles {
        let (cert, key) = leaf(
            ca,
            "agent",
            vec![dns("localhost")],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        TlsFiles {
            cert_file: write(dir, "agent.crt", &cert),
            key_file: write(dir, "agent.key", &key),
            client_ca_file: write(dir, "ca.crt", &ca.cert),
            crl_files: Vec::new(),
            allowed_clients: Vec::new(),
        }
    }

    fn crl(ca: &Ca) -> String {
        CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2090, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca.issuer)
        .unwrap()
        .pem()
        .unwrap()
    }

    fn problem(files: &TlsFiles) -> (String, String) {
        match load(files) {
            Err(EndpointError::File { key, problem, .. }) => (key, problem),
            other => panic!("expected a file error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_set_loads_tls13_only_with_http11() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = ca("test CA");
        let mut f = files(tmp.path(), &ca);
        f.crl_files = vec![write(tmp.path(), "ca.crl", &crl(&ca))];
        let loaded = load(&f).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(loaded.crls, 1);
        assert_eq!(loaded.server_subject, "CN=agent");
        assert_eq!(
            loaded.config.alpn_protocols,
            [b"http/1.1".to_vec(), b"http/1.0".to_vec()]
        );
        assert_eq!(loaded.config.send_tls13_tickets, 0);
    }

    #[test]
    fn missing_and_empty_files_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = ca("test CA");
        let mut f = files(tmp.path(), &ca);
        f.cert_file = tmp.path().join("nope.crt");
        let (key, p) = problem(&f);
        assert_eq!(
            (key.as_str(), p.as_str()),
            ("endpoint.cert_file", "does not exist")
        );

        let mut f = files(tmp.path(), &ca);
        f.client_ca_file = write(tmp.path(), "empty.crt", "not pem at all\n");
        let (key, p) = problem(&f);
        assert_eq!(key, "endpoint.client_ca_file");
        assert!(p.starts_with("holds no certificate"), "{p}");

        let mut f = files(tmp.path(), &ca);
        f.key_file = f.cert_file.clone();
        let (key, p) = problem(&f);
        assert_eq!(key, "endpoint.key_file");
        assert!(p.starts_with("holds no private key"), "{p}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = ca("test CA");
        let mut f = files(tmp.path(), &ca);
        f.key_file = write(
            tmp.path(),
            "other.key",
            &KeyPair::generate().unwrap().serialize_pem(),
        );
        let (key, p) = problem(&f);
        assert_eq!(key, "endpoint.key_file");
        assert!(p.contains("cannot serve"), "{p}");
        let shown = load(&f).unwrap_err().to_string();
        assert!(
            shown.contains("other.key") && shown.contains("fix: give the private key"),
            "{shown}"
        );
    }

    #[test]
    fn a_crl_of_another_ca_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let ca1 = ca("test CA");
        let other = ca("other CA");
        let mut f = files(tmp.path(), &ca1);
        f.crl_files = vec![
            write(tmp.path(), "ok.crl", &crl(&ca1)),
            write(tmp.path(), "other.crl", &crl(&other)),
        ];
        let (key, p) = problem(&f);
        assert_eq!(key, "endpoint.crl_files[1]");
        assert!(p.contains("issued by CN=other CA"), "{p}");
        f.crl_files = vec![write(
            tmp.path(),
            "junk.crl",
            "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
        )];
        let (key, p) = problem(&f);
        assert_eq!(key, "endpoint.crl_files[0]");
        assert!(p.contains("cannot be parsed"), "{p}");
    }

    #[test]
    fn an_expired_server_certificate_is_a_warning() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = ca("test CA");
        let mut f = files(tmp.path(), &ca);
        let mut p = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let key = KeyPair::generate().unwrap();
        f.cert_file = write(
            tmp.path(),
            "old.crt",
            &p.signed_by(&key, &ca.issuer).unwrap().pem(),
        );
        f.key_file = write(tmp.path(), "old.key", &key.serialize_pem());
        let loaded = load(&f).unwrap();
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        assert!(
            loaded.warnings[0].message.contains("expired"),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn identities_are_sans_else_common_name() {
        let ca = ca("test CA");
        let der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (c, _) = leaf(
            &ca,
            "ignored-cn",
            vec![
                dns("pga-federator"),
                SanType::URI("spiffe://example.org/federator".try_into().unwrap()),
                SanType::IpAddress("10.0.0.1".parse().unwrap()),
            ],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        assert_eq!(
            client_identities(&der(&c)),
            ["pga-federator", "spiffe://example.org/federator"]
        );
        let (c, _) = leaf(
            &ca,
            "prometheus",
            vec![],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        assert_eq!(client_identities(&der(&c)), ["prometheus"]);
        assert!(client_identities(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])).is_empty());
    }

    #[test]
    fn allow_list_matching() {
        let open = AllowList::new(&[]);
        assert!(open.is_open() && open.allows(&[]));
        let a = AllowList::new(&["PGA-Federator".into(), "spiffe://x/Fed".into()]);
        assert!(a.allows(&["pga-federator".into()]));
        assert!(a.allows(&["other".into(), "spiffe://x/Fed".into()]));
        assert!(!a.allows(&["spiffe://x/fed".into()]));
        assert!(!a.allows(&["pga-federator.evil".into()]));
        assert!(!a.allows(&[]));
    }
}
