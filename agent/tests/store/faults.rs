//! The ring store on a full filesystem (a tmpfs the test mounts; root only): its
//! budget shrinks to what the filesystem holds, so old blocks are evicted instead of
//! new collections refused; when even that is not enough, writes fail with the cause
//! named, the handles keep answering, and the store opens itself again once space
//! returns, with everything committed before still there.

use crate::support::tmpfs::Tmpfs;
use pga_agent::collect::Emitted;
use pga_agent::store::{HealthState, Store, StoreOptions};
use pga_format::{MetricKind, SeriesId};

/// Random values that do not compress away.
fn batch(series: usize, tick: u64) -> Vec<Emitted> {
    (0..series)
        .map(|i| {
            // splitmix64 of (tick, i)
            let mut z = tick.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ^ (i as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            let x = (z ^ (z >> 31)) >> 11;
            Emitted {
                name: "fault_gauge".into(),
                labels: vec![("i".into(), i.to_string())],
                kind: MetricKind::Gauge,
                unit: "",
                help: "Fault test series.",
                value: x as f64 / 3.0,
            }
        })
        .collect()
}

const T0: i64 = 1_700_000_000_000;

#[test]
fn a_full_filesystem_shrinks_the_budget_instead_of_refusing_collections() {
    let Some(fs) = Tmpfs::mount(
        "a_full_filesystem_shrinks_the_budget_instead_of_refusing_collections",
        8,
    ) else {
        return;
    };
    // A budget far beyond the 8 MiB filesystem; one-second blocks to evict.
    let opts = StoreOptions {
        max_bytes: 1 << 30,
        retention_ms: 0,
        block_ms: 1000,
    };
    let (mut store, _) = Store::open(fs.path(), opts).unwrap();
    let mut evicted = 0;
    for tick in 0..2500u64 {
        let ts = T0 + tick as i64 * 500;
        match store.append(ts, &batch(400, tick), None) {
            Ok(r) => evicted += r.evicted_blocks,
            Err(e) => panic!(
                "tick {tick}: {e} (free {} bytes, evicted so far {evicted})",
                fs.free()
            ),
        }
    }
    assert!(evicted > 0, "the test must outgrow the filesystem");
    assert!(store.health().healthy);
    assert!(
        store.health().budget_bytes < 8 << 20,
        "{:?}",
        store.health()
    );
    // The newest data is there.
    let last = T0 + 2499 * 500;
    let ids: Vec<SeriesId> = store.series().iter().map(|m| m.id).collect();
    let got = store.reader().samples(&ids, last - 5_000, last).unwrap();
    assert!(
        got.values().all(|s| s.len() == 11),
        "{:?}",
        got.values().next()
    );
}

#[test]
fn writes_fail_on_a_full_filesystem_and_resume_when_space_returns() {
    let Some(fs) = Tmpfs::mount(
        "writes_fail_on_a_full_filesystem_and_resume_when_space_returns",
        16,
    ) else {
        return;
    };
    // One open head the whole test: nothing to evict.
    let opts = StoreOptions {
        max_bytes: 1 << 30,
        retention_ms: 0,
        block_ms: 3_600_000,
    };
    let (mut store, _) = Store::open(fs.path(), opts).unwrap();
    let handle = store.handle();
    let mut committed = Vec::new();
    for tick in 0..5u64 {
        let ts = T0 + tick as i64 * 1000;
        store.append(ts, &batch(500, tick), None).unwrap();
        committed.push(ts);
    }
    let ballast = fs.fill("ballast");
    assert!(ballast > 0);

    // Keep collecting until the store needs room it cannot get.
    let mut tick = 5u64;
    let error = loop {
        let ts = T0 + tick as i64 * 1000;
        match store.append(ts, &batch(500, tick), None) {
            Ok(_) => committed.push(ts),
            Err(e) => break e,
        }
        tick += 1;
        assert!(tick < 2000, "the store never filled the filesystem");
    };
    let text = error.to_string();
    assert!(error.is_no_space(), "{text}");
    assert!(
        text.contains(&fs.path().join("store.redb").display().to_string()),
        "{text}"
    );
    assert!(text.contains("free space there"), "{text}");
    let h = store.health().clone();
    assert!(!h.healthy);
    assert_eq!(h.write_errors_total, 1);
    assert!(
        h.last_error
            .as_deref()
            .unwrap_or("")
            .contains("No space left"),
        "{h:?}"
    );

    // The handles answer: status from memory, reads as "unavailable" (503).
    let status = handle.status().unwrap();
    assert_eq!(status.head_collections, committed.len() as u64);
    assert!(!status.health.as_ref().unwrap().healthy);
    let blocks = handle.blocks_after(0, 1 << 20).unwrap_err();
    assert!(blocks.is_unavailable(), "{blocks}");
    // The health file says so too, for `pga-agent status`.
    let (file, running) = pga_agent::store::read_health_file(fs.path()).unwrap();
    assert!(running && !file.healthy, "{file:?}");

    // Still full: the next collection is lost, no panic, and nothing reopens in a loop.
    tick += 1;
    assert!(
        store
            .append(T0 + tick as i64 * 1000, &batch(500, tick), None)
            .is_err()
    );
    assert_eq!(store.health().write_errors_total, 2);

    // Space returns: the next collection is stored, without a restart.
    std::fs::remove_file(fs.path().join("ballast")).unwrap();
    tick += 1;
    let ts = T0 + tick as i64 * 1000;
    store.append(ts, &batch(500, tick), None).unwrap();
    committed.push(ts);
    let h = store.health();
    assert_eq!(h.state, HealthState::Recovering, "{h:?}");
    assert!(h.reopens_total >= 1, "{h:?}");
    assert!(handle.blocks_after(0, 1 << 20).is_ok());

    // Everything committed is there, read back after a restart.
    drop(handle);
    drop(store);
    let (store, _) = Store::open(fs.path(), opts).unwrap();
    let ids: Vec<SeriesId> = store.series().iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), 500);
    let got = store.reader().samples(&ids, i64::MIN, i64::MAX).unwrap();
    for (id, samples) in &got {
        let times: Vec<i64> = samples.iter().map(|s| s.timestamp_ms).collect();
        assert_eq!(times, committed, "series {id}");
    }
    let events = store.reader().status().unwrap().events;
    assert!(
        events
            .iter()
            .any(|(_, e)| e.contains("writes failed") && e.contains("No space left")),
        "{events:?}"
    );
}
