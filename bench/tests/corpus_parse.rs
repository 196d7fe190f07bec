//! The corpus parser on small inline inputs.

use std::path::PathBuf;

use pga_bench::corpus::{
    CorpusError, ParseError, ParseErrorKind, load_corpus, parse_corpus, read_corpus_text,
};
use pga_format::{MetricKind, SeriesId, SeriesMeta};

fn parse(text: &str) -> pga_bench::corpus::Corpus {
    parse_corpus(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

fn parse_err(text: &str) -> ParseError {
    match parse_corpus(text.as_bytes()) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

fn series<'a>(corpus: &'a pga_bench::corpus::Corpus, name: &str) -> Vec<&'a SeriesMeta> {
    corpus.series.iter().filter(|s| s.name == name).collect()
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn series_get_sequential_ids_job_label_and_scrape_timestamp() {
    let c = parse(
        "# SCRAPE postgres 1000\n\
         pg_up 1\n\
         pg_x{db=\"a\"} 2\n\
         # SCRAPE node 1005\n\
         pg_up 1\n\
         # SCRAPE postgres 2000\n\
         pg_x{db=\"a\"} 3\n\
         pg_up 0\n",
    );
    let ids: Vec<_> = c
        .series
        .iter()
        .map(|s| (s.id.0, s.name.as_str(), s.labels.clone()))
        .collect();
    assert_eq!(
        ids,
        vec![
            (0, "pg_up", labels(&[("job", "postgres")])),
            (1, "pg_x", labels(&[("db", "a"), ("job", "postgres")])),
            (2, "pg_up", labels(&[("job", "node")])),
        ]
    );
    assert_eq!(c.scrapes.len(), 3);
    assert_eq!(c.scrapes[2].timestamp_ms, 2000);
    assert_eq!(
        c.scrapes[2].samples,
        vec![(SeriesId(1), 3.0), (SeriesId(0), 0.0)]
    );
    assert_eq!(c.sample_count(), 5);
}

#[test]
fn label_value_escapes_are_decoded() {
    let c = parse(
        "# SCRAPE j 1\n\
         m{path=\"C:\\\\dir\",q=\"say \\\"hi\\\"\",nl=\"a\\nb\",plain=\"x,y}{=\"} 1\n",
    );
    assert_eq!(
        c.series[0].labels,
        labels(&[
            ("job", "j"),
            ("nl", "a\nb"),
            ("path", "C:\\dir"),
            ("plain", "x,y}{="),
            ("q", "say \"hi\""),
        ])
    );
}

#[test]
fn special_values_and_exact_bits() {
    let c = parse(
        "# SCRAPE j 1\n\
         a NaN\n\
         b Nan\n\
         c +Inf\n\
         d Inf\n\
         e -Inf\n\
         f 0.1\n\
         g 1.795501750839e+09\n\
         h -0\n\
         i 4.9e-324\n",
    );
    let v: Vec<f64> = c.scrapes[0].samples.iter().map(|&(_, v)| v).collect();
    assert!(v[0].is_nan() && v[1].is_nan());
    assert_eq!(&v[2..5], &[f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY]);
    let bits = |x: f64| x.to_bits();
    assert_eq!(bits(v[5]), bits(0.1));
    assert_eq!(bits(v[6]), bits(1_795_501_750.839));
    assert_eq!(bits(v[7]), bits(-0.0));
    assert_eq!(bits(v[8]), 1, "smallest subnormal");
}

#[test]
fn kinds_units_and_help_follow_type_and_help_lines() {
    let c = parse(
        "# SCRAPE j 1\n\
         # HELP req_total Requests \\\\ served.\\nSecond line.\n\
         # TYPE req_total counter\n\
         req_total 10\n\
         # TYPE temp gauge\n\
         temp 21.5\n\
         # TYPE odd untyped\n\
         odd 1\n\
         undeclared_bytes 4096\n\
         # HELP rpc_duration_seconds RPC latency.\n\
         # TYPE rpc_duration_seconds summary\n\
         rpc_duration_seconds{quantile=\"0.5\"} 0.01\n\
         rpc_duration_seconds{quantile=\"0.99\"} 0.2\n\
         rpc_duration_seconds_sum 12.5\n\
         rpc_duration_seconds_count 1000\n\
         # TYPE http_request_size_bytes histogram\n\
         http_request_size_bytes_bucket{le=\"100\"} 3\n\
         http_request_size_bytes_bucket{le=\"+Inf\"} 5\n\
         http_request_size_bytes_sum 420\n\
         http_request_size_bytes_count 5\n\
         node_cpu_seconds_total{cpu=\"0\"} 1.5\n",
    );
    let kind_unit = |name: &str| {
        let s = series(&c, name);
        assert!(!s.is_empty(), "{name} missing");
        (s[0].kind, s[0].unit.as_str())
    };
    use MetricKind::{Counter, Gauge};
    assert_eq!(kind_unit("req_total"), (Counter, ""));
    assert_eq!(kind_unit("temp"), (Gauge, ""));
    assert_eq!(kind_unit("odd"), (Gauge, ""));
    assert_eq!(kind_unit("undeclared_bytes"), (Gauge, "bytes"));
    assert_eq!(kind_unit("rpc_duration_seconds"), (Gauge, "seconds"));
    assert_eq!(
        series(&c, "rpc_duration_seconds").len(),
        2,
        "one per quantile"
    );
    assert_eq!(kind_unit("rpc_duration_seconds_sum"), (Counter, "seconds"));
    assert_eq!(
        kind_unit("rpc_duration_seconds_count"),
        (Counter, "seconds")
    );
    assert_eq!(
        kind_unit("http_request_size_bytes_bucket"),
        (Counter, "bytes")
    );
    assert_eq!(kind_unit("http_request_size_bytes_sum"), (Counter, "bytes"));
    assert_eq!(
        kind_unit("http_request_size_bytes_count"),
        (Counter, "bytes")
    );
    // Undeclared: a gauge, whatever the name says.
    assert_eq!(kind_unit("node_cpu_seconds_total"), (Gauge, "seconds"));

    assert_eq!(
        series(&c, "req_total")[0].help,
        "Requests \\ served.\nSecond line."
    );
    assert_eq!(
        series(&c, "rpc_duration_seconds_count")[0].help,
        "RPC latency."
    );
    assert_eq!(series(&c, "temp")[0].help, "");
}

#[test]
fn type_lines_apply_to_their_own_scrape_only() {
    let c = parse(
        "# SCRAPE a 1\n\
         # TYPE x counter\n\
         x 1\n\
         # SCRAPE b 2\n\
         x 1\n",
    );
    assert_eq!(c.series[0].kind, MetricKind::Counter);
    assert_eq!(c.series[1].kind, MetricKind::Gauge);
}

#[test]
fn failed_scrapes_are_counted_and_skipped() {
    let c = parse(
        "# SCRAPE-FAILED node 500 connection refused (os error 111)\n\
         # SCRAPE postgres 1000\n\
         pg_up 1\n\
         # SCRAPE-FAILED postgres 2000 timeout\n\
         \n\
         # SCRAPE postgres 3000\n\
         pg_up 1\n",
    );
    assert_eq!(c.scrapes.len(), 2);
    assert_eq!(c.failed.len(), 2);
    assert_eq!(c.failed[0].job, "node");
    assert_eq!(c.failed[0].timestamp_ms, 500);
    assert_eq!(c.failed[0].reason, "connection refused (os error 111)");
    assert_eq!(c.failed[1].reason, "timeout");
    assert_eq!(c.sample_count(), 2);
}

#[test]
fn a_job_label_on_the_sample_becomes_exported_job() {
    let c = parse("# SCRAPE fed 1\nup{job=\"inner\"} 1\n");
    assert_eq!(
        c.series[0].labels,
        labels(&[("exported_job", "inner"), ("job", "fed")])
    );
}

#[test]
fn crlf_line_ends_and_explicit_timestamps_are_accepted() {
    let c = parse("# SCRAPE j 1000\r\nm{a=\"b\"} 2 999\r\n");
    assert_eq!(c.scrapes[0].timestamp_ms, 1000);
    assert_eq!(c.scrapes[0].samples, vec![(SeriesId(0), 2.0)]);
}

#[test]
fn malformed_lines_name_their_line_number() {
    let head = "# SCRAPE j 1\n# TYPE ok gauge\nok 1\n";
    let cases: &[(&str, usize, &str)] = &[
        ("m{a=\"x} 1\n", 4, "unterminated label value"),
        ("m{a=\"x\"\n", 4, "unterminated label set"),
        ("m abc\n", 4, "bad sample value `abc`"),
        ("m\n", 4, "missing sample value"),
        ("m{a=\"\\q\"} 1\n", 4, "invalid escape"),
        ("m{a=\"1\",a=\"2\"} 1\n", 4, "label `a` appears twice"),
        ("m 1 12.5\n", 4, "bad sample timestamp"),
        ("# TYPE m histo\n", 4, "unknown type `histo`"),
        ("\n\nok 2\n", 6, "appears twice in one scrape"),
        ("# SCRAPE j\n", 4, "bad scrape header"),
        ("# SCRAPE j 12x\n", 4, "bad scrape header"),
        ("# SCRAPE-FAILED j\n", 4, "bad failed-scrape header"),
        ("# SCRAPE-FAILED j 5 down\nm 1\n", 5, "failed"),
        (
            "# SCRAPE-FAILED j 5 down\n# TYPE m gauge\n",
            5,
            "TYPE after a `# SCRAPE-FAILED` header",
        ),
    ];
    for &(tail, line, why) in cases {
        let err = parse_err(&format!("{head}{tail}"));
        assert_eq!(err.line, line, "{tail:?}: {err}");
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("line {line}: ")), "{msg}");
        assert!(
            msg.contains(why),
            "{tail:?}: `{msg}` should mention `{why}`"
        );
    }
}

