//! Round trips: whatever goes into a block comes back out bit-exact.

use std::collections::BTreeMap;

use pga_format::{
    AgentId, BlockBuilder, EncodeError, FrameMeta, LogEvent, LogEventKind, MetricKind, SeriesId,
    SeriesMeta, Severity, decode_block, decode_block_filtered, dictionary,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

type Collections = Vec<(i64, Vec<(SeriesId, f64)>)>;

const META: FrameMeta = FrameMeta {
    agent_id: AgentId([0xa5; 16]),
    sequence: 9,
};

/// Encodes `input` (pushed as given), decodes, and checks the result equals the
/// input merged per timestamp, bit for bit.
fn assert_round_trip(input: &Collections, logs: &[LogEvent]) {
    let mut b = BlockBuilder::new();
    for (t, samples) in input {
        b.push_collection(*t, samples).expect("push");
    }
    for e in logs {
        b.push_log_event(e.clone()).expect("push log");
    }
    let frame = b.encode(META, 3).expect("encode");
    let block = decode_block(&frame).expect("decode");

    let mut expected: BTreeMap<i64, Vec<(SeriesId, u64)>> = BTreeMap::new();
    for (t, samples) in input {
        if !samples.is_empty() {
            expected
                .entry(*t)
                .or_default()
                .extend(samples.iter().map(|&(s, v)| (s, v.to_bits())));
        }
    }
    for v in expected.values_mut() {
        v.sort_by_key(|&(s, _)| s);
    }
    let got: BTreeMap<i64, Vec<(SeriesId, u64)>> = block
        .collections()
        .into_iter()
        .map(|(t, s)| (t, s.into_iter().map(|(id, v)| (id, v.to_bits())).collect()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(block.sample_count(), b.sample_count());

    // Dropping the collections up to any of its timestamps leaves exactly the later ones.
    let n = block.timestamps.len();
    for cut in [0, n / 3, n / 2, n.saturating_sub(1), n]
        .into_iter()
        .filter_map(|i| block.timestamps.get(i.min(n.saturating_sub(1))))
        .copied()
        .chain(block.timestamps.first().and_then(|t| t.checked_sub(1)))
    {
        let mut later = block.clone();
        later.retain_after(cut);
        let want: BTreeMap<i64, Vec<(SeriesId, u64)>> = got
            .iter()
            .filter(|(t, _)| **t > cut)
            .map(|(t, v)| (*t, v.clone()))
            .collect();
        let have: BTreeMap<i64, Vec<(SeriesId, u64)>> = later
            .collections()
            .into_iter()
            .map(|(t, s)| (t, s.into_iter().map(|(id, v)| (id, v.to_bits())).collect()))
            .collect();
        assert_eq!(have, want, "retain_after({cut})");
        assert!(later.columns.iter().all(|c| !c.values.is_empty()));
        if let Some(&first) = later.timestamps.first() {
            assert!(later.header.min_ts <= first);
        }
    }

    // Decoding only some columns gives exactly those columns of the full decode.
    let keep = |s: SeriesId| s.0 % 3 != 1;
    let partial = decode_block_filtered(&frame, &keep).expect("filtered decode");
    let bits = |c: &pga_format::SeriesColumn| {
        (
            c.series,
            c.encoding,
            c.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        )
    };
    let wanted: Vec<_> = block
        .columns
        .iter()
        .filter(|c| keep(c.series))
        .map(bits)
        .collect();
    assert_eq!(partial.columns.iter().map(bits).collect::<Vec<_>>(), wanted);
    // Debug text, because a NaN duration is not equal to itself (bits are checked below).
    assert_eq!(
        format!("{:?}", partial.log_events),
        format!("{:?}", block.log_events)
    );
    assert_eq!(block.header.sequence, META.sequence);
    assert_eq!(block.header.agent_id, META.agent_id);
    assert_eq!(block.log_events.len(), logs.len());
    for (a, b) in block.log_events.iter().zip(logs) {
        assert_eq!(a.timestamp_ms, b.timestamp_ms);
        assert_eq!(
            a.duration_ms.map(f64::to_bits),
            b.duration_ms.map(f64::to_bits)
        );
        let (mut a, mut b) = (a.clone(), b.clone());
        (a.duration_ms, b.duration_ms) = (None, None); // compared by bits above
        assert_eq!(a, b);
    }
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        Just(f64::NAN),
        Just(-f64::NAN),
        Just(f64::from_bits(0x7ff0_0000_0000_0001)),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        (-1_000_000i64..1_000_000).prop_map(|i| i as f64),
        (-1_000_000i64..1_000_000, 0u32..6).prop_map(|(m, k)| m as f64 / 10f64.powi(k as i32)),
        any::<i64>().prop_map(|i| i as f64),
    ]
}

fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        Just(i64::MIN),
        Just(i64::MAX),
        1_600_000_000_000i64..1_900_000_000_000,
    ]
}

