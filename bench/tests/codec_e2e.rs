//! The codec pipeline end to end on a small generated corpus: the library and the binary.

use std::fmt::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use pga_bench::blocks::{self, Shape};
use pga_bench::codec_cmd::{self, CodecOptions};
use pga_bench::corpus::parse_corpus;
use pga_format::BlockBuilder;

/// 100 scrapes of two jobs, 10 s apart with millisecond jitter (about 17 minutes), one
/// failed scrape, and every data shape: constants, integer counters, float gauges, NaN,
/// ±Inf, a summary and a series that comes and goes.
fn generated_corpus() -> String {
    let mut text = String::new();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut commits = 0u64;
    for i in 0..100i64 {
        let ts = 1_700_000_000_000 + i * 10_000 + (rand() % 40) as i64;
        if i == 42 {
            writeln!(
                text,
                "# SCRAPE-FAILED postgres {ts} context deadline exceeded"
            )
            .unwrap();
        } else {
            writeln!(text, "# SCRAPE postgres {ts}").unwrap();
            writeln!(text, "# HELP pg_up Whether the server answers.").unwrap();
            writeln!(text, "# TYPE pg_up gauge").unwrap();
            writeln!(text, "pg_up 1").unwrap();
            writeln!(text, "# TYPE pg_stat_database_xact_commit_total counter").unwrap();
            commits += rand() % 50;
            for db in ["app", "postgres"] {
                writeln!(
                    text,
                    "pg_stat_database_xact_commit_total{{datname=\"{db}\"}} {commits}"
                )
                .unwrap();
            }
            writeln!(text, "# TYPE pg_replication_lag_seconds gauge").unwrap();
            let lag = (rand() % 1_000_000) as f64 / 997.0;
            writeln!(text, "pg_replication_lag_seconds{{app=\"st\\\"by\"}} {lag}").unwrap();
            writeln!(text, "pg_stat_archiver_last_archive_age NaN").unwrap();
            writeln!(text, "# TYPE go_gc_duration_seconds summary").unwrap();
            writeln!(
                text,
                "go_gc_duration_seconds{{quantile=\"0.5\"}} {}",
                1e-4 * (i % 7) as f64
            )
            .unwrap();
            writeln!(text, "go_gc_duration_seconds_sum {}", 0.001 * i as f64).unwrap();
            writeln!(text, "go_gc_duration_seconds_count {i}").unwrap();
            if i % 3 == 0 {
                writeln!(text, "pg_locks_waiting{{mode=\"ExclusiveLock\"}} {}", i % 5).unwrap();
            }
        }
        let ts = ts + 137;
        writeln!(text, "# SCRAPE node {ts}").unwrap();
        writeln!(text, "# TYPE node_memory_MemFree_bytes gauge").unwrap();
        writeln!(
            text,
            "node_memory_MemFree_bytes {}",
            4e9 + (rand() % 1_000_000) as f64
        )
        .unwrap();
        writeln!(text, "node_filesystem_free_bytes{{mountpoint=\"/\"}} +Inf").unwrap();
        writeln!(text, "node_load1 -Inf").unwrap();
        writeln!(text, "node_load5 {}", (rand() % 400) as f64 / 100.0).unwrap();
    }
    text
}

fn quick(baselines: bool) -> CodecOptions {
    CodecOptions {
        baselines,
        min_timing: Duration::ZERO,
        min_runs: 1,
        ..CodecOptions::default()
    }
}

#[test]
fn library_pipeline_round_trips_bit_exactly() {
    let text = generated_corpus();
    let corpus = parse_corpus(text.as_bytes()).unwrap();
    assert_eq!(corpus.failed.len(), 1);
    assert_eq!(corpus.scrapes.len(), 199);

    // The frames decode to exactly the parsed samples (NaN and ±Inf included).
    let windows = blocks::windows(&corpus, 600_000);
    assert!(windows.len() >= 2, "the corpus spans several windows");
    let level = pga_format::DEFAULT_ZSTD_LEVEL;
    let frames = blocks::encode_windows(&mut BlockBuilder::new(), &windows, level).unwrap();
    let checked = blocks::verify_frames(&windows, &frames).unwrap();
    assert_eq!(checked, corpus.sample_count());
    let decoded = pga_format::decode_block(&frames[0]).unwrap();
    let nan_series = corpus
        .series
        .iter()
        .find(|s| s.name == "pg_stat_archiver_last_archive_age")
        .unwrap()
        .id;
    let column = decoded.column(nan_series).unwrap();
    assert!(
        column
            .values
            .iter()
            .all(|v| v.to_bits() == f64::NAN.to_bits())
    );

    let report = codec_cmd::run(&corpus, text.as_bytes(), &quick(true)).unwrap();
    assert!(report.round_trip_exact);
    assert_eq!(report.samples, corpus.sample_count() as u64);
    assert_eq!(report.series, corpus.series.len() as u64);
    assert_eq!((report.scrapes, report.failed_scrapes), (199, 1));
    assert_eq!(report.blocks, windows.len() as u64);
    assert_eq!(
        report.block_bytes,
        frames.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert!(report.dict_bytes > 0 && report.dict_frames == 1);
    assert!(report.bytes_per_sample_with_dict > report.bytes_per_sample);
    assert!(report.encode_samples_per_sec > 0.0 && report.decode_samples_per_sec > 0.0);

    // Every series has exactly one shape.
    let shapes = Shape::ALL.map(|s| *report.shapes.get(s));
    assert_eq!(shapes.iter().map(|s| s.series).sum::<u64>(), report.series);
    assert_eq!(
        shapes.iter().map(|s| s.samples).sum::<u64>(),
        report.samples
    );
    assert!(shapes.iter().all(|s| s.series > 0 && s.block_bytes > 0));

    let b = report.baselines.expect("baselines were requested");
    assert!(b.tsz_gorilla.round_trip_exact);
    for bytes in [
        b.postcard_zstd.bytes,
        b.tsz_gorilla.bytes,
        b.zstd_text.bytes,
    ] {
        assert!(bytes > 0);
    }
    assert!(b.zstd_text.bytes < text.len() as u64);
}

fn tmp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn pga_bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pga-bench"))
        .args(args)
        .output()
        .expect("run pga-bench")
}

