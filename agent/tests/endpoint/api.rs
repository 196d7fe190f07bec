//! The endpoint's routes, driven in process through the router (no TLS): `/metrics`
//! in both exposition formats, the pull protocol of `/v1/blocks` (order, head, gaps,
//! pagination, and a client that pulls while the agent writes, with cut-short bodies
//! and a restart), `/v1/series`, `/v1/status`, and bad requests.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use pga_agent::collect::Collector;
use pga_agent::collect::{Emitted, Emitter};
use pga_agent::endpoint::api::{
    ApiState, FRAMES_CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, headers, router,
};
use pga_agent::store::{Store, StoreOptions};
use pga_agent::telemetry::SelfCollector;
use pga_agent::telemetry::Telemetry;
use pga_format::{AgentId, MetricKind, SeriesId};
use pga_lab::{Rng, now_ms};
use tower::ServiceExt;

const MAX_RESPONSE_BYTES: usize = 1 << 20;

fn opts(block_ms: i64) -> StoreOptions {
    StoreOptions {
        max_bytes: 256 << 20,
        retention_ms: 0,
        block_ms,
    }
}

fn app(store: &Store) -> Router {
    router(ApiState {
        store: store.handle(),
        agent_name: "db-1".into(),
        max_response_bytes: MAX_RESPONSE_BYTES,
        inventory: Default::default(),
    })
}

fn sample(
    name: &str,
    labels: &[(&str, &str)],
    kind: MetricKind,
    help: &'static str,
    value: f64,
) -> Emitted {
    Emitted::new(kind, name, help, "", labels, value)
}

fn gauge(name: &str, labels: &[(&str, &str)], value: f64) -> Emitted {
    sample(name, labels, MetricKind::Gauge, "A test gauge.", value)
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: impl axum::http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

async fn request(app: &Router, method: Method, uri: &str, accept: Option<&str>) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(a) = accept {
        req = req.header(header::ACCEPT, a);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(app: &Router, uri: &str) -> Reply {
    request(app, Method::GET, uri, None).await
}

/// A sample as a client keeps it: (series id, timestamp, value bits).
type Key = (u64, i64, u64);

/// The frames of a body: (sequence, samples).
fn frames(body: &[u8]) -> Vec<(u64, Vec<Key>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let (_, len) = pga_format::frame::read_frame(&body[pos..]).unwrap();
        let block = pga_format::decode_block(&body[pos..pos + len]).unwrap();
        let samples = block
            .collections()
            .into_iter()
            .flat_map(|(ts, pairs)| {
                pairs
                    .into_iter()
                    .map(move |(id, v)| (id.0, ts, v.to_bits()))
            })
            .collect();
        out.push((block.header.sequence, samples));
        pos += len;
    }
    out
}

fn seqs(body: &[u8]) -> Vec<u64> {
    frames(body).into_iter().map(|(s, _)| s).collect()
}

/// A store with `blocks` sealed one-second blocks of two collections each, plus a head
/// of one collection.
fn store_with_blocks(dir: &Path, blocks: i64) -> Store {
    let (mut store, _) = Store::open(dir, opts(1000)).unwrap();
    let t0 = 1_700_000_000_000i64;
    for w in 0..=blocks {
        let collections = if w == blocks { 1 } else { 2 };
        for c in 0..collections {
            let ts = t0 + w * 1000 + c * 500;
            let batch: Vec<Emitted> = (0..5)
                .map(|i| {
                    gauge(
                        "pull_value",
                        &[("i", &i.to_string())],
                        (w * 10 + c + i) as f64,
                    )
                })
                .collect();
            store.append(ts, &batch, None).unwrap();
        }
    }
    assert_eq!(store.sequence_range(), Some((1, blocks as u64)));
    store
}

#[tokio::test]
async fn pulling_from_zero_returns_every_sealed_block_in_order_then_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_blocks(dir.path(), 6);
    let app = app(&store);
    let r = get(&app, "/v1/blocks?after=0").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CONTENT_TYPE), Some(FRAMES_CONTENT_TYPE));
    assert_eq!(
        r.header(headers::AGENT_ID),
        Some(store.agent_id().to_string().as_str())
    );
    assert_eq!(r.header(headers::FORMAT_VERSION), Some("1"));
    assert_eq!(r.header(headers::OLDEST_SEQUENCE), Some("1"));
    assert_eq!(r.header(headers::NEWEST_SEQUENCE), Some("6"));
    assert_eq!(r.header(headers::HEAD_SEQUENCE), Some("7"));
    assert_eq!(r.header(headers::HEAD), Some("present"));
    assert_eq!(r.header(headers::MORE), Some("false"));
    assert_eq!(r.header(headers::LAST_SEQUENCE), Some("6"));
    assert_eq!(r.header(headers::GAP), None);
    assert_eq!(
        r.header(header::CONTENT_LENGTH),
        Some(r.body.len().to_string().as_str())
    );
    let got = frames(&r.body);
    assert_eq!(
        got.iter().map(|f| f.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6, 7]
    );
    // Block w holds its two collections of five series; the head the last one.
    for (w, (_, samples)) in got.iter().enumerate() {
        let expected = if w == 6 { 5 } else { 10 };
        assert_eq!(samples.len(), expected, "frame {w}");
        let (_, ts, bits) = samples[0];
        assert_eq!(ts, 1_700_000_000_000 + w as i64 * 1000);
        assert_eq!(f64::from_bits(bits), (w * 10) as f64);
    }
    for f in pga_format::frame::frames(&r.body) {
        let (_, bytes) = f.unwrap();
        let (frame, _) = pga_format::frame::read_frame(bytes).unwrap();
        assert_eq!(frame.header.agent_id, store.agent_id());
    }
}