/// Collections over a few series with irregular, possibly repeated timestamps;
/// each series present or absent per collection.
fn collections() -> impl Strategy<Value = Collections> {
    (
        proptest::collection::vec(timestamp(), 0..24),
        proptest::collection::btree_set(any::<u64>(), 1..12),
    )
        .prop_flat_map(|(mut ts, ids)| {
            ts.sort_unstable();
            ts.dedup();
            let ids: Vec<u64> = ids.into_iter().collect();
            let cells = ts.len() * ids.len();
            (
                Just(ts),
                Just(ids),
                proptest::collection::vec(proptest::option::weighted(0.7, value()), cells),
                any::<bool>(),
            )
        })
        .prop_map(|(ts, ids, cells, split)| {
            let mut out = Vec::new();
            for (i, &t) in ts.iter().enumerate() {
                let samples: Vec<(SeriesId, f64)> = ids
                    .iter()
                    .enumerate()
                    .filter_map(|(j, &id)| cells[i * ids.len() + j].map(|v| (SeriesId(id), v)))
                    .collect();
                if split && samples.len() > 1 {
                    // Two collections at one timestamp (a fast and a slow collector
                    // landing on the same millisecond) with disjoint series.
                    let (a, b) = samples.split_at(samples.len() / 2);
                    out.push((t, b.to_vec()));
                    out.push((t, a.to_vec()));
                } else {
                    out.push((t, samples));
                }
            }
            // Arrival order is not sorted in general.
            if split {
                out.reverse();
            }
            out
        })
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z_]{1,12}", "\\PC{0,40}"]
}

fn log_event() -> impl Strategy<Value = LogEvent> {
    (
        1_700_000_000_000i64..1_700_000_600_000,
        0u8..12,
        0u8..12,
        proptest::option::of("[0-9A-Z]{5}"),
        proptest::option::of(any::<u32>()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        text(),
        proptest::option::of(value()),
    )
        .prop_map(
            |(
                t,
                sev,
                kind,
                sqlstate,
                pid,
                instance,
                user,
                database,
                application,
                message,
                duration_ms,
            )| {
                let (severities, kinds) = (Severity::ALL, LogEventKind::ALL);
                let mut e =
                    LogEvent::new(t, severities[sev as usize], kinds[kind as usize], message);
                e.sqlstate = sqlstate.map(|s| s.as_bytes().try_into().expect("five ASCII bytes"));
                e.pid = pid;
                e.instance = instance;
                e.user = user;
                e.database = database;
                e.application = application;
                e.duration_ms = duration_ms;
                e
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/roundtrip.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_collections_round_trip_bit_exact(input in collections()) {
        assert_round_trip(&input, &[]);
    }

    #[test]
    fn log_events_round_trip(
        input in collections(),
        logs in proptest::collection::vec(log_event(), 0..20),
    ) {
        assert_round_trip(&input, &logs);
    }

    #[test]
    fn one_series_any_values_round_trip(
        values in proptest::collection::vec(value(), 1..300),
        start in timestamp(),
    ) {
        let input: Collections = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (start.wrapping_add(i as i64 * 10_000), vec![(SeriesId(1), v)]))
            .collect();
        // Wrapping may reorder timestamps near i64::MAX; the block must still hold them.
        assert_round_trip(&input, &[]);
    }

    #[test]
    fn mixed_scale_decimals_round_trip(
        values in proptest::collection::vec(
            (-(1i64 << 53)..(1i64 << 53), 0u32..=18).prop_map(|(m, k)| m as f64 / 10f64.powi(k as i32)),
            1..40,
        ),
    ) {
        let input: Collections = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64, vec![(SeriesId(0), v)]))
            .collect();
        assert_round_trip(&input, &[]);
    }

    #[test]
    fn dictionary_round_trips(
        entries in proptest::collection::btree_map(
            any::<u64>(),
            ("[a-zA-Z_:][a-zA-Z0-9_:]{0,30}", proptest::collection::btree_map("[a-z][a-z0-9_]{0,10}", "\\PC{0,20}", 0..6), any::<bool>(), text(), text()),
            0..40,
        )
    ) {
        let metas: Vec<SeriesMeta> = entries
            .into_iter()
            .map(|(id, (name, labels, counter, unit, help))| {
                let kind = if counter { MetricKind::Counter } else { MetricKind::Gauge };
                SeriesMeta::new(SeriesId(id), name, labels.into_iter().collect(), kind, unit, help).expect("valid")
            })
            .collect();
        let frame = dictionary::encode(META, &metas, 3).expect("encode");
        let (header, back) = dictionary::decode(&frame).expect("decode");
        prop_assert_eq!(header.series_count, metas.len() as u64);
        prop_assert_eq!(back, metas);
    }
}