/// `pga-bench <args> --corpus FILE` on the generated corpus written to `file`: it
/// must succeed and print every one of `wants`; what it printed.
fn on_corpus(file: &str, args: &[&str], wants: &[&str]) -> String {
    let path = tmp_file(file, generated_corpus().as_bytes());
    let mut all = args.to_vec();
    all.extend(["--corpus", path.to_str().unwrap()]);
    let out = pga_bench(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    for want in wants {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    stdout
}

#[test]
fn binary_prints_one_json_object_with_the_required_fields() {
    let text = generated_corpus();
    let packed = zstd::bulk::compress(text.as_bytes(), 3).unwrap();
    let path = tmp_file("codec_e2e_corpus.txt.zst", &packed);
    let out = pga_bench(&[
        "codec",
        "--corpus",
        path.to_str().unwrap(),
        "--json",
        "--baselines",
        "--block-secs",
        "300",
        "--zstd-level",
        "5",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let obj = json.as_object().expect("a JSON object");
    for field in [
        "samples",
        "series",
        "blocks",
        "block_bytes",
        "dict_bytes",
        "bytes_per_sample",
        "bytes_per_sample_with_dict",
        "encode_samples_per_sec",
        "decode_samples_per_sec",
    ] {
        let v = obj
            .get(field)
            .unwrap_or_else(|| panic!("field {field} missing"));
        assert!(v.as_f64().is_some_and(|v| v > 0.0), "{field} = {v}");
    }
    assert_eq!(json["round_trip_exact"], true);
    assert_eq!(json["block_secs"], 300);
    assert_eq!(json["zstd_level"], 5);
    assert_eq!(json["failed_scrapes"], 1);
    assert!(
        json["blocks"].as_u64().unwrap() >= 4,
        "300 s windows over ~17 min"
    );
    for shape in ["constant", "counter", "gauge"] {
        for field in ["series", "samples", "bytes_per_sample"] {
            assert!(
                json["shapes"][shape][field].is_number(),
                "shapes.{shape}.{field}: {}",
                json["shapes"]
            );
        }
    }
    for baseline in ["postcard_zstd", "tsz_gorilla", "zstd_text"] {
        for field in ["bytes", "bytes_per_sample"] {
            assert!(
                json["baselines"][baseline][field]
                    .as_f64()
                    .is_some_and(|v| v > 0.0),
                "baselines.{baseline}.{field}: {}",
                json["baselines"]
            );
        }
    }
}

#[test]
fn binary_prints_tables_and_omits_baselines_by_default() {
    let stdout = on_corpus(
        "codec_e2e_corpus.txt",
        &["codec"],
        &[
            "bytes/sample",
            "round trip bit-exact",
            "constant",
            "counter",
            "gauge",
            "encode",
            "decode",
        ],
    );
    assert!(
        !stdout.contains("tsz"),
        "baselines are off by default:\n{stdout}"
    );
}

#[test]
fn binary_fails_with_the_line_number_of_a_malformed_line() {
    let mut text = generated_corpus();
    let lines = text.lines().count();
    text.push_str("# SCRAPE node 1700009999999\nnode_load1 not-a-number\n");
    let path = tmp_file("codec_e2e_malformed.txt", text.as_bytes());
    let out = pga_bench(&["codec", "--corpus", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "line {}: bad sample value `not-a-number`",
            lines + 2
        )),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn remote_write_encoding_is_measured_on_the_corpus() {
    on_corpus(
        "remote_write_corpus.txt",
        &[
            "remote-write",
            "--secs",
            "0.2",
            "--max-samples-per-request",
            "100",
        ],
        &[
            "of at most 100 samples",
            "encode + snappy:",
            "M samples/s on one core",
            "after snappy",
        ],
    );
}
