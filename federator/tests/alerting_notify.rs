//! Notifications from the outbox to real HTTP receivers: a webhook that answers 500
//! for a while gets every notification afterwards, in order, signed; a receiver that
//! hangs or answers garbage is timed out and retried without holding another one
//! up; a maintenance window mutes (and records) notifications.
//!
//! The issue's receiver outage is 2 minutes; here it lasts `PGA_TEST_WEBHOOK_OUTAGE_SECS`
//! (default 3) with retries from 100 ms doubling to 1 s: the same behaviour (failed
//! attempts, backoff, the queue waiting in order, delivery once it answers) in seconds.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pga_federator::alerting::engine::Settings;
use pga_federator::alerting::metrics::AlertingMetrics;
use pga_federator::db::{maintenance, outbox};
use pga_federator::notify::http::{Auth, Client};
use pga_federator::notify::worker::{DeliverySettings, Kind, Receiver as Target, Worker};
use pga_format::MetricKind::Gauge;
use sqlx::Connection;
use support::alerting::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, watch};

const STEP: i64 = 10_000;
const SECRET: &[u8] = b"a shared secret";

const RULE: &str = r#"
[[rules]]
name = "Level"
query = "last(level[10s])"
comparison = ">"
threshold = 5
severity = "warning"
annotations.summary = "{{ $labels.pg_instance }} at {{ $value }}"
"#;

fn settings() -> Settings {
    Settings {
        step_ms: STEP,
        late_after_ms: 600_000,
        no_data_for_ms: 300_000,
        max_steps_per_cycle: 100,
    }
}

fn delivery() -> DeliverySettings {
    DeliverySettings {
        retry_initial: Duration::from_millis(100),
        retry_max: Duration::from_secs(1),
        resend: Duration::from_secs(60),
        resolved_resend: Duration::from_secs(900),
        valid_for: Duration::from_secs(240),
        external_url: "https://federator.test".into(),
        poll: Duration::from_millis(200),
    }
}

fn webhook(name: &str, url: &str, secret: Option<&[u8]>, timeout_secs: u64) -> Target {
    Target {
        name: name.into(),
        kind: Kind::Webhook {
            secret: secret.map(<[u8]>::to_vec),
        },
        client: Client::new(url, None, Auth::None, Duration::from_secs(timeout_secs)).unwrap(),
    }
}

fn metrics() -> AlertingMetrics {
    AlertingMetrics::register(&mut prometheus_client::registry::Registry::default())
}

