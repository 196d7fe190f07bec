//! One agent's batches fail on a statement error while the others ingest on
//! schedule: the failure is that agent's (counted with its reason, logged with its
//! name and the SQLSTATE, retried with its backoff), never a pause of the whole
//! federator; and once the cause is gone the agent catches up with nothing lost.

mod support;

use support::pull::*;

/// Refuses every sample of agent `bad` with the error TimescaleDB raises when late
/// data into compressed chunks decompresses more than its per-transaction limit
/// (SQLSTATE 53400, configuration_limit_exceeded): an error of that agent's batch,
/// from a class ("insufficient resources") that once paused every agent.
const REJECT_BAD: &str = "\
CREATE FUNCTION reject_bad() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM series se JOIN agents a ON a.id = se.agent_id
               WHERE se.id = NEW.series_id AND a.name = 'bad') THEN
        RAISE EXCEPTION 'tuple decompression limit exceeded by operation'
            USING ERRCODE = 'configuration_limit_exceeded',
                  DETAIL = 'current limit: 100000, tuples decompressed: 100829';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER reject_bad BEFORE INSERT ON samples FOR EACH ROW EXECUTE FUNCTION reject_bad();";

fn failures(metrics: &str, agent: &str, reason: &str) -> u64 {
    let prefix =
        format!("pga_federator_scrape_failures_total{{agent=\"{agent}\",reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_statement_error_in_one_agents_batch_is_that_agents_failure() {
    let (dir, tls, pg) = pull_setup();
    let opts = SimOptions {
        series: 12,
        ..SimOptions::default()
    };
    let agents: Vec<(&str, StoreAgent)> = ["good1", "bad", "good2"]
        .into_iter()
        .map(|n| (n, StoreAgent::start(&dir.path().join(n), &tls, opts)))
        .collect();
    let list: Vec<(&str, String)> = agents.iter().map(|(n, a)| (*n, a.url())).collect();
    let mport = free_port();
    let cfg = federator_config(dir.path(), &pg, &tls, &list, mport, "");
    migrate(&cfg);
    sql(&pg, REJECT_BAD);

    let mut fed = Federator::start(&cfg);
    let (good1, good2) = (&agents[0].1, &agents[2].1);
    // The good agents keep up with their sealed blocks while bad keeps failing.
    wait_until("bad refused several times", 60, || {
        failures(&metrics(mport), "bad", "database_rejected") >= 3
    });
    for (name, agent) in [("good1", good1), ("good2", good2)] {
        let newest = agent.sequences().unwrap().1;
        wait_until(&format!("{name} pulled on schedule"), 10, || {
            cursor(&pg, name).is_some_and(|c| c >= newest)
        });
    }
    let m = metrics(mport);
    assert!(m.contains("pga_federator_database_up 1"), "{m}");
    assert!(m.contains("pga_federator_agent_up{agent=\"bad\"} 0"), "{m}");
    assert!(
        m.contains("pga_federator_agent_up{agent=\"good1\"} 1"),
        "{m}"
    );
    assert_eq!(failures(&m, "good1", "database_rejected"), 0, "{m}");
    assert_eq!(failures(&m, "bad", "database_unavailable"), 0, "{m}");
    assert_eq!(cursor(&pg, "bad"), None, "nothing of bad was committed");
    let log = fed.log_text();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("scrape failed") && l.contains("agent=bad"))
        .collect();
    assert!(!refused.is_empty(), "{log}");
    assert!(
        refused
            .iter()
            .all(|l| l.contains("sqlstate=53400") && l.contains("reason=database_rejected")),
        "{refused:?}"
    );
    assert!(
        !log.contains("database unavailable"),
        "one agent's error paused everything:\n{log}"
    );
    // Backed off (1 s, then 2 s in this test) against the every-second schedule
    // the good agents keep.
    let scrapes = |agent: &str| -> u64 {
        let prefix = format!("pga_federator_scrapes_total{{agent=\"{agent}\"}} ");
        m.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(scrapes("bad") < scrapes("good1"), "{m}");

    // The cause goes: bad catches up, nothing lost, nothing doubled.
    sql(&pg, "DROP TRIGGER reject_bad ON samples");
    for (_, a) in &agents {
        a.set_writing(false);
    }
    for (name, agent) in &agents {
        wait_caught_up(&pg, name, agent, 30);
    }
    fed.stop();
    for (name, agent) in &agents {
        let n = assert_same(&pg, name, agent, i64::MIN);
        assert!(n > 100, "{name}: {n} samples compared");
    }
}