#[test]
fn samples_before_the_first_header_are_an_error() {
    let err = parse_err("# a comment\n\npg_up 1\n# SCRAPE j 1\n");
    assert_eq!(err.line, 3);
    assert_eq!(err.kind, ParseErrorKind::BeforeFirstScrape("sample"));
    assert!(err.to_string().contains("before any `# SCRAPE` header"));
}

#[test]
fn invalid_utf8_is_an_error() {
    let err = parse_corpus(b"# SCRAPE j 1\nm{a=\"\xff\"} 1\n").unwrap_err();
    assert_eq!((err.line, err.kind), (2, ParseErrorKind::NotUtf8));
}

#[test]
fn repeats_in_later_scrapes_are_fine() {
    let c = parse("# SCRAPE j 1\nm 1\n# SCRAPE j 2\nm 1\n");
    assert_eq!(c.series.len(), 1);
}

fn tmp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn files_are_read_plain_or_zstd_compressed() {
    let text = "# SCRAPE j 1\npg_up 1\n# SCRAPE j 2\npg_up 0\n";
    let plain = tmp_file("corpus_parse_plain.txt", text.as_bytes());
    let packed = tmp_file(
        "corpus_parse_packed.txt.zst",
        &zstd::bulk::compress(text.as_bytes(), 3).unwrap(),
    );
    for path in [&plain, &packed] {
        assert_eq!(read_corpus_text(path).unwrap(), text.as_bytes());
        let (corpus, raw) = load_corpus(path).unwrap();
        assert_eq!(corpus.sample_count(), 2);
        assert_eq!(raw.len(), text.len());
    }
}

#[test]
fn file_errors_name_the_file() {
    let bad = tmp_file("corpus_parse_bad.txt", b"# SCRAPE j 1\nm{\n");
    let err = load_corpus(&bad).unwrap_err();
    let CorpusError::Parse { path, source } = &err else {
        panic!("expected a parse error, got {err:?}");
    };
    assert_eq!(path, &bad);
    assert_eq!(source.line, 2);
    assert!(err.to_string().contains("corpus_parse_bad.txt"), "{err}");
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(
        cause.as_deref(),
        Some("line 2: unterminated label set (no closing `}`)")
    );

    let truncated = tmp_file("corpus_parse_truncated.zst", &[0x28, 0xB5, 0x2F, 0xFD, 1]);
    assert!(matches!(
        read_corpus_text(&truncated),
        Err(CorpusError::Decompress { .. })
    ));

    let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no_such_corpus.txt");
    assert!(matches!(
        read_corpus_text(&missing),
        Err(CorpusError::Read { .. })
    ));
}