#[tokio::test]
async fn pulling_after_the_newest_returns_only_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_blocks(dir.path(), 4);
    let app = app(&store);
    let r = get(&app, "/v1/blocks?after=4").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(seqs(&r.body), vec![5]);
    assert_eq!(r.header(headers::HEAD), Some("present"));
    assert_eq!(r.header(headers::HEAD_SEQUENCE), Some("5"));
    assert_eq!(r.header(headers::NEWEST_SEQUENCE), Some("4"));
    assert_eq!(r.header(headers::MORE), Some("false"));
    assert_eq!(r.header(headers::LAST_SEQUENCE), None);
    assert_eq!(r.header(headers::GAP), None);

    // A cursor at the head's sequence (never given out by a correct exchange) gets
    // nothing at all, and says so.
    let r = get(&app, "/v1/blocks?after=5").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    assert_eq!(r.header(headers::HEAD), Some("absent"));
}

#[tokio::test]
async fn an_empty_store_answers_with_no_frames_and_no_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), opts(1000)).unwrap();
    let r = get(&app(&store), "/v1/blocks?after=0").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    assert_eq!(r.header(headers::OLDEST_SEQUENCE), None);
    assert_eq!(r.header(headers::NEWEST_SEQUENCE), None);
    assert_eq!(r.header(headers::HEAD_SEQUENCE), Some("1"));
    assert_eq!(r.header(headers::HEAD), Some("absent"));
    assert_eq!(r.header(headers::MORE), Some("false"));
    assert_eq!(r.header(headers::GAP), None);
}

/// Noisy samples that do not compress away, so that blocks have weight.
fn noisy(series: usize, tick: u64) -> Vec<Emitted> {
    (0..series)
        .map(|i| {
            let x = (tick.wrapping_mul(2_654_435_761) ^ (i as u64).wrapping_mul(40_503)) % 100_003;
            gauge("noisy", &[("i", &i.to_string())], x as f64 / 7.0)
        })
        .collect()
}

#[tokio::test]
async fn pulling_after_evicted_data_reports_the_gap_and_serves_what_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let budget = StoreOptions {
        max_bytes: 2 << 20,
        retention_ms: 0,
        block_ms: 1000,
    };
    let (mut store, _) = Store::open(dir.path(), budget).unwrap();
    let t0 = 1_700_000_000_000i64;
    let mut tick = 0u64;
    // Append until the budget has evicted some blocks, then a few more windows.
    let mut extra = 0;
    while extra < 3 {
        let ts = t0 + tick as i64 * 250;
        store.append(ts, &noisy(400, tick), None).unwrap();
        tick += 1;
        if store.sequence_range().is_some_and(|(oldest, _)| oldest > 1) && tick.is_multiple_of(4) {
            extra += 1;
        }
        assert!(tick < 20_000, "the budget never evicted anything");
    }
    let (oldest, newest) = store.sequence_range().unwrap();
    assert!(newest > oldest, "more than one block is still held");
    let app = app(&store);

    let r = get(&app, "/v1/blocks?after=0").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header(headers::GAP),
        Some(format!("1-{}", oldest - 1).as_str())
    );
    assert_eq!(
        r.header(headers::OLDEST_SEQUENCE),
        Some(oldest.to_string().as_str())
    );
    let got = seqs(&r.body);
    let expected: Vec<u64> = (oldest..=newest + 1).collect();
    assert_eq!(got, expected, "every held block, then the head");

    // A cursor inside the evicted range: the gap starts right after it.
    let r = get(&app, "/v1/blocks?after=1").await;
    if oldest > 2 {
        assert_eq!(
            r.header(headers::GAP),
            Some(format!("2-{}", oldest - 1).as_str())
        );
    }
    // A cursor at the last evicted block: nothing is missing.
    let r = get(&app, &format!("/v1/blocks?after={}", oldest - 1)).await;
    assert_eq!(r.header(headers::GAP), None);
    assert_eq!(seqs(&r.body)[0], oldest);
}

