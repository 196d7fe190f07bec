//! Development certificates: a throwaway CA and the certificates of the agent, the
//! federator and Prometheus, made with rcgen (`pga-agent certs dev`). For the demo
//! and tests; a real deployment takes its certificates from its own PKI.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use x509_parser::time::ASN1Time;

/// Longest validity `certs dev` issues, in days.
pub const MAX_DAYS: u32 = 3650;
/// Common name and DNS name of the federator's client certificate.
pub const FEDERATOR_NAME: &str = "pga-federator";
/// Common name and DNS name of Prometheus's client certificate.
pub const PROMETHEUS_NAME: &str = "prometheus";

/// The files `certs dev` writes, in order, each with whether it is a private key.
pub const FILES: [(&str, bool); 8] = [
    ("ca.crt", false),
    ("ca.key", true),
    ("agent.crt", false),
    ("agent.key", true),
    ("federator.crt", false),
    ("federator.key", true),
    ("prometheus.crt", false),
    ("prometheus.key", true),
];

/// What to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCertsOptions {
    /// Directory to write into; created when missing.
    pub out: PathBuf,
    /// Common name of the agent's certificate.
    pub agent_name: String,
    /// Subject alternative names of the agent's certificate besides `localhost`,
    /// `127.0.0.1`, `::1` and the host name: DNS names or IP addresses.
    pub agent_sans: Vec<String>,
    /// Validity in days, from one hour ago.
    pub days: u32,
    /// Overwrite existing files.
    pub force: bool,
}

/// What was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCerts {
    /// The directory, absolute.
    pub dir: PathBuf,
    /// The files written, absolute, in [`FILES`] order.
    pub files: Vec<PathBuf>,
    /// The agent certificate's subject alternative names.
    pub agent_sans: Vec<String>,
}

impl DevCerts {
    /// The `[endpoint]` table that uses these files.
    pub fn endpoint_snippet(&self) -> String {
        let p = |name: &str| format!("{:?}", self.dir.join(name).display().to_string());
        format!(
            "[endpoint]\nlisten = \"0.0.0.0:9187\"\ncert_file = {}\nkey_file = {}\n\
             client_ca_file = {}\nallowed_clients = [\"{FEDERATOR_NAME}\", \"{PROMETHEUS_NAME}\"]\n",
            p("agent.crt"),
            p("agent.key"),
            p("ca.crt")
        )
    }
}

/// Why the certificates could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertsError {
    /// Files would be overwritten and `force` is off.
    #[error("{} already exist(s); pass --force to overwrite, or choose another --out", list(.0))]
    Exists(Vec<PathBuf>),
    /// A requested subject alternative name is neither an IP address nor a DNS name.
    #[error("--agent-san {0:?} is neither an IP address nor a DNS name")]
    InvalidSan(String),
    /// `days` is out of range.
    #[error("--days {0} is out of range: 1..={MAX_DAYS}")]
    Days(u32),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// rcgen could not make a key or a certificate.
    #[error("cannot make the certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A certificate and its key, in PEM.
struct Made {
    cert: String,
    key: String,
}

fn validity(params: &mut CertificateParams, days: u32) -> Result<(), CertsError> {
    let now = ASN1Time::now().timestamp();
    let at = |secs: i64| {
        ASN1Time::from_timestamp(secs)
            .map(|t| t.to_datetime())
            .map_err(|_| CertsError::Days(days))
    };
    params.not_before = at(now - 3600)?;
    params.not_after = at(now + i64::from(days) * 86_400)?;
    Ok(())
}

