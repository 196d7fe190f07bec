//! The dashboards of `dashboards/grafana/` (docs/dashboards.md): every one validates
//! against Grafana's published dashboard JSON schema (tests/fixtures/grafana/), passes
//! the house lint (a title, description and unit on every panel, the datasource given
//! by variable, no hard-coded agent or database name, SQL only through the query layer,
//! links that resolve), and is what `dashboards/build.py` writes.

use pga_bench::grafana::{dashboard, dashboards_dir};
use serde_json::Value;

fn schema() -> jsonschema::Validator {
    let text = include_str!("fixtures/grafana/dashboard.jsonschema.json");
    let schema: Value = serde_json::from_str(text).expect("the vendored schema is JSON");
    jsonschema::draft7::new(&schema).expect("Grafana's dashboard schema compiles")
}

fn dashboards() -> Vec<dashboard::Dashboard> {
    dashboard::load_dir(&dashboards_dir().join("grafana")).expect("dashboards load")
}

#[test]
fn every_dashboard_validates_against_grafanas_published_schema() {
    let validator = schema();
    let all = dashboards();
    assert!(all.len() >= 14, "{} dashboards", all.len());
    let mut errors = Vec::new();
    for d in &all {
        for e in validator.iter_errors(&d.json) {
            errors.push(format!(
                "{}: {} at {}",
                d.path.display(),
                e,
                e.instance_path()
            ));
        }
        let v = d.json["schemaVersion"].as_u64().unwrap_or(0);
        assert!(
            v >= dashboard::MIN_SCHEMA_VERSION,
            "{}: schemaVersion {v}",
            d.uid
        );
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    // The validator is not a formality: a panel without a type, a string where the
    // schema wants a number and an unknown dashboard key are each rejected.
    let mut bad = all[0].json.clone();
    bad["panels"][0]["type"] = Value::String(String::new());
    bad["graphTooltip"] = Value::from(7);
    bad["colour"] = Value::from("blue");
    assert!(validator.iter_errors(&bad).count() >= 3);
}

#[test]
fn every_dashboard_passes_the_lint() {
    let all = dashboards();
    let errors = dashboard::lint(&all);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let sql = all.iter().filter(|d| d.is_sql()).count();
    assert!(sql >= 12, "{sql} dashboards over the central database");
}

#[test]
fn the_lint_catches_what_it_is_for() {
    let mut all = dashboards();
    let d = all.iter_mut().find(|d| d.uid == "pga-instance").unwrap();
    let panels = d.json["panels"].as_array_mut().unwrap();
    let p = panels
        .iter_mut()
        .find(|p| p["type"] == "timeseries")
        .unwrap();
    p["description"] = Value::from("");
    p["fieldConfig"]["defaults"]["unit"] = Value::from("");
    p["datasource"]["uid"] = Value::from("pganalytics");
    p["targets"][0]["rawSql"] =
        Value::from("SELECT ts AS time, value FROM samples WHERE agent = 'db1' ORDER BY 1");
    d.json["links"][0]["url"] = Value::from("/d/pga-nowhere");
    let errors = dashboard::lint(&all).join("\n");
    for want in [
        "no description",
        "no unit",
        "datasource not given by the datasource variable",
        "hard-coded name in SQL",
        "reads a table, not the query layer",
        "no dashboard pga-nowhere",
    ] {
        assert!(errors.contains(want), "lint missed {want:?}:\n{errors}");
    }
}

#[test]
fn the_json_is_what_build_py_writes() {
    let out = std::process::Command::new("python3")
        .arg(dashboards_dir().join("build.py"))
        .arg("--check")
        .output()
        .expect("python3 runs (bench/run-tests installs it)");
    assert!(
        out.status.success(),
        "dashboards/ differs from dashboards/build.py:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