#[tokio::test]
async fn when_every_sealed_block_was_evicted_the_gap_runs_up_to_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = StoreOptions {
        max_bytes: 1,
        retention_ms: 0,
        block_ms: 1000,
    };
    let (mut store, _) = Store::open(dir.path(), tiny).unwrap();
    for w in 0..5i64 {
        store
            .append(
                1_700_000_000_000 + w * 1000,
                &[gauge("tiny", &[], w as f64)],
                None,
            )
            .unwrap();
    }
    assert_eq!(store.block_count(), 0);
    let r = get(&app(&store), "/v1/blocks?after=0").await;
    assert_eq!(r.header(headers::GAP), Some("1-4"));
    assert_eq!(r.header(headers::OLDEST_SEQUENCE), None);
    assert_eq!(r.header(headers::NEWEST_SEQUENCE), None);
    assert_eq!(seqs(&r.body), vec![5], "only the head is left");
}

#[tokio::test]
async fn max_bytes_pages_the_blocks_and_says_more_is_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_blocks(dir.path(), 5);
    let app = app(&store);
    // One byte: one block per response (a block larger than the budget still goes whole).
    let mut cursor = 0;
    let mut pages = Vec::new();
    loop {
        let r = get(&app, &format!("/v1/blocks?after={cursor}&max_bytes=1")).await;
        assert_eq!(r.status, StatusCode::OK);
        let got = seqs(&r.body);
        let more = r.header(headers::MORE) == Some("true");
        pages.push((
            got.clone(),
            more,
            r.header(headers::HEAD).unwrap().to_owned(),
        ));
        match r.header(headers::LAST_SEQUENCE) {
            Some(last) => cursor = last.parse().unwrap(),
            None => break,
        }
        if !more {
            break;
        }
    }
    let expected: Vec<(Vec<u64>, bool, String)> = vec![
        (vec![1], true, "absent".into()),
        (vec![2], true, "absent".into()),
        (vec![3], true, "absent".into()),
        (vec![4], true, "absent".into()),
        (vec![5, 6], false, "present".into()),
    ];
    assert_eq!(pages, expected);

    // A budget of two blocks' worth.
    let whole = get(&app, "/v1/blocks?after=0").await;
    let mut sizes = Vec::new();
    let mut pos = 0;
    while pos < whole.body.len() {
        let (_, len) = pga_format::frame::read_frame(&whole.body[pos..]).unwrap();
        sizes.push(len);
        pos += len;
    }
    let budget = sizes[0] + sizes[1];
    let r = get(&app, &format!("/v1/blocks?after=0&max_bytes={budget}")).await;
    assert_eq!(seqs(&r.body), vec![1, 2]);
    assert_eq!(r.header(headers::MORE), Some("true"));
    assert_eq!(r.header(headers::LAST_SEQUENCE), Some("2"));
}

/// A puller that follows PROTOCOL.md's client algorithm.
#[derive(Default)]
struct Client {
    agent: Option<AgentId>,
    cursor: u64,
    /// Samples of sealed blocks, in the order ingested (duplicates would show).
    sealed: Vec<Key>,
    /// Samples seen in head frames (provisional).
    provisional: BTreeSet<Key>,
    gaps: Vec<(u64, u64)>,
    cut_short: u64,
}