fn san(s: &str) -> Result<SanType, CertsError> {
    match s.parse::<IpAddr>() {
        Ok(ip) => Ok(SanType::IpAddress(ip)),
        Err(_) => {
            let valid = !s.is_empty()
                && s.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '*')
                });
            if !valid {
                return Err(CertsError::InvalidSan(s.to_owned()));
            }
            s.try_into()
                .map(SanType::DnsName)
                .map_err(|_| CertsError::InvalidSan(s.to_owned()))
        }
    }
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    sans: &[String],
    eku: ExtendedKeyUsagePurpose,
    days: u32,
) -> Result<Made, CertsError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "pgAnalytics (development)");
    p.distinguished_name = dn;
    p.subject_alt_names = sans.iter().map(|s| san(s)).collect::<Result<_, _>>()?;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![eku];
    p.use_authority_key_identifier_extension = true;
    validity(&mut p, days)?;
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, issuer)?;
    Ok(Made {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The agent certificate's subject alternative names: loopback, the host name, and
/// `extra`, without duplicates.
pub fn agent_sans(host: &str, extra: &[String]) -> Vec<String> {
    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if san(host).is_ok() {
        sans.push(host.to_owned());
    }
    sans.extend(extra.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    sans.retain(|s| seen.insert(s.to_ascii_lowercase()));
    sans
}

/// Makes the CA and the three certificates and writes them into `opts.out`:
/// certificates mode 0644, keys 0600. Refuses to overwrite anything unless
/// `opts.force`; each file is written whole or not at all.
pub fn make_dev_certs(opts: &DevCertsOptions) -> Result<DevCerts, CertsError> {
    if !(1..=MAX_DAYS).contains(&opts.days) {
        return Err(CertsError::Days(opts.days));
    }
    let sans = agent_sans(&crate::config::host_name(), &opts.agent_sans);
    for s in &sans {
        san(s)?;
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CertsError::Io { path, source }
    };
    std::fs::create_dir_all(&opts.out).map_err(io(&opts.out))?;
    let dir = std::fs::canonicalize(&opts.out).map_err(io(&opts.out))?;
    let paths: Vec<PathBuf> = FILES.iter().map(|(n, _)| dir.join(n)).collect();
    if !opts.force {
        let existing: Vec<PathBuf> = paths.iter().filter(|p| p.exists()).cloned().collect();
        if !existing.is_empty() {
            return Err(CertsError::Exists(existing));
        }
    }

    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "pgAnalytics development CA");
    dn.push(DnType::OrganizationName, "pgAnalytics (development)");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca, opts.days)?;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let made_ca = Made {
        cert: ca_cert.pem(),
        key: ca_key.serialize_pem(),
    };
    let issuer = Issuer::new(ca, ca_key);
    let agent = leaf(
        &issuer,
        &opts.agent_name,
        &sans,
        ExtendedKeyUsagePurpose::ServerAuth,
        opts.days,
    )?;
    let federator = leaf(
        &issuer,
        FEDERATOR_NAME,
        &[FEDERATOR_NAME.to_owned()],
        ExtendedKeyUsagePurpose::ClientAuth,
        opts.days,
    )?;
    let prometheus = leaf(
        &issuer,
        PROMETHEUS_NAME,
        &[PROMETHEUS_NAME.to_owned()],
        ExtendedKeyUsagePurpose::ClientAuth,
        opts.days,
    )?;

    let contents = [
        &made_ca.cert,
        &made_ca.key,
        &agent.cert,
        &agent.key,
        &federator.cert,
        &federator.key,
        &prometheus.cert,
        &prometheus.key,
    ];
    for ((path, (_, secret)), text) in paths.iter().zip(FILES).zip(contents) {
        write_file(path, text, if secret { 0o600 } else { 0o644 }).map_err(io(path))?;
    }
    Ok(DevCerts {
        dir,
        files: paths,
        agent_sans: sans,
    })
}

/// Writes `text` to a temporary file of mode `mode` beside `path`, then renames it
/// over `path`.
fn write_file(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn opts(out: &Path) -> DevCertsOptions {
        DevCertsOptions {
            out: out.to_owned(),
            agent_name: "db1".into(),
            agent_sans: vec!["db1.example.org".into(), "10.1.2.3".into()],
            days: 30,
            force: false,
        }
    }

    fn parse(path: &Path) -> Vec<u8> {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_file(path)
            .unwrap()
            .to_vec()
    }

    #[test]
    fn makes_a_ca_and_three_certificates_with_private_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("certs");
        let made = make_dev_certs(&opts(&out)).unwrap();
        assert_eq!(made.files.len(), 8);
        for ((name, secret), path) in FILES.iter().zip(&made.files) {
            assert!(path.ends_with(name));
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, if *secret { 0o600 } else { 0o644 }, "{name}");
        }
        let der = parse(&out.join("agent.crt"));
        let (_, agent) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(
            agent.subject().to_string(),
            "CN=db1, O=pgAnalytics (development)"
        );
        let eku = agent.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        let sans = agent.subject_alternative_name().unwrap().unwrap().value;
        let shown: Vec<String> = sans
            .general_names
            .iter()
            .filter_map(|g| match g {
                x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                    4 => Some(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()),
                    16 => Some(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string()),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        for want in [
            "localhost",
            "127.0.0.1",
            "::1",
            "db1.example.org",
            "10.1.2.3",
        ] {
            assert!(shown.iter().any(|s| s == want), "{want} not in {shown:?}");
        }
        let days = (agent.validity().not_after.timestamp()
            - agent.validity().not_before.timestamp())
            / 86_400;
        assert_eq!(days, 30);

        let der = parse(&out.join("federator.crt"));
        let (_, fed) = X509Certificate::from_der(&der).unwrap();
        assert!(fed.extended_key_usage().unwrap().unwrap().value.client_auth);
        assert_eq!(
            crate::endpoint::tls::client_identities(&der.into()),
            ["pga-federator"]
        );
        let snippet = made.endpoint_snippet();
        let parsed: toml::Table = toml::from_str(&snippet).unwrap();
        assert!(
            parsed["endpoint"]["cert_file"]
                .as_str()
                .unwrap()
                .ends_with("/certs/agent.crt")
        );
    }

    #[test]
    fn the_files_load_as_an_endpoint_configuration() {
        let tmp = tempfile::tempdir().unwrap();
        let made = make_dev_certs(&opts(tmp.path())).unwrap();
        let files = crate::endpoint::TlsFiles {
            cert_file: made.dir.join("agent.crt"),
            key_file: made.dir.join("agent.key"),
            client_ca_file: made.dir.join("ca.crt"),
            crl_files: Vec::new(),
            allowed_clients: Vec::new(),
        };
        let loaded = crate::endpoint::tls::load(&files).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn refuses_to_overwrite_without_force() {
        let tmp = tempfile::tempdir().unwrap();
        let o = opts(tmp.path());
        make_dev_certs(&o).unwrap();
        let before = std::fs::read(tmp.path().join("ca.key")).unwrap();
        let err = make_dev_certs(&o).unwrap_err();
        assert!(
            matches!(&err, CertsError::Exists(p) if p.len() == 8),
            "{err}"
        );
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(std::fs::read(tmp.path().join("ca.key")).unwrap(), before);
        make_dev_certs(&DevCertsOptions { force: true, ..o }).unwrap();
        assert_ne!(std::fs::read(tmp.path().join("ca.key")).unwrap(), before);
    }

    #[test]
    fn bad_sans_and_days_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let bad = DevCertsOptions {
            agent_sans: vec!["not a name".into()],
            ..opts(tmp.path())
        };
        assert!(matches!(
            make_dev_certs(&bad),
            Err(CertsError::InvalidSan(_))
        ));
        let bad = DevCertsOptions {
            days: 0,
            ..opts(tmp.path())
        };
        assert!(matches!(make_dev_certs(&bad), Err(CertsError::Days(0))));
        assert!(std::fs::read_dir(tmp.path()).unwrap().next().is_none());
    }

    #[test]
    fn agent_sans_deduplicate() {
        assert_eq!(
            agent_sans(
                "db1",
                &["localhost".into(), "DB1".into(), "h.example".into()]
            ),
            ["localhost", "127.0.0.1", "::1", "db1", "h.example"]
        );
        assert_eq!(
            agent_sans("bad host", &[]),
            ["localhost", "127.0.0.1", "::1"]
        );
    }
}
