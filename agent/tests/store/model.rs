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

/// A store of schema 1 (pga-agent 3.0.0-alpha.1), whose PostgreSQL series carry the
/// label `instance`: read as `pg_instance` before it is upgraded, upgraded by the
/// agent's open with the same series ids, and the agent's new collections continue
/// those series.
#[test]
fn a_schema_1_store_keeps_its_series_under_the_pg_instance_label() {
    use pga_agent::store::StoreReader;
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        max_bytes: 64 << 20,
        retention_ms: 0,
        block_ms: 60_000,
    };
    let sample = |labels: &[(&str, &str)], v: f64| Emitted {
        name: "pg_up".into(),
        labels: pga_format::owned_labels(labels),
        kind: MetricKind::Gauge,
        unit: "",
        help: "Up.",
        value: v,
    };
    {
        let (mut store, _) = Store::open(dir.path(), opts).unwrap();
        store
            .append(1_000, &[sample(&[("instance", "main")], 1.0)], None)
            .unwrap();
        store
            .append(200_000, &[sample(&[("instance", "main")], 1.0)], None)
            .unwrap();
    }
    // As schema 1 left it.
    {
        const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
        let db = redb::Database::open(dir.path().join("store.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema", 1u32.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let labels = |metas: &[pga_format::SeriesMeta]| -> Vec<(u64, Vec<(String, String)>)> {
        metas.iter().map(|m| (m.id.0, m.labels.clone())).collect()
    };
    let want = vec![(0, vec![("pg_instance".to_owned(), "main".to_owned())])];
    // Read-only, not upgraded yet: seen with the new label already.
    let reader = StoreReader::open(dir.path()).unwrap();
    assert_eq!(labels(&reader.view().series().unwrap()), want);
    drop(reader);
    // The agent's open upgrades it, in place, same ids.
    let (mut store, _) = Store::open(dir.path(), opts).unwrap();
    assert_eq!(labels(store.series()), want);
    let events = store.reader().status().unwrap().events;
    assert!(
        events
            .iter()
            .any(|(_, e)| e.contains("schema 1 upgraded to 2") && e.contains("1 series")),
        "{events:?}"
    );
    // A new collection with the new label continues series 0.
    let r = store
        .append(260_000, &[sample(&[("pg_instance", "main")], 1.0)], None)
        .unwrap();
    assert_eq!(r.new_series, 0);
    let got = store
        .reader()
        .samples(&[pga_format::SeriesId(0)], i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(got[&pga_format::SeriesId(0)].len(), 3);
    drop(store);
    let reader = StoreReader::open(dir.path()).unwrap();
    assert_eq!(labels(&reader.view().series().unwrap()), want);
}
