//! The example configuration shipped in `packaging/agent.toml` parses, validates,
//! shows the real defaults, and documents every key of the schema and no other.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pga_agent::config::{
    AgentConfig, Collectors, ConfigSource, EndpointConfig, Intervals, LogsConfig, PostgresInstance,
    StoreConfig, load, schema_keys,
};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/agent.toml")
}

fn example_text() -> String {
    std::fs::read_to_string(example_path()).expect("packaging/agent.toml is readable")
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// Every key `text` sets.
fn keys_in(text: &str) -> BTreeSet<String> {
    pga_config::keys_set(text).expect("valid TOML")
}

fn uncommented(text: &str) -> String {
    pga_config::uncomment_settings(text)
}

#[test]
fn example_loads_and_validates_without_problems() {
    let loaded = load(Some(&example_path()), None, &no_env).expect("the example loads");
    assert_eq!(loaded.source, ConfigSource::File(example_path()));
    let problems = loaded.validate();
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(loaded.config.postgres.len(), 1);
    assert_eq!(loaded.instances[0].name, "main");
    // Everything but the password file (libpq's ~/.pgpass) comes from the example.
    let conninfo = loaded.instances[0].resolved_conninfo();
    assert!(
        conninfo.starts_with("host=/var/run/postgresql port=5432 user=pga_monitor dbname=postgres"),
        "{conninfo}"
    );
}

#[test]
fn example_shows_the_real_defaults() {
    let c = AgentConfig::parse(&example_text(), &example_path()).unwrap();
    assert_eq!(
        c.agent.data_dir,
        PathBuf::from(pga_agent::config::DEFAULT_DATA_DIR)
    );
    assert_eq!(c.intervals, Intervals::DEFAULT);
    assert_eq!(c.store, StoreConfig::DEFAULT);
    assert_eq!(c.collectors, Collectors::DEFAULT);
    assert_eq!(c.endpoint, EndpointConfig::default());
    assert_eq!(c.logs, LogsConfig::default());
    let d = PostgresInstance::default();
    let p = &c.postgres[0];
    assert_eq!(p.statement_timeout_ms, d.statement_timeout_ms);
    assert_eq!(p.lock_timeout_ms, d.lock_timeout_ms);
    assert_eq!(p.databases_include, d.databases_include);
    assert_eq!(p.databases_exclude, d.databases_exclude);
    assert_eq!(p.statements_top_n, d.statements_top_n);
    assert_eq!(p.relations_top_n, d.relations_top_n);
    assert_eq!(p.families_exclude, d.families_exclude);
}

#[test]
fn every_documented_key_exists_in_the_schema() {
    // deny_unknown_fields makes the parse fail on any key the schema lacks,
    // including the ones the example only shows in comments.
    let all = uncommented(&example_text());
    if let Err(e) = AgentConfig::parse(&all, &example_path()) {
        panic!("a key documented in packaging/agent.toml is not in the schema:\n{e}");
    }
}

#[test]
fn every_schema_key_is_documented_in_the_example() {
    let documented = keys_in(&uncommented(&example_text()));
    let schema: BTreeSet<String> = schema_keys().into_iter().collect();
    let missing: Vec<&String> = schema.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "keys missing from packaging/agent.toml: {missing:?}"
    );
    // The converse holds by the parse above; check it here too for a clear message.
    let unknown: Vec<&String> = documented.difference(&schema).collect();
    assert!(unknown.is_empty(), "keys not in the schema: {unknown:?}");
}
