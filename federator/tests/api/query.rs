//! Series search and range queries over data ingested by the sink: raw samples,
//! 1-minute and 1-hour rollups picked by the step, each function, the selector
//! syntax of `pga-agent query` with the `agent` label.

use pga_federator::auth::Role;
use pga_format::{MetricKind, SeriesId};
use serde_json::Value;

use crate::support::api::TestApi;
use crate::support::sink::{AGENT, batch, block, meta};

const STEP_MS: i64 = 10_000;
/// Two hours of samples every 10 s.
const SAMPLES: i64 = 720;

/// The counter's value at sample `k`: +5 each sample, reset to 0 at sample 360.
fn counter(k: i64) -> f64 {
    (if k < 360 { 5 * k } else { 5 * (k - 360) }) as f64
}

fn points(r: &Value, series: usize) -> Vec<(i64, f64)> {
    r["series"][series]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["t"].as_i64().unwrap(), p["v"].as_f64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_read_raw_samples_or_rollups_by_step_with_every_function() {
    let api = TestApi::start().await;
    let (_, viewer) = api.session("viewer", Role::Viewer).await;
    let now = chrono::Utc::now().timestamp_millis();
    let start = (now - 3 * 3_600_000) - (now - 3 * 3_600_000).rem_euclid(3_600_000);
    let metas = vec![
        meta(1, "q_ops_total", &[("i", "0")], MetricKind::Counter),
        meta(2, "q_level", &[("i", "1")], MetricKind::Gauge),
        meta(3, "q_level", &[("i", "2")], MetricKind::Gauge),
    ];
    let blocks = (0..12)
        .map(|b| {
            let collections: Vec<_> = (b * 60..(b + 1) * 60)
                .map(|k| {
                    (
                        start + k * STEP_MS,
                        vec![
                            (SeriesId(1), counter(k)),
                            (SeriesId(2), (k % 7) as f64),
                            (SeriesId(3), 100.0),
                        ],
                    )
                })
                .collect();
            block(AGENT, b as u64 + 1, &collections, &[])
        })
        .collect();
    api.sink
        .ingest(&batch("qa", metas, blocks, None, None, 3))
        .await
        .expect("ingest");
    assert_eq!(SAMPLES, 12 * 60);

    let q = |params: String| {
        let (api, viewer) = (&api, viewer.clone());
        async move {
            let enc = params
                .replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22");
            let r = api
                .call("GET", &format!("/api/v1/query?{enc}"), Some(&viewer), None)
                .await;
            assert_eq!(r.status, 200, "{params}: {}", r.text);
            r.json
        }
    };
    let s = start / 1000;

    // 1-minute rollups for a one-minute step: increase and rate per minute.
    let r = q(format!(
        "selector=q_ops_total&start={s}&end={}&step=1m&fn=increase",
        s + 600
    ))
    .await;
    assert_eq!(
        (r["source"].as_str(), r["step_ms"].as_i64()),
        (Some("rollup_1m"), Some(60_000))
    );
    let p = points(&r, 0);
    assert_eq!(p.len(), 10);
    assert_eq!(p[0], (start, 25.0), "the first sample has no predecessor");
    assert!(p[1..].iter().all(|(_, v)| *v == 30.0), "{p:?}");
    assert!(p.windows(2).all(|w| w[1].0 - w[0].0 == 60_000));
    let r = q(format!(
        "selector=q_ops_total&start={}&end={}&step=60&fn=rate",
        s + 60,
        s + 300
    ))
    .await;
    assert!(points(&r, 0).iter().all(|(_, v)| *v == 0.5), "{r}");
    // The reset at sample 360 (minute 60): the increase counts from zero.
    let r = q(format!(
        "selector=q_ops_total&start={}&end={}&step=1m&fn=increase",
        s + 3600,
        s + 3660
    ))
    .await;
    assert_eq!(points(&r, 0), [(start + 3_600_000, 25.0)]);

    // Raw samples for a step under a minute.
    let r = q(format!(
        "selector=q_ops_total&start={}&end={}&step=30s&fn=increase",
        s + 60,
        s + 180
    ))
    .await;
    assert_eq!(r["source"], "raw");
    assert_eq!(
        points(&r, 0),
        [
            (start + 60_000, 15.0),
            (start + 90_000, 15.0),
            (start + 120_000, 15.0),
            (start + 150_000, 15.0)
        ]
    );
    let r = q(format!(
        "selector=q_ops_total&start={}&end={}&step=30s&fn=rate",
        s + 60,
        s + 120
    ))
    .await;
    assert_eq!(
        points(&r, 0),
        [(start + 60_000, 0.5), (start + 90_000, 0.5)]
    );
    let r = q(format!(
        "selector=q_level{{i=\"1\"}}&start={s}&end={}&step=10s&fn=last",
        s + 70
    ))
    .await;
    let want: Vec<(i64, f64)> = (0..7)
        .map(|k| (start + k * STEP_MS, (k % 7) as f64))
        .collect();
    assert_eq!(points(&r, 0), want);
    let r = q(format!(
        "selector=q_level{{i=\"1\"}}&start={s}&end={}&step=20s&fn=avg",
        s + 40
    ))
    .await;
    assert_eq!(points(&r, 0), [(start, 0.5), (start + 20_000, 2.5)]);

    // 1-hour rollups for an hour's step; min, max, avg and last.
    let base = format!("selector=q_level&start={s}&end={}&step=1h", s + 7200);
    let r = q(format!("{base}&fn=max")).await;
    assert_eq!(r["source"], "rollup_1h");
    assert_eq!(r["series"].as_array().unwrap().len(), 2);
    assert_eq!(points(&r, 0), [(start, 6.0), (start + 3_600_000, 6.0)]);
    assert_eq!(points(&r, 1), [(start, 100.0), (start + 3_600_000, 100.0)]);
    let r = q(format!("{base}&fn=min")).await;
    assert_eq!(points(&r, 0), [(start, 0.0), (start + 3_600_000, 0.0)]);
    let r = q(format!("{base}&fn=avg")).await;
    assert_eq!(points(&r, 1)[0].1, 100.0);
    let r = q(format!("{base}&fn=last")).await;
    assert_eq!(points(&r, 0)[1], (start + 3_600_000, (719 % 7) as f64));
    // A step of 5 minutes reads 1-minute rollups, five at a time.
    let r = q(format!(
        "selector=q_ops_total&start={}&end={}&step=5m&fn=increase",
        s + 300,
        s + 900
    ))
    .await;
    assert_eq!(
        (r["source"].as_str(), r["step_ms"].as_i64()),
        (Some("rollup_1m"), Some(300_000))
    );
    assert_eq!(
        points(&r, 0),
        [(start + 300_000, 150.0), (start + 600_000, 150.0)]
    );

    // rate and increase are for counters.
    let r = api
        .call(
            "GET",
            &format!(
                "/api/v1/query?selector=q_level&start={s}&end={}&fn=rate",
                s + 600
            ),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("counters"), "{}", r.text);

    // Series search: metric, labels, regexes, and the agent's name as `agent`.
    for (selector, n) in [
        ("q_level", 2),
        ("{i=\"1\"}", 1),
        ("q_level{agent=\"qa\"}", 2),
        ("q_level{agent=\"other\"}", 0),
        ("q_level{i=~\"1|2\"}", 2),
        ("q_level{i!=\"1\"}", 1),
        ("{__name__=~\"q_.*\"}", 3),
    ] {
        let enc: String = selector
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'_' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let r = api
            .call(
                "GET",
                &format!("/api/v1/series?match={enc}"),
                Some(&viewer),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{selector}: {}", r.text);
        assert_eq!(
            r.json["items"].as_array().unwrap().len(),
            n,
            "{selector}: {}",
            r.text
        );
        if n > 0 {
            assert_eq!(r.json["items"][0]["agent"], "qa");
        }
    }
}