impl Client {
    /// One request. Returns true when the client is caught up.
    async fn pull(&mut self, app: &Router, max_bytes: usize, cut: Option<u64>) -> bool {
        let r = get(
            app,
            &format!("/v1/blocks?after={}&max_bytes={max_bytes}", self.cursor),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        let hdr = |name| r.header(name).map(str::to_owned);
        let head_seq: u64 = hdr(headers::HEAD_SEQUENCE).unwrap().parse().unwrap();
        let head_present = hdr(headers::HEAD).as_deref() == Some("present");
        let more = hdr(headers::MORE).as_deref() == Some("true");
        let last: Option<u64> = hdr(headers::LAST_SEQUENCE).map(|v| v.parse().unwrap());
        if let Some(gap) = hdr(headers::GAP) {
            let (first, end) = gap.split_once('-').unwrap();
            let (first, end): (u64, u64) = (first.parse().unwrap(), end.parse().unwrap());
            assert_eq!(
                first,
                self.cursor + 1,
                "a gap starts right after the cursor"
            );
            self.gaps.push((first, end));
            self.cursor = end;
        }
        let mut body = r.body.as_slice();
        if let Some(cut) = cut {
            let at = (cut % (body.len() as u64 + 1)) as usize;
            if at < body.len() {
                self.cut_short += 1;
            }
            body = &body[..at];
        }
        let mut pos = 0;
        while pos < body.len() {
            // A frame cut short does not read: drop it and what follows.
            let Ok((frame, len)) = pga_format::frame::read_frame(&body[pos..]) else {
                break;
            };
            let agent = frame.header.agent_id;
            assert_eq!(*self.agent.get_or_insert(agent), agent, "same agent");
            let block = pga_format::decode_block(&body[pos..pos + len]).unwrap();
            let seq = block.header.sequence;
            let samples = block.collections().into_iter().flat_map(|(ts, pairs)| {
                pairs
                    .into_iter()
                    .map(move |(id, v): (SeriesId, f64)| (id.0, ts, v.to_bits()))
            });
            if head_present && seq == head_seq {
                assert_eq!(pos + len, r.body.len(), "the head is the last frame");
                self.provisional.extend(samples);
            } else {
                assert_eq!(seq, self.cursor + 1, "sealed blocks are consecutive");
                self.sealed.extend(samples);
                self.cursor = seq;
            }
            pos += len;
        }
        let complete = last.is_none_or(|l| self.cursor >= l);
        complete && !more
    }
}

#[tokio::test]
async fn a_client_pulling_while_the_agent_writes_never_skips_or_doubles_data() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(dir.path(), opts(1000)).unwrap();
    let mut app = app(&store);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut client = Client::default();
    // What was appended, and in which one-second window.
    let mut appended: Vec<(i64, Vec<Key>)> = Vec::new();
    let mut ts = 1_700_000_000_000i64;
    let mut restarts = 0;
    for step in 0..400 {
        for _ in 0..rng.below(4) {
            ts += 250 * (1 + rng.below(3) as i64);
            let n = 1 + rng.below(12) as usize;
            let batch: Vec<Emitted> = (0..n)
                .map(|i| {
                    let v = match rng.below(10) {
                        0 => f64::NAN,
                        1 => f64::INFINITY,
                        _ => rng.next() as f64 / 1024.0,
                    };
                    let kind = if i % 2 == 0 {
                        MetricKind::Gauge
                    } else {
                        MetricKind::Counter
                    };
                    sample(
                        &format!("sim_{}", i % 4),
                        &[("i", &i.to_string())],
                        kind,
                        "Sim.",
                        v,
                    )
                })
                .collect();
            store.append(ts, &batch, None).unwrap();
            let ids: HashMap<(String, String), u64> = store
                .series()
                .iter()
                .map(|m| ((m.name.clone(), m.labels[0].1.clone()), m.id.0))
                .collect();
            let keys = batch
                .iter()
                .map(|e| {
                    (
                        ids[&(e.name.clone(), e.labels[0].1.clone())],
                        ts,
                        e.value.to_bits(),
                    )
                })
                .collect();
            appended.push((ts, keys));
        }
        if step % 150 == 149 {
            // The agent restarts mid-pull: same store, new process.
            drop(app);
            drop(store);
            store = Store::open(dir.path(), opts(1000)).unwrap().0;
            app = self::app(&store);
            restarts += 1;
        }
        let cut = (rng.below(3) == 0).then(|| rng.next());
        let max_bytes = [1, 600, 4000, 1 << 20][rng.below(4) as usize];
        client.pull(&app, max_bytes, cut).await;
    }
    // Seal the last head with one collection in a new window, then catch up.
    ts = (ts / 1000 + 1) * 1000;
    store.append(ts, &[gauge("final", &[], 1.0)], None).unwrap();
    let mut rounds = 0;
    while !client.pull(&app, 4000, None).await {
        rounds += 1;
        assert!(rounds < 10_000, "the client never caught up");
    }

