//! The evaluator against a real central database: agent data written through the real
//! sink, rules stored from rule files, cycles run at chosen wall-clock times.
//! Flapping, per-target overrides, restarts mid-`for`, late alerts after a backfill,
//! a single evaluator across federators, the rule repository, and the Grafana views.

mod support;

use std::time::Duration;

use pga_federator::alerting::engine::Settings;
use pga_federator::alerting::rule::RuleSpec;
use pga_federator::db::rules::{self, RuleError};
use pga_format::MetricKind::Gauge;
use sqlx::Connection;
use support::alerting::*;

const STEP: i64 = 10_000;

fn settings() -> Settings {
    Settings {
        step_ms: STEP,
        late_after_ms: 60_000,
        no_data_for_ms: 300_000,
        max_steps_per_cycle: 1000,
    }
}

const FLAP: &str = r#"
[[rules]]
name = "Flap"
query = "last(flap_level[10s])"
comparison = ">"
threshold = 5
keep_firing_for_secs = 60
severity = "warning"
annotations.summary = "level {{ $value }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_with_keep_firing_for_gives_one_firing_and_one_resolution() {
    let (url, sink, _pool, _dir) = rule_db("flapping", &[("flap.toml", FLAP)]).await;
    let mut feed = Feed::new("db1", 1, &[("flap_level", &[], Gauge)]);
    let mut ev = evaluator(&url, settings()).await;
    // The condition toggles at every evaluation for 3 minutes, then stays clear.
    let start = floor(now_ms(), STEP) - 300_000;
    for k in 0..30i64 {
        let ts = start + k * STEP;
        let v = if k < 18 && k % 2 == 0 { 9.0 } else { 1.0 };
        feed.push(&sink, &[(ts, vec![v])]).await;
        cycle(&mut ev, ts + 1000).await;
    }
    let out = outbox(&url).await;
    assert_eq!(
        out,
        [
            ("firing".to_owned(), "Flap".to_owned(), false),
            ("resolved".to_owned(), "Flap".to_owned(), false)
        ],
        "one firing and one resolution"
    );
    let a = alerts(&url).await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].1, "resolved");
    // Last true at k = 16; clear for 60 s at k = 22.
    assert_eq!(a[0].2, Some(start));
    assert_eq!(a[0].3, Some(start + 22 * STEP));
    assert!(!a[0].4, "evaluated live, not late");
}

