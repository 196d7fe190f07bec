//! Replicas must agree on the agents: each writes its configuration's `[[agents]]`
//! to the `agents` table at start, and the table is what they share. A replica that
//! starts while others run, with agents that differ from what the table holds, says
//! each difference and follows the table (it does not overwrite what the running
//! replicas pull).

use std::collections::BTreeMap;

use crate::config::AgentEntry;
use crate::db::agents::Pulled;

/// Each difference between this replica's `[[agents]]` and the table's
/// configuration agents, one sentence each; empty when they agree.
pub fn differences(config: &[AgentEntry], table: &[Pulled]) -> Vec<String> {
    let table: BTreeMap<&str, &Pulled> = table.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut out = Vec::new();
    for a in config {
        match table.get(a.name.as_str()) {
            None => out.push(format!(
                "agent {} is in this replica's configuration, not in the agents table",
                a.name
            )),
            Some(t) => {
                if t.url != a.url {
                    out.push(format!(
                        "agent {}: url {} here, {} in the agents table",
                        a.name, a.url, t.url
                    ));
                }
                if t.schedule != a.schedule {
                    out.push(format!(
                        "agent {}: schedule {:?} here, {:?} in the agents table",
                        a.name, a.schedule, t.schedule
                    ));
                }
                if t.labels.0 != a.labels {
                    out.push(format!(
                        "agent {}: labels {:?} here, {:?} in the agents table",
                        a.name, a.labels, t.labels.0
                    ));
                }
            }
        }
    }
    for name in table.keys() {
        if !config.iter().any(|a| a.name == *name) {
            out.push(format!(
                "agent {name} is in the agents table, not in this replica's configuration"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, url: &str) -> AgentEntry {
        AgentEntry {
            name: name.into(),
            url: url.into(),
            ..AgentEntry::default()
        }
    }

    fn row(name: &str, url: &str) -> Pulled {
        Pulled {
            name: name.into(),
            url: url.into(),
            schedule: None,
            labels: sqlx::types::Json(BTreeMap::new()),
        }
    }

    #[test]
    fn the_same_agents_agree() {
        let c = [entry("a", "https://a:9187"), entry("b", "https://b:9187")];
        let t = [row("b", "https://b:9187"), row("a", "https://a:9187")];
        assert!(differences(&c, &t).is_empty());
    }

    #[test]
    fn every_difference_is_said() {
        let mut c = vec![
            entry("a", "https://a:9187"),
            entry("only-here", "https://x:1"),
        ];
        c[0].schedule = Some("*/5 * * * * *".into());
        let t = [
            row("a", "https://a2:9187"),
            row("only-there", "https://y:1"),
        ];
        let d = differences(&c, &t);
        assert_eq!(d.len(), 4, "{d:?}");
        assert!(
            d[0].contains("url https://a:9187 here, https://a2:9187"),
            "{d:?}"
        );
        assert!(d[1].contains("schedule"), "{d:?}");
        assert!(
            d[2].contains("only-here is in this replica's configuration"),
            "{d:?}"
        );
        assert!(d[3].contains("only-there is in the agents table"), "{d:?}");
    }
}