    let sealed_expected: BTreeSet<Key> = appended.iter().flat_map(|(_, k)| k.clone()).collect();
    let sealed_got: BTreeSet<Key> = client.sealed.iter().copied().collect();
    assert_eq!(
        client.sealed.len(),
        sealed_got.len(),
        "no sample of a sealed block was ingested twice"
    );
    let missing: Vec<_> = sealed_expected.difference(&sealed_got).take(5).collect();
    let extra: Vec<_> = sealed_got.difference(&sealed_expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(
        sealed_expected.len(),
        appended.iter().map(|(_, k)| k.len()).sum::<usize>()
    );
    // Whatever the head showed was later sealed (or is in the last head).
    let final_id = store
        .series()
        .iter()
        .find(|m| m.name == "final")
        .unwrap()
        .id
        .0;
    assert!(
        client
            .provisional
            .iter()
            .all(|k| sealed_got.contains(k) || k.0 == final_id)
    );
    assert!(
        client.gaps.is_empty(),
        "nothing was evicted: {:?}",
        client.gaps
    );
    assert_eq!(restarts, 2);
    assert!(
        client.cut_short > 20,
        "bodies were cut short: {}",
        client.cut_short
    );
    assert!(client.sealed.len() > 1000);
    assert_eq!(client.cursor, store.sequence_range().unwrap().1);
}

#[tokio::test]
async fn a_client_behind_eviction_records_the_gap_and_resumes_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let retention = StoreOptions {
        max_bytes: 256 << 20,
        retention_ms: 3000,
        block_ms: 1000,
    };
    let (mut store, _) = Store::open(dir.path(), retention).unwrap();
    let app = app(&store);
    let t0 = 1_700_000_000_000i64;
    let mut client = Client::default();
    for w in 0..3 {
        store
            .append(t0 + w * 1000, &[gauge("r", &[], w as f64)], None)
            .unwrap();
    }
    while !client.pull(&app, 1 << 20, None).await {}
    assert_eq!(client.cursor, 2);
    // The client goes away; ten more windows pass and retention drops the old ones.
    for w in 3..13 {
        store
            .append(t0 + w * 1000, &[gauge("r", &[], w as f64)], None)
            .unwrap();
    }
    let (oldest, newest) = store.sequence_range().unwrap();
    assert!(oldest > 3);
    while !client.pull(&app, 1 << 20, None).await {}
    assert_eq!(client.gaps, vec![(3, oldest - 1)]);
    assert_eq!(client.cursor, newest);
    let got: BTreeSet<i64> = client.sealed.iter().map(|k| k.1).collect();
    let expected: BTreeSet<i64> = (0..2)
        .chain(oldest as i64 - 1..newest as i64)
        .map(|w| t0 + w * 1000)
        .collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn malformed_query_parameters_get_400_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_blocks(dir.path(), 1);
    let app = app(&store);
    for (uri, needle) in [
        ("/v1/blocks?after=-1", "invalid after \"-1\""),
        ("/v1/blocks?after=abc", "invalid after \"abc\""),
        ("/v1/blocks?after=", "invalid after \"\""),
        ("/v1/blocks?after=18446744073709551616", "invalid after"),
        ("/v1/blocks?after=0&max_bytes=0", "invalid max_bytes \"0\""),
        ("/v1/blocks?after=0&max_bytes=1048577", "from 1 to 1048576"),
        ("/v1/blocks?after=0&max_bytes=x", "invalid max_bytes"),
        ("/v1/blocks", "parameter after is missing"),
        ("/v1/blocks?max_bytes=10", "parameter after is missing"),
        ("/v1/blocks?after=1&after=2", "parameter after given twice"),
        ("/v1/blocks?afterr=1", "unknown parameter \"afterr\""),
        ("/v1/series?after=x", "invalid after \"x\""),
        ("/v1/series?id=3", "unknown parameter \"id\""),
    ] {
        let r = get(&app, uri).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(r.text().contains(needle), "{uri}: {}", r.text());
        assert!(
            r.header(header::CONTENT_TYPE)
                .unwrap()
                .starts_with("text/plain"),
            "{uri}"
        );
    }
    let r = get(&app, "/v1/blocks?after=-1").await;
    assert_eq!(
        r.text(),
        "invalid after \"-1\": expected an integer from 0 to 18446744073709551615 \
         (a block sequence number, 0 = from the beginning)\n"
    );
    // A long value or name is not echoed back whole.
    let long = "9".repeat(5000);
    for uri in [
        format!("/v1/blocks?after={long}"),
        format!("/v1/blocks?after=0&{long}=1"),
    ] {
        let r = get(&app, &uri).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(
            r.text().len() < 400,
            "{} bytes: {}",
            r.text().len(),
            r.text()
        );
        assert!(r.text().contains("(5000 characters)"), "{}", r.text());
    }
}

