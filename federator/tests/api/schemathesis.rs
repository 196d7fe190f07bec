//! Schemathesis (from PyPI) against the served OpenAPI document, with a valid
//! token and all its checks: no server error, every answer as the document says.
//!
//! `bash bench/run-tests` installs Schemathesis into a virtual environment under
//! the target directory when it is missing; elsewhere set `PGA_SCHEMATHESIS` to its
//! executable.

use std::path::PathBuf;
use std::process::Command;

use pga_federator::auth::Role;

use crate::support::api::TestApi;

/// Where Schemathesis is: `PGA_SCHEMATHESIS`, the run-tests virtual environment,
/// or `PATH`.
fn schemathesis() -> PathBuf {
    if let Some(p) = std::env::var_os("PGA_SCHEMATHESIS") {
        return p.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    let venv = target.join("schemathesis-venv/bin/schemathesis");
    if venv.exists() {
        return venv;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("schemathesis"))
        .find(|p| p.exists());
    on_path.unwrap_or_else(|| {
        panic!(
            "Schemathesis is not installed. `bash bench/run-tests` installs it into {}; or \
             `pip install schemathesis` and set PGA_SCHEMATHESIS to the `schemathesis` executable",
            venv.display()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let exe = schemathesis();
    let api = TestApi::start().await;
    let (_, admin) = api.session("admin", Role::Admin).await;
    // Something to find: an agent, a viewer, a token.
    api.call(
        "POST",
        "/api/v1/agents",
        Some(&admin),
        Some(serde_json::json!({"name": "db1", "url": "http://127.0.0.1:9"})),
    )
    .await;
    api.user("viewer", Role::Viewer).await;
    api.api_token(&admin, "ci", &["read"], None).await;
    let spec = format!("{}/api/v1/openapi.json", api.base);
    let report = api.dir.path().join("schemathesis-report");
    let base = api.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&exe)
            .arg("--config-file")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/api/schemathesis.toml"
            ))
            .args([
                "run",
                &spec,
                "--url",
                &base,
                "--checks",
                "all",
                "--max-examples",
                "25",
                "--workers",
                "2",
            ])
            .args(["--header", &format!("Authorization: Bearer {admin}")])
            .args([
                "--seed",
                "1",
                "--no-color",
                "--generation-database",
                "none",
                "--request-timeout",
                "10",
            ])
            .arg("--report-dir")
            .arg(&report)
            // Schemathesis keeps a cache of crashes in its working directory.
            .current_dir(report.parent().unwrap())
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{}",
        text.lines()
            .rev()
            .take(12)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(out.status.success(), "schemathesis failed:\n{text}");
    assert!(text.contains("passed"), "{text}");
}
