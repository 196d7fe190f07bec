//! The agent's documentation says what the code does: docs/families.md's table of
//! PostgreSQL families lists every family of the catalogue in the group it is collected
//! in, and docs/agent.md's configuration table every key of `agent.toml`.

use std::collections::BTreeMap;

use pga_agent::collect::postgres::catalog::FAMILIES;

/// A page of docs/.
fn page(name: &str) -> String {
    let path = format!("{}/../docs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Family → group, from the rows of docs/families.md's table.
fn documented() -> BTreeMap<String, String> {
    let text = page("families.md");
    let section = text
        .split("# PostgreSQL collection")
        .nth(1)
        .expect("docs/families.md starts with # PostgreSQL collection");
    let mut out = BTreeMap::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        for name in cells[1].split(',') {
            let name = name.trim().trim_matches('`');
            out.insert(name.to_owned(), cells[2].to_owned());
        }
    }
    out
}

#[test]
fn the_docs_list_every_family_in_its_group() {
    let documented = documented();
    let code: BTreeMap<String, String> = FAMILIES
        .iter()
        .map(|f| (f.name.to_owned(), f.group.to_string()))
        .collect();
    assert_eq!(documented, code);
}

#[test]
fn database_counters_are_collected_at_every_fast_pass() {
    let database = FAMILIES.iter().find(|f| f.name == "database").unwrap();
    assert_eq!(database.group.to_string(), "fast");
    for metric in [
        "pg_stat_database_xact_commit_total",
        "pg_stat_database_xact_rollback_total",
        "pg_stat_database_deadlocks_total",
        "pg_stat_database_conflicts_total",
        "pg_stat_database_temp_bytes_total",
    ] {
        assert!(
            database.metrics.iter().any(|m| m.name == metric),
            "{metric}"
        );
    }
}

/// Every key of `agent.toml` in docs/agent.md's configuration table, and no other. A
/// cell names its table once: `intervals.fast_secs`, `slow_secs` are both of
/// `[intervals]`; `[[postgres]]` names the table of the keys after it.
#[test]
fn the_docs_list_every_configuration_key() {
    let text = page("agent.md");
    let section = text
        .split("\n## Configuration\n")
        .nth(1)
        .expect("docs/agent.md has a Configuration section");
    let mut documented = std::collections::BTreeSet::new();
    for line in section
        .lines()
        .skip_while(|l| !l.starts_with("| key"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
    {
        let cell = line.trim_matches('|').split(" | ").next().unwrap_or("");
        let mut table = String::new();
        for span in cell.split('`').skip(1).step_by(2) {
            if let Some(t) = span.strip_prefix("[[").and_then(|s| s.strip_suffix("]]")) {
                table = t.to_owned();
            } else if let Some((t, key)) = span.split_once('.') {
                table = t.to_owned();
                documented.insert(format!("{t}.{key}"));
            } else {
                documented.insert(format!("{table}.{span}"));
            }
        }
    }
    let code: std::collections::BTreeSet<String> =
        pga_agent::config::schema_keys().into_iter().collect();
    assert_eq!(documented, code);
}