/// Starts workers for `targets`; stop them by sending `true`.
async fn workers(url: &str, targets: Vec<Target>) -> (Arc<Notify>, watch::Sender<bool>) {
    let pool = pool(url).await;
    outbox::ensure_receivers(
        &pool,
        &targets
            .iter()
            .map(|t| (t.name.clone(), t.kind.as_str()))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let wake = Arc::new(Notify::new());
    let (stop_tx, stop) = watch::channel(false);
    for t in targets {
        let w = Worker::new(t, delivery(), options(url), metrics());
        tokio::spawn(w.run(wake.clone(), stop.clone()));
    }
    (wake, stop_tx)
}

fn feed() -> Feed {
    Feed::new(
        "db1",
        1,
        &[
            ("level", &[("pg_instance", "a")], Gauge),
            ("level", &[("pg_instance", "b")], Gauge),
            ("level", &[("pg_instance", "c")], Gauge),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_for_a_while_gets_every_notification_afterwards_in_order_signed() {
    let outage = Duration::from_secs(
        std::env::var("PGA_TEST_WEBHOOK_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    );
    let (url, sink, _pool, _dir) = rule_db("webhook_outage", &[("level.toml", RULE)]).await;
    let outage_ends = Instant::now() + outage;
    let hook = Receiver::start(Mode::FailUntil(outage_ends)).await;
    let (wake, stop) = workers(&url, vec![webhook("ops", &hook.url(), Some(SECRET), 5)]).await;
    let mut ev = evaluator(&url, settings()).await;
    let mut feed = feed();
    let t0 = floor(now_ms(), STEP) - 60_000;
    // Three alerts fire, then resolve one after the other: six notifications.
    for (k, values) in [
        [9.0, 9.0, 9.0],
        [1.0, 9.0, 9.0],
        [1.0, 1.0, 9.0],
        [1.0, 1.0, 1.0],
    ]
    .into_iter()
    .enumerate()
    {
        let ts = t0 + k as i64 * STEP;
        feed.push(&sink, &[(ts, values.to_vec())]).await;
        let r = cycle(&mut ev, ts + 500).await;
        assert!(r.notifications > 0);
        wake.notify_waiters();
    }
    eventually(
        "six deliveries after the outage",
        outage.as_secs() + 30,
        || hook.delivered().len() >= 6,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = hook.delivered();
    assert_eq!(got.len(), 6, "each notification delivered once");
    assert!(
        hook.attempts() > 6,
        "the receiver was tried while it failed: {} attempts",
        hook.attempts()
    );
    for r in &got {
        assert!(
            r.at >= outage_ends,
            "nothing was accepted during the outage"
        );
        let sig = r.signature.as_deref().expect("signed");
        assert!(signature_verifies(sig, SECRET, &r.body), "{sig}");
        assert!(!signature_verifies(sig, b"another secret", &r.body));
        assert_eq!(r.json["version"], "4");
        assert_eq!(r.json["receiver"], "ops");
    }
    // In the outbox's order: per alert, firing before resolved.
    let seq: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            (
                r.json["status"].as_str().unwrap().to_owned(),
                r.json["alerts"][0]["labels"]["pg_instance"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    let expect: Vec<(String, String)> = sqlx::query_as(
        "SELECT status, payload->'labels'->>'pg_instance' FROM alert_outbox ORDER BY id",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert_eq!(seq, expect, "delivered in the outbox's order");
    for inst in ["a", "b", "c"] {
        let of: Vec<&str> = seq
            .iter()
            .filter(|(_, i)| i == inst)
            .map(|(s, _)| s.as_str())
            .collect();
        assert_eq!(of, ["firing", "resolved"], "{inst}");
    }
    let resolved_a = &got[3].json["alerts"][0];
    assert_eq!(
        resolved_a["endsAt"],
        pga_federator::notify::payload::rfc3339(t0 + STEP)
    );
    assert_eq!(
        resolved_a["startsAt"],
        pga_federator::notify::payload::rfc3339(t0)
    );
    assert_eq!(resolved_a["annotations"]["summary"], "a at 1");
    // The delivery record: every one delivered, the first after several attempts.
    let rows: Vec<(String, i32)> =
        sqlx::query_as("SELECT outcome, attempts FROM alert_deliveries ORDER BY outbox_id")
            .fetch_all(&mut c)
            .await
            .unwrap();
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r.0 == "delivered"));
    assert!(rows[0].1 > 1, "{rows:?}");
    stop.send_replace(true);
}

/// A TCP server that accepts and never answers.
async fn hanging() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    format!("http://{addr}/hook")
}

/// A TCP server that answers garbage and closes.
async fn garbage() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 4096];
            let _read = s.read(&mut buf).await;
            s.write_all(b"\x00\x17garbage, not HTTP\r\n\r\n").await.ok();
            s.shutdown().await.ok();
        }
    });
    format!("http://{addr}/hook")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_hangs_or_answers_garbage_is_retried_and_holds_no_other_up() {
    let (url, sink, pool, _dir) = rule_db("webhook_hang", &[("level.toml", RULE)]).await;
    let ok = Receiver::start(Mode::Ok).await;
    let (wake, stop) = workers(
        &url,
        vec![
            webhook("hangs", &hanging().await, None, 1),
            webhook("garbage", &garbage().await, None, 1),
            webhook("ok", &ok.url(), None, 1),
        ],
    )
    .await;
    let mut ev = evaluator(&url, settings()).await;
    let mut feed = feed();
    let ts = floor(now_ms(), STEP);
    feed.push(&sink, &[(ts, vec![9.0, 1.0, 1.0])]).await;
    cycle(&mut ev, ts + 500).await;
    let started = Instant::now();
    wake.notify_waiters();
    eventually("the healthy receiver is served", 10, || {
        ok.delivered().len() == 1
    })
    .await;
    let served_in = started.elapsed();
    // Meanwhile the others failed and are retried.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let state = outbox::receivers(&pool).await.unwrap();
    let by = |n: &str| state.iter().find(|r| r.name == n).unwrap().clone();
    let (h, g, o) = (by("hangs"), by("garbage"), by("ok"));
    assert!(h.failures >= 2, "{h:?}");
    assert!(
        h.last_error
            .as_deref()
            .unwrap_or("")
            .contains("no answer within 1 s"),
        "{h:?}"
    );
    assert_eq!(h.queued, 1);
    assert!(g.failures >= 2, "{g:?}");
    assert!(g.last_error.is_some(), "{g:?}");
    assert_eq!((o.failures, o.queued), (0, 0), "{o:?}");
    assert!(
        served_in < Duration::from_secs(5),
        "served in {served_in:?}"
    );
    stop.send_replace(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maintenance_window_mutes_and_records_and_the_alert_is_told_after_it() {
    let (url, sink, pool, _dir) = rule_db("maintenance", &[("level.toml", RULE)]).await;
    let hook = Receiver::start(Mode::Ok).await;
    let (wake, stop) = workers(&url, vec![webhook("ops", &hook.url(), None, 5)]).await;
    let now = now_ms();
    let mut c = pool.acquire().await.unwrap();
    let mut tx = c.begin().await.unwrap();
    let w = maintenance::create(
        &mut tx,
        &maintenance::WindowSpec {
            matchers: vec![maintenance::MatcherSpec {
                name: "pg_instance".into(),
                op: "=~".into(),
                value: "a|b".into(),
            }],
            starts_at_ms: now - 600_000,
            ends_at_ms: now + 600_000,
            comment: "upgrade of a and b".into(),
        },
        None,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    drop(c);
    let mut ev = evaluator(&url, settings()).await;
    let mut feed = feed();
    let t0 = floor(now, STEP) - 30_000;
    feed.push(&sink, &[(t0, vec![9.0, 9.0, 9.0])]).await;
    cycle(&mut ev, now).await;
    wake.notify_waiters();
    // b resolves during the window: recorded as muted too.
    feed.push(&sink, &[(t0 + STEP, vec![9.0, 1.0, 9.0])]).await;
    cycle(&mut ev, now).await;
    wake.notify_waiters();
    eventually("c is told", 10, || hook.delivered().len() == 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(hook.delivered().len(), 1, "a and b are muted");
    assert_eq!(
        hook.delivered()[0].json["alerts"][0]["labels"]["pg_instance"],
        "c"
    );
    let rows = outbox(&url).await;
    assert_eq!(
        rows.iter().filter(|r| r.2).count(),
        2,
        "the muted firings of a and b are recorded: {rows:?}"
    );
    let muted: Vec<(String,)> =
        sqlx::query_as("SELECT outcome FROM alert_deliveries WHERE outcome = 'muted'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(muted.len(), 2);
    // The window ends: a, still firing, is told; b, which resolved unseen, is not.
    let mut c = pool.acquire().await.unwrap();
    let mut tx = c.begin().await.unwrap();
    let mut spec = maintenance::get(&mut *tx, w.id)
        .await
        .unwrap()
        .unwrap()
        .spec;
    spec.ends_at_ms = now_ms() - 1000;
    maintenance::update(&mut tx, w.id, &spec).await.unwrap();
    tx.commit().await.unwrap();
    drop(c);
    feed.push(&sink, &[(t0 + 2 * STEP, vec![9.0, 1.0, 9.0])])
        .await;
    cycle(&mut ev, now_ms()).await;
    wake.notify_waiters();
    eventually("a is told once the window ended", 10, || {
        hook.delivered().len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = hook.delivered();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].json["alerts"][0]["labels"]["pg_instance"], "a");
    assert_eq!(got[1].json["status"], "firing");
    stop.send_replace(true);
}