const OVERRIDES: &str = r#"
# The reporting instance of db1 runs hot by design: page only above 90 %.
[[overrides]]
rule = "PgConnectionsHigh"
match = { agent = "db1", pg_instance = "reporting" }
threshold = 0.9
resolve_threshold = 0.88
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_with_its_own_threshold_the_others_with_the_packs() {
    let (url, sink) = database("overrides").await;
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(&url).await;
    let files = load_rules(
        &pool,
        dir.path(),
        &[("overrides.toml", OVERRIDES)],
        &[&pack()],
    )
    .await;
    assert!(files.iter().map(|f| f.rules.len()).sum::<usize>() >= 30);
    // db1: main at 85 % (the pack's 80 % fires), reporting at 85 % (its own 90 %: no)
    // and 95 % later; db2: reporting at 85 % (not db1's: the pack's threshold fires).
    let series = |inst: &'static str| -> Vec<SeriesDef<'static>> {
        let labels: &'static [(&'static str, &'static str)] = match inst {
            "main" => &[("pg_instance", "main"), ("backend_type", "client backend")],
            _ => &[
                ("pg_instance", "reporting"),
                ("backend_type", "client backend"),
            ],
        };
        let inst_only: &'static [(&'static str, &'static str)] = match inst {
            "main" => &[("pg_instance", "main")],
            _ => &[("pg_instance", "reporting")],
        };
        vec![
            ("pg_stat_activity_sessions", labels, Gauge),
            ("pg_settings_max_connections", inst_only, Gauge),
            (
                "pg_settings_superuser_reserved_connections",
                inst_only,
                Gauge,
            ),
        ]
    };
    let mut s1 = series("main");
    s1.extend(series("reporting"));
    let mut db1 = Feed::new("db1", 1, &s1);
    let mut db2 = Feed::new("db2", 2, &series("reporting"));
    let mut ev = evaluator(
        &url,
        Settings {
            step_ms: 15_000,
            ..settings()
        },
    )
    .await;
    let start = floor(now_ms() - 800_000, 15_000);
    for k in 0..52i64 {
        let ts = start + k * 15_000;
        let reporting = if k < 30 { 85.0 } else { 95.0 };
        db1.push(
            &sink,
            &[(ts, vec![85.0, 100.0, 0.0, reporting, 100.0, 0.0])],
        )
        .await;
        db2.push(&sink, &[(ts, vec![85.0, 100.0, 0.0])]).await;
        cycle(&mut ev, ts + 1000).await;
    }
    let mut firing: Vec<(String, String, i64)> = alerts(&url)
        .await
        .into_iter()
        .filter(|a| a.0 == "PgConnectionsHigh" && a.1 == "firing")
        .map(|a| {
            (
                a.5["agent"].clone(),
                a.5["pg_instance"].clone(),
                a.2.unwrap(),
            )
        })
        .collect();
    firing.sort();
    assert_eq!(
        firing,
        [
            ("db1".to_owned(), "main".to_owned(), start + 300_000),
            // db1's reporting passes its own 90 % at k = 30, and fires 5 minutes later.
            (
                "db1".to_owned(),
                "reporting".to_owned(),
                start + 30 * 15_000 + 300_000
            ),
            ("db2".to_owned(), "reporting".to_owned(), start + 300_000),
        ]
    );
    let text = sql(
        "overrides",
        "SELECT annotations->>'description' FROM alerts WHERE labels->>'pg_instance' = 'reporting' AND labels->>'agent' = 'db1'",
    );
    assert!(
        text.contains("above 90%"),
        "the annotation shows the instance's own threshold: {text}"
    );
}

