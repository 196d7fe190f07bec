//! The ring store against a simple in-memory model: appends, seals, evictions and
//! reopening keep exactly the data the model says, bit for bit.

use std::collections::BTreeMap;

use pga_agent::collect::Emitted;
use pga_agent::store::{Store, StoreOptions};
use pga_format::{MetricKind, SeriesId};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const BLOCK_MS: i64 = 20_000;

#[derive(Debug, Clone)]
enum Op {
    /// Advance the clock by `step` × 5 s and append these series' values.
    Append {
        step: u8,
        values: Vec<(u8, u64)>,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..4, proptest::collection::btree_map(0u8..12, any::<u64>(), 1..8))
            .prop_map(|(step, values)| Op::Append { step, values: values.into_iter().collect() }),
        1 => Just(Op::Reopen),
    ]
}

fn emitted(series: u8, bits: u64) -> Emitted {
    Emitted {
        name: format!("model_metric_{}", series % 3),
        labels: vec![("n".to_owned(), series.to_string())],
        kind: if series.is_multiple_of(2) {
            MetricKind::Counter
        } else {
            MetricKind::Gauge
        },
        unit: "",
        help: "A series of the model test.",
        value: f64::from_bits(bits),
    }
}

/// Every held sample: (name, label n) -> ts -> bits.
type Held = BTreeMap<(String, String), BTreeMap<i64, u64>>;

fn read_all(store: &Store) -> Held {
    let view = store.reader();
    let metas = view.series().expect("series");
    let ids: Vec<SeriesId> = metas.iter().map(|m| m.id).collect();
    let samples = view.samples(&ids, i64::MIN, i64::MAX).expect("samples");
    let mut held = Held::new();
    for m in metas {
        let key = (m.name.clone(), m.label("n").unwrap_or_default().to_owned());
        for s in &samples[&m.id] {
            held.entry(key.clone())
                .or_default()
                .insert(s.timestamp_ms, s.value.to_bits());
        }
    }
    held.retain(|_, v| !v.is_empty());
    held
}

fn check(ops: Vec<Op>, max_bytes: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = StoreOptions {
        max_bytes,
        retention_ms: 0,
        block_ms: BLOCK_MS,
    };
    let (mut store, _) = Store::open(dir.path(), opts).expect("open");
    // The model: samples by window.
    let mut model: BTreeMap<i64, Held> = BTreeMap::new();
    let mut ts = 1_700_000_000_000i64;
    let mut appended = 0;
    let (mut sealed, mut evicted) = (0u64, 0u64);
    for op in ops {
        match op {
            Op::Append { step, values } => {
                ts += i64::from(step) * 5_000;
                let batch: Vec<Emitted> = values.iter().map(|&(s, b)| emitted(s, b)).collect();
                match store.append(ts, &batch, None) {
                    Ok(r) => {
                        appended += 1;
                        sealed += u64::from(r.sealed.is_some());
                        evicted += r.evicted_blocks;
                        let w = model.entry(ts.div_euclid(BLOCK_MS)).or_default();
                        for e in &batch {
                            let key = (e.name.clone(), e.labels[0].1.clone());
                            w.entry(key).or_default().insert(ts, e.value.to_bits());
                        }
                    }
                    // The same series twice at one timestamp is refused, and nothing is stored.
                    Err(e) => assert!(step == 0, "append failed: {e}"),
                }
            }
            Op::Reopen => {
                drop(store);
                store = Store::open(dir.path(), opts).expect("reopen").0;
            }
        }
        // The store holds the newest windows: the head's window and the sealed
        // blocks not evicted, with nothing missing or extra inside them.
        let held = read_all(&store);
        let oldest_window = match store.sequence_range() {
            Some(_) => store
                .time_range()
                .map(|(lo, _)| lo.div_euclid(BLOCK_MS))
                .unwrap_or(i64::MAX),
            None => model.keys().last().copied().unwrap_or(i64::MAX),
        };
        let mut expected = Held::new();
        for (_, w) in model.range(oldest_window..) {
            for (k, v) in w {
                expected
                    .entry(k.clone())
                    .or_default()
                    .extend(v.iter().map(|(a, b)| (*a, *b)));
            }
        }
        assert_eq!(held, expected, "after {appended} appends");
        if max_bytes >= 1 << 30 {
            // Nothing may be evicted under a huge budget.
            let mut all = Held::new();
            for w in model.values() {
                for (k, v) in w {
                    all.entry(k.clone())
                        .or_default()
                        .extend(v.iter().map(|(a, b)| (*a, *b)));
                }
            }
            assert_eq!(held, all);
        }
    }
    if max_bytes < 1 << 20 && sealed > 0 {
        assert!(evicted > 0, "a tiny budget must evict sealed blocks");
    }
    if max_bytes >= 1 << 30 {
        assert_eq!(evicted, 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/store_model.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_matches_model_without_eviction(ops in proptest::collection::vec(op(), 1..60)) {
        check(ops, 1 << 30);
    }

    #[test]
    fn store_matches_model_with_eviction(ops in proptest::collection::vec(op(), 1..60)) {
        // A budget so small that blocks are evicted as soon as they are sealed.
        check(ops, 1);
    }
}