#[tokio::test]
async fn unknown_routes_get_404_and_other_methods_405() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), opts(1000)).unwrap();
    let app = app(&store);
    for uri in ["/nope", "/", "/v1", "/v2/blocks?after=0", "/metrics/x"] {
        let r = get(&app, uri).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(
            r.text().contains("GET /v1/blocks?after=SEQ"),
            "{}",
            r.text()
        );
    }
    for (method, uri) in [
        (Method::POST, "/metrics"),
        (Method::PUT, "/v1/blocks?after=0"),
        (Method::DELETE, "/v1/status"),
    ] {
        let r = request(&app, method, uri, None).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{uri}");
        assert_eq!(r.header(header::ALLOW), Some("GET,HEAD"));
        assert!(r.text().contains("method not allowed"));
    }
    let r = request(&app, Method::HEAD, "/v1/status", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn series_serves_the_dictionary_after_an_id() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(dir.path(), opts(1000)).unwrap();
    let t0 = 1_700_000_000_000i64;
    // Three commits add series 0-2, 3-4 and 5.
    store
        .append(
            t0,
            &[
                gauge("a", &[], 1.0),
                gauge("b", &[], 1.0),
                gauge("c", &[], 1.0),
            ],
            None,
        )
        .unwrap();
    store
        .append(t0 + 1, &[gauge("d", &[], 1.0), gauge("e", &[], 1.0)], None)
        .unwrap();
    store.append(t0 + 2, &[gauge("f", &[], 1.0)], None).unwrap();
    let app = app(&store);
    let names = dictionary;
    let r = get(&app, "/v1/series").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CONTENT_TYPE), Some(FRAMES_CONTENT_TYPE));
    assert_eq!(r.header(headers::SERIES_COUNT), Some("6"));
    let all = names(&r.body);
    assert_eq!(
        all,
        ["a", "b", "c", "d", "e", "f"]
            .iter()
            .enumerate()
            .map(|(i, n)| (i as u64, n.to_string()))
            .collect::<Vec<_>>()
    );
    // After id 3: the frame of 3-4 (which also describes 3) and the frame of 5.
    let r = get(&app, "/v1/series?after=3").await;
    let got: Vec<u64> = names(&r.body).into_iter().map(|(id, _)| id).collect();
    assert_eq!(got, vec![3, 4, 5]);
    assert_eq!(r.header(headers::SERIES_COUNT), Some("6"));
    // Nothing new.
    let r = get(&app, "/v1/series?after=5").await;
    assert!(r.body.is_empty());
    assert_eq!(r.header(headers::SERIES_COUNT), Some("6"));
}

fn dictionary(body: &[u8]) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let (_, len) = pga_format::frame::read_frame(&body[pos..]).unwrap();
        let (_, metas) = pga_format::dictionary::decode(&body[pos..pos + len]).unwrap();
        out.extend(metas.into_iter().map(|m| (m.id.0, m.name)));
        pos += len;
    }
    out
}

#[tokio::test]
async fn status_tells_identity_version_store_figures_and_collector_health() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_blocks(dir.path(), 3);
    let r = get(&app(&store), "/v1/status").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CONTENT_TYPE), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["agent_name"], "db-1");
    assert_eq!(v["agent_id"], store.agent_id().to_string());
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["blocks"], 3);
    assert_eq!(v["oldest_sequence"], 1);
    assert_eq!(v["newest_sequence"], 3);
    assert_eq!(v["series"], 5);
    assert!(v["file_bytes"].as_u64().unwrap() > 0);
    assert!(v["collectors"].is_array());
    // Protocol 1.1: the host and the instances watched, for the federator's inventory.
    assert_eq!(v["host"], pga_agent::config::host_name());
    assert_eq!(v["instances"], serde_json::json!([]));
    let report = pga_agent::collect::server_facts::InstanceReport {
        name: "main".into(),
        port: Some(5432),
        system_identifier: Some("7301234567890123456".into()),
        in_recovery: Some(true),
        databases: Some(vec!["app".into()]),
        ..Default::default()
    };
    let app = router(ApiState {
        store: store.handle(),
        agent_name: "db-1".into(),
        max_response_bytes: MAX_RESPONSE_BYTES,
        inventory: pga_agent::endpoint::api::Inventory::new(vec![std::sync::Arc::new(
            std::sync::RwLock::new(report),
        )]),
    });
    let r = get(&app, "/v1/status").await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["instances"],
        serde_json::json!([{
            "name": "main", "host": null, "port": 5432, "server_version": null,
            "server_version_num": null, "system_identifier": "7301234567890123456",
            "in_recovery": true, "databases": ["app"], "updated_ms": null
        }])
    );
}

/// A store with the series of the `/metrics` tests, written at `now`.
fn metrics_store(dir: &Path, now: i64) -> Store {
    let (mut store, _) = Store::open(dir, opts(600_000)).unwrap();
    // Stale: last written 11 minutes ago.
    store
        .append(now - 11 * 60_000, &[gauge("old_gauge", &[], 3.0)], None)
        .unwrap();
    let mut commits = sample(
        "pg_stat_database_xact_commit_total",
        &[("datname", "app")],
        MetricKind::Counter,
        "Transactions committed.\nPer database, \\ \"quoted\".",
        12_345_678_901.0,
    );
    let weird = sample(
        "pg_stat_database_xact_commit_total",
        &[("datname", "we\"ird\\na\nme")],
        MetricKind::Counter,
        "Transactions committed.\nPer database, \\ \"quoted\".",
        1e6,
    );
    let mut seconds = sample(
        "pg_stat_bgwriter_checkpoint_write_time_seconds_total",
        &[],
        MetricKind::Counter,
        "Time spent writing checkpoint files.",
        1.5,
    );
    seconds.unit = "seconds";
    let batch = vec![
        gauge("pg_up", &[], 1.0),
        gauge("test_value", &[("case", "nan")], f64::NAN),
        gauge("test_value", &[("case", "inf")], f64::INFINITY),
        gauge("test_value", &[("case", "-inf")], f64::NEG_INFINITY),
        gauge("test_value", &[("case", "small")], 1.5e-7),
        gauge("test_value", &[("case", "negative")], -0.25),
        weird,
        commits.clone(),
        seconds,
        sample(
            "untotalled",
            &[],
            MetricKind::Counter,
            "A counter without _total.",
            2.0,
        ),
    ];
    store.append(now - 5000, &batch, None).unwrap();
    // The newest value wins.
    commits.value = 12_345_678_999.0;
    store.append(now, &[commits], None).unwrap();
    store
}

