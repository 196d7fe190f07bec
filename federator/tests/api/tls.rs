//! `pga-federator run` with the API on: HTTPS with the configured certificate,
//! reloaded without a restart when the files change; the API's self-metrics on the
//! self-metrics listener; `users add` and `keygen` from the command line.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pga_agent::endpoint::certs::{DevCertsOptions, make_dev_certs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::api::{cluster, database};
use crate::support::pull::{Federator, free_port, metrics, wait_until};

fn dev_certs(dir: &Path) {
    make_dev_certs(&DevCertsOptions {
        out: dir.to_owned(),
        agent_name: "api".into(),
        agent_sans: vec![],
        days: 2,
        force: true,
    })
    .unwrap();
}

/// GET `path` over TLS trusting only `ca`; `None` when the handshake fails.
async fn https_get(port: u16, ca: &Path, path: &str) -> Option<String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let mut tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .ok()?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_https_reloads_its_certificate_and_is_administered_from_the_command_line() {
    let (db, sink) = database().await;
    drop(sink);
    let dir = tempfile::tempdir().unwrap();
    let (first, second, live) = (
        dir.path().join("first"),
        dir.path().join("second"),
        dir.path().join("live"),
    );
    dev_certs(&first);
    dev_certs(&second);
    std::fs::create_dir_all(&live).unwrap();
    for f in ["agent.crt", "agent.key"] {
        std::fs::copy(first.join(f), live.join(f)).unwrap();
    }
    let bin = env!("CARGO_BIN_EXE_pga-federator");
    let key = dir.path().join("jwt.key");
    let out = Command::new(bin)
        .args(["keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(std::fs::read_to_string(&key).unwrap().trim().len() == 128);
    let again = Command::new(bin)
        .args(["keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!again.status.success(), "an existing key is kept");

    let (api_port, metrics_port) = (free_port(), free_port());
    let config = dir.path().join("federator.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
             [api]\nlisten = \"127.0.0.1:{api_port}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\njwt_key_file = \"{}\"\n",
            cluster().url(&db),
            live.join("agent.crt").display(),
            live.join("agent.key").display(),
            key.display()
        ),
    )
    .unwrap();
    let check = Command::new(bin)
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{text}");
    assert!(
        text.contains(&format!("https://127.0.0.1:{api_port}/api/v1")),
        "{text}"
    );

    // The first admin, from standard input; then one with a generated password.
    let mut child = Command::new(bin)
        .args([
            "users",
            "add",
            "root",
            "--role",
            "admin",
            "--password-stdin",
            "--config",
        ])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long enough password\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("created user root"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("password:"), "{text}");
    let out = Command::new(bin)
        .args(["users", "add", "ops", "--role", "user", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let generated = text
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("a generated password");
    assert_eq!(generated.len(), 20);
    let out = Command::new(bin)
        .args(["users", "add", "ops", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));

    let mut fed = Federator::start(&config);
    let t = Instant::now();
    let body = loop {
        if let Some(b) = https_get(api_port, &first.join("ca.crt"), "/api/v1/openapi.json").await {
            break b;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the API answers over HTTPS:\n{}",
            fed.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.to_ascii_lowercase().contains("x-request-id: "),
        "{body}"
    );
    assert!(body.contains("\"openapi\":\"3.1.0\""));
    // A client that does not trust the first CA is refused.
    assert!(
        https_get(api_port, &second.join("ca.crt"), "/api/v1/openapi.json")
            .await
            .is_none()
    );

    // New certificate files: picked up without a restart.
    for f in ["agent.crt", "agent.key"] {
        std::fs::copy(second.join(f), live.join(format!("{f}.new"))).unwrap();
        std::fs::rename(live.join(format!("{f}.new")), live.join(f)).unwrap();
    }
    let t = Instant::now();
    while https_get(api_port, &second.join("ca.crt"), "/api/v1/openapi.json")
        .await
        .is_none()
    {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the new certificate is served:\n{}",
            fed.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(fed.log_text().contains("API certificate reloaded"));

    // The API's self-metrics are on the self-metrics listener.
    drop(https_get(api_port, &second.join("ca.crt"), "/api/v1/agents").await);
    wait_until("API metrics", 10, || {
        metrics(metrics_port).contains("pga_federator_api_requests_total")
    });
    let m = metrics(metrics_port);
    assert!(
        m.contains("route=\"/api/v1/openapi.json\",method=\"GET\",status=\"200\""),
        "{m}"
    );
    assert!(
        m.contains("route=\"/api/v1/agents\",method=\"GET\",status=\"401\""),
        "{m}"
    );
    assert!(
        m.contains("pga_federator_api_request_duration_seconds_bucket"),
        "{m}"
    );
    fed.stop();
}