#[test]
fn empty_block_round_trips() {
    assert_round_trip(&vec![], &[]);
    let frame = BlockBuilder::new().encode(META, 3).unwrap();
    let block = decode_block(&frame).unwrap();
    assert_eq!((block.header.min_ts, block.header.max_ts), (0, 0));
    assert!(block.columns.is_empty() && block.timestamps.is_empty());
}

#[test]
fn one_sample_round_trips() {
    assert_round_trip(&vec![(42, vec![(SeriesId(7), 3.25)])], &[]);
}

#[test]
fn extreme_timestamps_and_special_values_round_trip() {
    let input = vec![
        (i64::MIN, vec![(SeriesId(0), f64::NAN), (SeriesId(1), -0.0)]),
        (
            -1,
            vec![
                (SeriesId(0), f64::from_bits(0xfff8_dead_beef_0001)),
                (SeriesId(1), 0.0),
            ],
        ),
        (
            0,
            vec![
                (SeriesId(0), f64::INFINITY),
                (SeriesId(1), f64::NEG_INFINITY),
            ],
        ),
        (
            i64::MAX,
            vec![(SeriesId(0), f64::MIN_POSITIVE), (SeriesId(1), 5e-324)],
        ),
    ];
    assert_round_trip(&input, &[]);
}

#[test]
fn ten_thousand_series_round_trip() {
    let input: Collections = (0..60)
        .map(|i| {
            let t = 1_700_000_000_000 + i * 10_000 + (i * 7919) % 13;
            let samples = (0..10_000u64)
                .filter(|s| !(s + i as u64).is_multiple_of(97)) // every series has gaps somewhere
                .map(|s| {
                    (
                        SeriesId(s * 3),
                        (s as f64) * 1.5 + (i as f64) * (s % 5) as f64,
                    )
                })
                .collect();
            (t, samples)
        })
        .collect();
    assert_round_trip(&input, &[]);
}

#[test]
fn series_appearing_and_vanishing_round_trip() {
    let input: Collections = (0..50)
        .map(|i: i64| {
            let mut s = vec![(SeriesId(0), i as f64)];
            if (10..20).contains(&i) {
                s.push((SeriesId(1), 100.0 + i as f64)); // appears, then vanishes
            }
            if i >= 40 {
                s.push((SeriesId(2), 0.5)); // appears late
            }
            if i % 2 == 0 {
                s.push((SeriesId(3), -(i as f64))); // every other pass
            }
            (i * 1000, s)
        })
        .collect();
    assert_round_trip(&input, &[]);
}

#[test]
fn duplicate_sample_is_rejected_and_leaves_the_builder_unchanged() {
    let mut b = BlockBuilder::new();
    b.push_collection(10, &[(SeriesId(1), 1.0)]).unwrap();
    let err = b
        .push_collection(10, &[(SeriesId(2), 2.0), (SeriesId(1), 3.0)])
        .unwrap_err();
    assert_eq!(
        err,
        EncodeError::DuplicateSample {
            series: 1,
            timestamp_ms: 10
        }
    );
    assert_eq!((b.sample_count(), b.series_count()), (1, 1));
    let block = decode_block(&b.encode(META, 3).unwrap()).unwrap();
    assert_eq!(block.collections(), vec![(10, vec![(SeriesId(1), 1.0)])]);

    // Out of order, the duplicate is found when the block is encoded.
    let mut b = BlockBuilder::new();
    b.push_collection(20, &[(SeriesId(1), 1.0)]).unwrap();
    b.push_collection(10, &[(SeriesId(1), 1.0)]).unwrap();
    b.push_collection(20, &[(SeriesId(2), 1.0)]).unwrap();
    assert!(b.encode(META, 3).is_ok());
    b.push_collection(10, &[(SeriesId(3), 1.0), (SeriesId(1), 5.0)])
        .unwrap_err();
    b.push_collection(30, &[(SeriesId(1), 1.0)]).unwrap();
    b.push_collection(20, &[(SeriesId(1), 2.0)]).unwrap();
    assert!(matches!(
        b.encode(META, 3),
        Err(EncodeError::DuplicateSample {
            series: 1,
            timestamp_ms: 20
        })
    ));
}