const TEXT_GOLDEN: &str = r#"# HELP pg_stat_bgwriter_checkpoint_write_time_seconds_total Time spent writing checkpoint files.
# TYPE pg_stat_bgwriter_checkpoint_write_time_seconds_total counter
pg_stat_bgwriter_checkpoint_write_time_seconds_total 1.5
# HELP pg_stat_database_xact_commit_total Transactions committed.\nPer database, \\ "quoted".
# TYPE pg_stat_database_xact_commit_total counter
pg_stat_database_xact_commit_total{datname="app"} 12345678999
pg_stat_database_xact_commit_total{datname="we\"ird\\na\nme"} 1000000
# HELP pg_up A test gauge.
# TYPE pg_up gauge
pg_up 1
# HELP test_value A test gauge.
# TYPE test_value gauge
test_value{case="-inf"} -Inf
test_value{case="inf"} +Inf
test_value{case="nan"} NaN
test_value{case="negative"} -0.25
test_value{case="small"} 1.5e-7
# HELP untotalled A counter without _total.
# TYPE untotalled counter
untotalled 2
"#;

const OPENMETRICS_GOLDEN: &str = r#"# HELP pg_stat_bgwriter_checkpoint_write_time_seconds Time spent writing checkpoint files.
# TYPE pg_stat_bgwriter_checkpoint_write_time_seconds counter
# UNIT pg_stat_bgwriter_checkpoint_write_time_seconds seconds
pg_stat_bgwriter_checkpoint_write_time_seconds_total 1.5
# HELP pg_stat_database_xact_commit Transactions committed.\nPer database, \\ \"quoted\".
# TYPE pg_stat_database_xact_commit counter
pg_stat_database_xact_commit_total{datname="app"} 12345678999
pg_stat_database_xact_commit_total{datname="we\"ird\\na\nme"} 1000000
# HELP pg_up A test gauge.
# TYPE pg_up gauge
pg_up 1
# HELP test_value A test gauge.
# TYPE test_value gauge
test_value{case="-inf"} -Inf
test_value{case="inf"} +Inf
test_value{case="nan"} NaN
test_value{case="negative"} -0.25
test_value{case="small"} 1.5e-7
# HELP untotalled A counter without _total.
# TYPE untotalled unknown
untotalled 2
# EOF
"#;

/// The families `/metrics` serves live from the store's health (not stored), whose
/// values depend on the clock and the filesystem.
const LIVE: [&str; 5] = [
    "pga_agent_store_healthy",
    "pga_agent_store_write_errors",
    "pga_agent_store_reopens",
    "pga_agent_store_budget_bytes",
    "pga_agent_store_last_write_timestamp_seconds",
];

