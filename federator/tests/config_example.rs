//! The example configuration shipped in `packaging/federator.toml` parses, passes
//! `check-config` as shipped, states the real defaults, and documents every key of
//! the schema and no other.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pga_federator::config::{FederatorConfig, load, schema_keys};
use support::{Cli, federator_cli};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/federator.toml")
}

/// Every key `text` sets.
fn keys_in(text: &str) -> BTreeSet<String> {
    pga_config::keys_set(text).expect("valid TOML")
}

fn uncommented(text: &str) -> String {
    pga_config::uncomment_settings(text)
}

#[test]
fn the_example_as_shipped_states_the_defaults_and_passes_check_config() {
    let loaded = load(Some(&example_path())).expect("the example loads");
    let defaults = FederatorConfig::default();
    assert_eq!(loaded.config, defaults, "the set values are the defaults");
    let Cli { ok, stdout, stderr } =
        federator_cli(&[&"check-config", &"--config", &example_path()]);
    assert!(ok, "{stdout}{}", stderr);
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(stdout.contains("no [[agents]] configured"), "{stdout}");
}

#[test]
fn the_example_documents_every_key_and_only_those() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let all = uncommented(&text);
    let documented = keys_in(&all);
    let schema: BTreeSet<String> = schema_keys().into_iter().collect();
    assert_eq!(documented, schema, "packaging/federator.toml vs the schema");
    // With its commented settings switched on, the example still parses.
    FederatorConfig::parse(&all, Path::new("federator.toml")).expect("uncommented example parses");
}

#[test]
fn check_config_names_the_key_and_the_fix_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("federator.toml");
    std::fs::write(
        &path,
        "[scrape]\nschedule = \"*/15 * * * *\"\n[[agents]]\nname = \"db1\"\nurl = \"https://db1:9187\"\n",
    )
    .unwrap();
    let Cli { ok, stdout, .. } = federator_cli(&[&"check-config", &"--config", &path]);
    assert!(!ok, "{stdout}");
    assert!(stdout.contains("error: scrape.schedule:"), "{stdout}");
    assert!(stdout.contains("error: tls.cert_file: missing"), "{stdout}");
    assert!(stdout.contains("fix: "), "{stdout}");

    std::fs::write(&path, "[scrape]\nshedule = \"* * * * * *\"\n").unwrap();
    let Cli { ok, stderr, .. } = federator_cli(&[&"check-config", &"--config", &path]);
    assert!(!ok);
    assert!(stderr.contains("unknown key `scrape.shedule`"), "{stderr}");
    assert!(stderr.contains("did you mean `schedule`?"), "{stderr}");
}
