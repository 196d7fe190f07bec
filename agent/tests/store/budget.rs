//! The store stays within its byte budget (+5 %) and keeps the newest data; retention
//! by age likewise.

use pga_agent::collect::Emitted;
use pga_agent::store::{Store, StoreOptions};
use pga_format::{MetricKind, SeriesId};

fn batch(series: usize, tick: u64) -> Vec<Emitted> {
    (0..series)
        .map(|i| {
            // Counters with uneven steps and noisy gauges: data that does not compress away.
            let x = (tick.wrapping_mul(2654435761) ^ (i as u64).wrapping_mul(40503)) % 10_007;
            Emitted {
                name: if i.is_multiple_of(2) {
                    "budget_counter_total".into()
                } else {
                    "budget_gauge".into()
                },
                labels: vec![("i".into(), i.to_string())],
                kind: if i.is_multiple_of(2) {
                    MetricKind::Counter
                } else {
                    MetricKind::Gauge
                },
                unit: "",
                help: "Budget test series.",
                value: if i.is_multiple_of(2) {
                    (tick * 1000 + x) as f64
                } else {
                    x as f64 / 7.0
                },
            }
        })
        .collect()
}

#[test]
fn store_stays_within_budget_and_keeps_the_newest_data() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 3 << 20;
    let opts = StoreOptions {
        max_bytes: budget,
        retention_ms: 0,
        block_ms: 60_000,
    };
    let (mut store, _) = Store::open(dir.path(), opts).unwrap();
    let start = 1_700_000_000_000i64;
    let mut evicted = 0;
    let mut max_file = 0;
    let ticks = 3000u64;
    for tick in 0..ticks {
        let ts = start + tick as i64 * 10_000;
        let r = store.append(ts, &batch(300, tick), None).unwrap();
        evicted += r.evicted_blocks;
        let file = store.file_bytes();
        max_file = max_file.max(file);
        assert!(
            file as f64 <= budget as f64 * 1.05,
            "tick {tick}: store file {file} bytes, budget {budget}"
        );
    }
    assert!(evicted > 0, "the test must push the store past its budget");
    // Reopen to be sure the figures hold on disk, then read the newest minute back.
    drop(store);
    let (store, _) = Store::open(dir.path(), opts).unwrap();
    let last_ts = start + (ticks as i64 - 1) * 10_000;
    let ids: Vec<SeriesId> = store.series().iter().map(|m| m.id).collect();
    let samples = store
        .reader()
        .samples(&ids, last_ts - 120_000, last_ts)
        .unwrap();
    let total: usize = samples.values().map(Vec::len).sum();
    assert_eq!(total, 300 * 13, "the newest two minutes are all there");
    let (oldest, _) = store.time_range().unwrap();
    assert!(oldest > start, "the oldest data was evicted");
    println!("budget {budget}, largest file {max_file}, blocks evicted {evicted}");
}

#[test]
fn retention_evicts_blocks_older_than_the_age_limit() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        max_bytes: 1 << 30,
        retention_ms: 3_600_000,
        block_ms: 600_000,
    };
    let (mut store, _) = Store::open(dir.path(), opts).unwrap();
    let start = 1_700_000_000_000i64;
    let ticks = 6 * 360; // six hours at 10 s
    for tick in 0..ticks {
        store
            .append(start + tick * 10_000, &batch(20, tick as u64), None)
            .unwrap();
    }
    let now = start + (ticks - 1) * 10_000;
    let (oldest, newest) = store.time_range().unwrap();
    assert_eq!(newest, now);
    // Whole blocks go: the oldest kept block may begin up to one block before the limit.
    assert!(
        oldest >= now - 3_600_000 - 600_000,
        "oldest {oldest} is older than retention allows"
    );
    assert!(
        oldest <= now - 3_600_000 + 600_000,
        "too much was evicted: oldest {oldest}"
    );
}

#[test]
fn an_invalid_series_costs_only_its_own_sample() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        max_bytes: 1 << 30,
        retention_ms: 0,
        block_ms: 600_000,
    };
    let (mut store, _) = Store::open(dir.path(), opts).unwrap();
    let mut pass = batch(3, 1);
    pass[1].name = "not a metric name".into();
    let r = store.append(1_700_000_000_000, &pass, None).unwrap();
    assert_eq!(r.rejected_samples, 1);
    let ids: Vec<SeriesId> = store.series().iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), 2, "the two valid series are stored");
    let got = store.reader().samples(&ids, i64::MIN, i64::MAX).unwrap();
    assert!(got.values().all(|v| v.len() == 1));
}