/// The exposition without the live families.
fn stored_only(text: &str) -> String {
    text.lines()
        .filter(|l| {
            let name = l
                .trim_start_matches("# HELP ")
                .trim_start_matches("# TYPE ")
                .trim_start_matches("# UNIT ");
            !LIVE.iter().any(|f| name.starts_with(f))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[tokio::test]
async fn metrics_in_the_text_format() {
    let dir = tempfile::tempdir().unwrap();
    let store = metrics_store(dir.path(), now_ms());
    let app = app(&store);
    for accept in [None, Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")] {
        let r = request(&app, Method::GET, "/metrics", accept).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header(header::CONTENT_TYPE), Some(TEXT_CONTENT_TYPE));
        assert_eq!(stored_only(r.text()), TEXT_GOLDEN, "Accept: {accept:?}");
    }
}

#[tokio::test]
async fn metrics_in_openmetrics_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = metrics_store(dir.path(), now_ms());
    let app = app(&store);
    // What Prometheus 2.x sends.
    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                  version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let r = request(&app, Method::GET, "/metrics", Some(accept)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header(header::CONTENT_TYPE),
        Some(OPENMETRICS_CONTENT_TYPE)
    );
    assert_eq!(stored_only(r.text()), OPENMETRICS_GOLDEN);
}

#[tokio::test]
async fn metrics_have_help_and_type_once_per_family_and_include_self_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(dir.path(), opts(600_000)).unwrap();
    let telemetry = Arc::new(Telemetry::new());
    telemetry.collector_pass("system", 0.012, 140, 1);
    let mut me = SelfCollector {
        telemetry: telemetry.clone(),
        collectors: vec!["self", "system"],
    };
    // What the scheduler does every fast tick: the self collector's pass is stored.
    let mut out = Emitter::new();
    assert!(me.collect(&mut out).is_empty());
    store.append(now_ms(), &out.take(), None).unwrap();
    telemetry.store(&store.figures(), 0);
    me.collect(&mut out);
    store.append(now_ms() + 1, &out.take(), None).unwrap();

    let app = app(&store);
    for accept in [None, Some("application/openmetrics-text")] {
        let r = request(&app, Method::GET, "/metrics", accept).await;
        let text = r.text();
        for needle in [
            "pga_agent_collector_errors_total{collector=\"system\"} 1\n",
            "pga_agent_collector_samples{collector=\"system\"} 140\n",
            "pga_agent_collector_last_duration_seconds{collector=\"system\"} 0.012\n",
            "pga_agent_store_series 25\n",
            "# TYPE pga_agent_store_file_bytes gauge\n",
            "pga_agent_endpoint_refused_total{reason=\"no_certificate\"} 0\n",
            "pga_agent_endpoint_handshakes 0\n",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
        let mut helps = BTreeSet::new();
        let mut types = BTreeSet::new();
        for line in text.lines() {
            let mut words = line.splitn(4, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("#"), Some("HELP"), Some(name)) => assert!(helps.insert(name), "{line}"),
                (Some("#"), Some("TYPE"), Some(name)) => assert!(types.insert(name), "{line}"),
                _ => {}
            }
        }
        assert_eq!(helps, types);
        assert_eq!(types.len(), 10 + LIVE.len(), "{types:?}");
    }
}

#[tokio::test]
async fn metrics_serve_the_store_health_live() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let store = metrics_store(dir.path(), now);
    for accept in [None, Some("application/openmetrics-text")] {
        let text = request(&app(&store), Method::GET, "/metrics", accept).await;
        let text = text.text();
        for needle in [
            "# TYPE pga_agent_store_healthy gauge\npga_agent_store_healthy 1\n",
            "pga_agent_store_write_errors_total 0\n",
            "pga_agent_store_reopens_total 0\n",
            "pga_agent_store_budget_bytes ",
            "pga_agent_store_last_write_timestamp_seconds ",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
    let status = get(&app(&store), "/v1/status").await;
    let v: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    assert_eq!(v["health"]["healthy"], true, "{v}");
    assert_eq!(v["health"]["write_errors_total"], 0, "{v}");
}

#[tokio::test]
async fn a_series_stales_after_three_of_its_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(dir.path(), opts(600_000)).unwrap();
    let now = now_ms();
    // Every 10 s until 50 s ago: stale (50 s > 3 × 10 s + 5 s).
    for t in [70_000, 60_000, 50_000] {
        store
            .append(now - t, &[gauge("stopped", &[], 1.0)], None)
            .unwrap();
    }
    // Every 10 s until 30 s ago: fresh. Once, 5 minutes ago: kept (no interval known).
    for t in [50_000, 40_000, 30_000] {
        store
            .append(now - t, &[gauge("late", &[], 2.0)], None)
            .unwrap();
    }
    store
        .append(now - 300_000, &[gauge("once", &[], 3.0)], None)
        .unwrap();
    let text = get(&app(&store), "/metrics").await;
    let text = text.text();
    assert!(!text.contains("stopped"), "{text}");
    assert!(text.contains("late 2\n"), "{text}");
    assert!(text.contains("once 3\n"), "{text}");
}

#[tokio::test]
async fn metrics_leave_out_stale_series_and_series_without_samples() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let store = metrics_store(dir.path(), now);
    let r = get(&app(&store), "/metrics").await;
    assert!(!r.text().contains("old_gauge"));
    // Through the renderer: ten minutes old is still fresh, a millisecond more is not.
    let latest = store.handle().latest();
    let old = latest.iter().find(|(m, _)| m.name == "old_gauge").unwrap();
    let (ts, _) = old.1.unwrap();
    use pga_agent::endpoint::api::{ExpositionFormat, STALE_AFTER_MS, render_metrics};
    let only_old = vec![old.clone()];
    let fresh = render_metrics(&only_old, ts + STALE_AFTER_MS, ExpositionFormat::Text);
    assert!(fresh.contains("old_gauge 3\n"));
    let stale = render_metrics(&only_old, ts + STALE_AFTER_MS + 1, ExpositionFormat::Text);
    assert_eq!(stale, "");
    let mut never = old.clone();
    never.1 = None;
    assert_eq!(
        render_metrics(&[never], ts, ExpositionFormat::OpenMetrics),
        "# EOF\n"
    );
}
