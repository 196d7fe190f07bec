//! Grafana as the dashboards meet it: the PostgreSQL datasource's macros
//! ([`macros`]), template variables as the browser replaces them ([`template`]), the
//! dashboards of `dashboards/grafana/` and their lint ([`dashboard`]), and running a
//! dashboard's SQL as Grafana would ([`run`]). Used by `bench/tests/dashboards_*.rs`
//! and `pga-bench dashboards`.

pub mod dashboard;
pub mod macros;
pub mod run;
pub mod template;

use std::path::PathBuf;

/// `dashboards/` of this repository.
pub fn dashboards_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .join("dashboards")
}