const SLOW: &str = r#"
[[rules]]
name = "Slow"
query = "last(slow_level[10s])"
comparison = ">"
threshold = 5
for_secs = 60
severity = "critical"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_for_fires_on_time_and_notifies_once() {
    let (url, sink, _pool, _dir) = rule_db("restart", &[("slow.toml", SLOW)]).await;
    let mut feed = Feed::new("db1", 1, &[("slow_level", &[], Gauge)]);
    let start = floor(now_ms(), STEP) - 300_000;
    let mut ev = evaluator(&url, settings()).await;
    // Pending from k = 2; the evaluator goes away at k = 5 (30 s into its 60 s).
    for k in 0..6i64 {
        feed.push(
            &sink,
            &[(start + k * STEP, vec![if k >= 2 { 9.0 } else { 1.0 }])],
        )
        .await;
        cycle(&mut ev, start + k * STEP + 500).await;
    }
    assert_eq!(alerts(&url).await[0].1, "pending");
    drop(ev);
    // Data went on while it was away; a new evaluator (a restarted federator) catches up.
    for k in 6..12i64 {
        feed.push(&sink, &[(start + k * STEP, vec![9.0])]).await;
    }
    let mut ev = evaluator(&url, settings()).await;
    cycle(&mut ev, start + 11 * STEP + 500).await;
    let a = alerts(&url).await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].1, "firing");
    assert_eq!(
        a[0].2,
        Some(start + 8 * STEP),
        "active at k = 2, fired 60 s later"
    );
    // More cycles, and another restart while firing: no second firing notification.
    for k in 12..15i64 {
        feed.push(&sink, &[(start + k * STEP, vec![9.0])]).await;
        cycle(&mut ev, start + k * STEP + 500).await;
    }
    drop(ev);
    let mut ev = evaluator(&url, settings()).await;
    feed.push(&sink, &[(start + 15 * STEP, vec![9.0])]).await;
    cycle(&mut ev, start + 15 * STEP + 500).await;
    assert_eq!(
        outbox(&url).await,
        [("firing".to_owned(), "Slow".to_owned(), false)],
        "notified once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_inside_a_backfill_is_one_late_alert_with_its_true_times() {
    let (url, sink, _pool, _dir) = rule_db("late", &[("slow.toml", SLOW)]).await;
    let mut feed = Feed::new("db1", 1, &[("slow_level", &[], Gauge)]);
    let start = floor(now_ms(), STEP) - 600_000;
    let mut ev = evaluator(&url, settings()).await;
    for k in 0..3i64 {
        feed.push(&sink, &[(start + k * STEP, vec![1.0])]).await;
        cycle(&mut ev, start + k * STEP + 500).await;
    }
    // The agent was cut off: nothing arrives, cycles find nothing new, nothing changes.
    for k in 3..20i64 {
        let r = cycle(&mut ev, start + k * STEP + 500).await;
        assert_eq!(r.steps, 0);
    }
    // Its data arrives at once (a backfill): 9 from k = 5 to 14 (100 s), 1 after.
    let late: Vec<(i64, Vec<f64>)> = (3..40i64)
        .map(|k| {
            (
                start + k * STEP,
                vec![if (5..15).contains(&k) { 9.0 } else { 1.0 }],
            )
        })
        .collect();
    feed.push(&sink, &late).await;
    let r = cycle(&mut ev, start + 40 * STEP + 500).await;
    assert_eq!(r.steps, 37, "every missed step evaluated, in order");
    assert!(r.late_steps >= 30, "{r:?}");
    let a = alerts(&url).await;
    assert_eq!(a.len(), 1, "{a:?}");
    let (_, state, fired, resolved, late, _) = &a[0];
    assert_eq!(state, "resolved");
    assert_eq!(*fired, Some(start + 11 * STEP), "active at k = 5, + 60 s");
    assert_eq!(*resolved, Some(start + 15 * STEP), "the first clear step");
    assert!(late, "marked late");
    assert_eq!(
        outbox(&url).await,
        [("resolved".to_owned(), "Slow".to_owned(), false)],
        "notified once, with both times"
    );
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    let (starts, ends, is_late): (String, String, bool) =
        sqlx::query_as("SELECT payload->>'startsAt', payload->>'endsAt', late FROM alert_outbox")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(
        starts,
        pga_federator::notify::payload::rfc3339(start + 11 * STEP)
    );
    assert_eq!(
        ends,
        pga_federator::notify::payload::rfc3339(start + 15 * STEP)
    );
    assert!(is_late);
    // For Grafana: the history shows it, with the annotation columns.
    let h = sql(
        "late",
        "SELECT alertname, late, tags, timeend IS NOT NULL FROM alerts_history",
    );
    assert_eq!(h.trim(), "Slow|t|Slow,critical,db1,late|t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_evaluator_at_a_time_across_federators() {
    let (url, sink, _pool, _dir) = rule_db("single", &[("slow.toml", SLOW)]).await;
    let mut feed = Feed::new("db1", 1, &[("slow_level", &[], Gauge)]);
    let t = floor(now_ms(), STEP);
    feed.push(&sink, &[(t, vec![9.0])]).await;
    // Another federator's evaluator holds the lock.
    let mut other = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(7247, 1)")
        .execute(&mut other)
        .await
        .unwrap();
    let mut ev = evaluator(&url, settings()).await;
    let r = ev.cycle(t + 500).await.unwrap();
    assert!(!r.ran, "skipped while another evaluator runs");
    assert!(alerts(&url).await.is_empty());
    drop(other);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = cycle(&mut ev, t + 500).await;
    assert_eq!(r.steps, 1);
    assert_eq!(alerts(&url).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_reads_too_much_is_cut_by_the_statement_timeout_and_fails_alone() {
    let (url, sink, _pool, _dir) = rule_db("bounded", &[("slow.toml", SLOW)]).await;
    let mut feed = Feed::new("db1", 1, &[("slow_level", &[], Gauge)]);
    let t = floor(now_ms(), STEP);
    feed.push(&sink, &[(t, vec![9.0])]).await;
    // The evaluator's reads run with a statement timeout (alerting.query_timeout_secs).
    let tight = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options(&url).options([("statement_timeout", "500")]))
        .await
        .unwrap();
    let mut ev = pga_federator::alerting::evaluator::Evaluator::new(
        tight,
        options(&url),
        pga_federator::alerting::evaluator::EvaluatorSettings {
            engine: settings(),
            max_silence_ms: 900_000,
            external_url: String::new(),
            only_agents: None,
        },
        None,
    );
    // Hold the samples table so that a read of it takes longer than the timeout (as a
    // query over far too many series would).
    let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE samples IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    let r = ev.cycle(t + 500).await.expect("the cycle itself goes on");
    assert!(r.ran);
    assert_eq!(r.errors, 1, "the rule failed, alone: {r:?}");
    assert!(alerts(&url).await.is_empty());
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    // With the lock gone, the next data is evaluated.
    feed.push(&sink, &[(t + STEP, vec![9.0])]).await;
    let mut ev = evaluator(&url, settings()).await;
    cycle(&mut ev, t + STEP + 500).await;
    assert_eq!(alerts(&url).await.len(), 1);
}

fn spec(name: &str) -> RuleSpec {
    let f =
        pga_federator::alerting::rulefile::RuleFile::parse(SLOW, std::path::Path::new("x.toml"))
            .unwrap();
    let mut s = f.rules[0].spec.clone();
    s.name = name.into();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rule_repository_refuses_bad_rules_and_protects_file_rules() {
    let (_url, _sink, pool, dir) = rule_db("repository", &[("slow.toml", SLOW)]).await;
    let mut c = pool.acquire().await.unwrap();
    let mut tx = c.begin().await.unwrap();
    let created = rules::create(&mut tx, &spec("Mine"), "api", None)
        .await
        .unwrap();
    assert_eq!(created.revision, 1);
    let mut bad = spec("Bad");
    bad.query = "avg_over_time(x[5m])".into();
    let Err(RuleError::Invalid(p)) = rules::create(&mut tx, &bad, "api", None).await else {
        panic!("a bad rule is refused")
    };
    assert_eq!(p[0].field, "query");
    assert!(matches!(
        rules::create(&mut tx, &spec("Mine"), "api", None).await,
        Err(RuleError::NameTaken(_))
    ));
    let mut changed = spec("Mine");
    changed.threshold = 7.0;
    let updated = rules::update(&mut tx, created.id, &changed).await.unwrap();
    assert_eq!((updated.revision, updated.spec.threshold), (2, 7.0));
    let file_rule = rules::get_by_name(&mut *tx, "Slow").await.unwrap().unwrap();
    assert!(file_rule.origin.starts_with("file:"));
    assert!(matches!(
        rules::update(&mut tx, file_rule.id, &spec("Slow")).await,
        Err(RuleError::FromFile { .. })
    ));
    let disabled = rules::set_enabled(&mut tx, file_rule.id, false)
        .await
        .unwrap();
    assert!(!disabled.spec.enabled);
    rules::delete(&mut tx, created.id).await.unwrap();
    tx.commit().await.unwrap();
    drop(c);
    // Reloading the files keeps the file rule disabled; removing it from the files
    // deletes it.
    load_rules(&pool, dir.path(), &[("slow.toml", SLOW)], &[]).await;
    let r = rules::get_by_name(&pool, "Slow").await.unwrap().unwrap();
    assert!(!r.spec.enabled, "enabled/disabled survives a reload");
    load_rules(&pool, dir.path(), &[("slow.toml", FLAP)], &[]).await;
    assert!(rules::get_by_name(&pool, "Slow").await.unwrap().is_none());
    assert_eq!(rules::list(&pool).await.unwrap().len(), 1);
}
