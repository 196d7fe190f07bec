//! The agent's HTTP API, transport aside: `GET /metrics` for Prometheus, and the pull
//! protocol `GET /v1/blocks`, `/v1/series` and `/v1/status` for the federator.
//! `storage-format/PROTOCOL.md` specifies every route, parameter, header and status.
//!
//! [`router`] builds the [`Router`]; the TLS server of the parent module serves it.
//! Store reads run on tokio's blocking pool: a redb read transaction, the zstd
//! compression of the head and a 10 000-series render must not hold up the workers
//! that serve the other connections.

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pga_format::protocol::{content_types, routes};
use pga_format::text::{EXPOSITION_PLAIN_BELOW, LABEL_ESCAPES, push_escaped, push_value};
use pga_format::{FORMAT_VERSION, MetricKind, SeriesMeta};

use crate::collect::server_facts::SharedInstanceReport;
use crate::now_ms;
use crate::store::{StoreError, StoreHandle};

/// Content type of `/v1/blocks` and `/v1/series` bodies: pga-format frames back to back.
pub const FRAMES_CONTENT_TYPE: &str = content_types::FRAMES;
/// The Prometheus text exposition format.
pub const TEXT_CONTENT_TYPE: &str = content_types::TEXT;
/// OpenMetrics 1.0, served when the `Accept` header asks for it.
pub const OPENMETRICS_CONTENT_TYPE: &str = content_types::OPENMETRICS;
/// The frame budget of a `/v1/blocks` response without `max_bytes` (capped by
/// [`ApiState::max_response_bytes`]).
pub const DEFAULT_MAX_BYTES: usize = 8 << 20;
/// `/metrics` leaves out a series whose latest sample is older than this: its
/// collector stopped producing it. A series stales sooner when it has a known
/// interval ([`StoreHandle::fresh`]).
pub const STALE_AFTER_MS: i64 = 10 * 60 * 1000;
/// The longest parameter value a 400 answer repeats.
const ECHO_CHARS: usize = 64;
/// `Retry-After` of a 503 while the store is closed after a failed write.
const RETRY_AFTER_SECS: &str = "10";

/// Response headers of the pull protocol (PROTOCOL.md, "Headers"), named once in
/// [`pga_format::protocol::headers`].
pub mod headers {
    use axum::http::HeaderName;
    use pga_format::protocol::headers as name;

    /// The agent's identity, a UUID; the same as in every frame's `agent_id`.
    pub const AGENT_ID: HeaderName = HeaderName::from_static(name::AGENT_ID);
    /// The frame format version of the body.
    pub const FORMAT_VERSION: HeaderName = HeaderName::from_static(name::FORMAT_VERSION);
    /// The oldest sealed block sequence held; absent when none is.
    pub const OLDEST_SEQUENCE: HeaderName = HeaderName::from_static(name::OLDEST_SEQUENCE);
    /// The newest sealed block sequence held; absent when none is.
    pub const NEWEST_SEQUENCE: HeaderName = HeaderName::from_static(name::NEWEST_SEQUENCE);
    /// The sequence the open head will have once sealed.
    pub const HEAD_SEQUENCE: HeaderName = HeaderName::from_static(name::HEAD_SEQUENCE);
    /// `present` when the body ends with the head frame, else `absent`.
    pub const HEAD: HeaderName = HeaderName::from_static(name::HEAD);
    /// `true` when sealed blocks after the last one in the body remain.
    pub const MORE: HeaderName = HeaderName::from_static(name::MORE);
    /// `FIRST-LAST`: blocks after `after` that were evicted before they were pulled.
    pub const GAP: HeaderName = HeaderName::from_static(name::GAP);
    /// The last sealed sequence in the body; absent when it holds no sealed block.
    pub const LAST_SEQUENCE: HeaderName = HeaderName::from_static(name::LAST_SEQUENCE);
    /// Series in the agent's dictionary (on `/v1/series`).
    pub const SERIES_COUNT: HeaderName = HeaderName::from_static(name::SERIES_COUNT);
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub store: StoreHandle,
    /// The configured agent name, shown by `/v1/status`.
    pub agent_name: String,
    /// The most frame bytes one `/v1/blocks` response may carry (a single larger
    /// block is still sent whole).
    pub max_response_bytes: usize,
    /// What `/v1/status` reports of the host and the instances watched.
    pub inventory: Inventory,
}

/// The host and the PostgreSQL instances `/v1/status` reports, for the federator's
/// inventory (PROTOCOL.md, "GET /v1/status", version 1.1).
#[derive(Debug, Clone)]
pub struct Inventory {
    /// This host's name.
    pub host: String,
    /// One report per `[[postgres]]` instance, kept current by its collectors.
    pub instances: Vec<SharedInstanceReport>,
}

impl Inventory {
    /// This host, watching `instances`.
    pub fn new(instances: Vec<SharedInstanceReport>) -> Self {
        Inventory {
            host: crate::config::host_name(),
            instances,
        }
    }
}

impl Default for Inventory {
    /// This host, watching no instance.
    fn default() -> Self {
        Inventory::new(Vec::new())
    }
}

/// The API's routes; unknown paths get 404 with the list of routes, other methods 405.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route(routes::METRICS, get(metrics))
        .route(routes::BLOCKS, get(blocks))
        .route(routes::SERIES, get(series))
        .route(routes::STATUS, get(status))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

const ROUTES: &str = "routes:
  GET /metrics
  GET /v1/blocks?after=SEQ[&max_bytes=N]
  GET /v1/series[?after=ID]
  GET /v1/status
";

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is wrong; the message names the parameter and the accepted form.
    #[error("{0}")]
    BadRequest(String),
    #[error("no such route")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The store is closed after a failed write, opening again: 503, retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The agent failed; logged with the detail, answered with a bare 500.
    #[error("{context}: {detail}")]
    Internal {
        context: &'static str,
        detail: String,
    },
}

impl ApiError {
    fn internal(context: &'static str, detail: impl std::fmt::Display) -> Self {
        ApiError::Internal {
            context,
            detail: detail.to_string(),
        }
    }

    /// A failed store read: 503 while the store is closed (a failed write), else 500.
    fn failed<E: std::fmt::Display + 'static>(context: &'static str, e: E) -> Self {
        match (&e as &dyn std::any::Any).downcast_ref::<StoreError>() {
            Some(s) if s.is_unavailable() => ApiError::Unavailable(s.to_string()),
            _ => ApiError::internal(context, e),
        }
    }
}

/// `raw` as a 400 answer repeats it: at most [`ECHO_CHARS`] characters.
fn echo(raw: &str) -> String {
    match raw.char_indices().nth(ECHO_CHARS) {
        None => format!("{raw:?}"),
        Some((cut, _)) => format!("{:?}… ({} characters)", &raw[..cut], raw.chars().count()),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, format!("{message}\n")),
            ApiError::NotFound => (StatusCode::NOT_FOUND, format!("not found; {ROUTES}")),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: every route answers GET (and HEAD)\n".to_owned(),
            ),
            ApiError::Unavailable(why) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [
                        (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                        (header::RETRY_AFTER, RETRY_AFTER_SECS),
                    ],
                    format!("{why}\n"),
                )
                    .into_response();
            }
            ApiError::Internal { .. } => {
                tracing::error!(error = %self, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal server error\n".to_owned(),
                )
            }
        };
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Runs a store read on the blocking pool.
async fn blocking<T, E>(
    context: &'static str,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(context, e))?
        .map_err(|e| ApiError::failed(context, e))
}

type RawParams = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The query parameters of a request: only `accepted` names, each at most once.
struct Params(Vec<(String, String)>);

impl Params {
    fn new(query: RawParams, accepted: &[&str], usage: &str) -> Result<Self, ApiError> {
        let Query(pairs) = query.map_err(|e| {
            let why: String = e.body_text().chars().take(200).collect();
            ApiError::BadRequest(format!("malformed query string ({why}); expected {usage}"))
        })?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if !accepted.contains(&name.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter {}; expected {usage}",
                    echo(name)
                )));
            }
            if pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(ApiError::BadRequest(format!(
                    "parameter {name} given twice; expected {usage}"
                )));
            }
        }
        Ok(Params(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The parameter as an unsigned integer in `range`, if given.
    fn u64_in(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<u64>,
        meaning: &str,
    ) -> Result<Option<u64>, ApiError> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        match raw.parse::<u64>() {
            Ok(n) if range.contains(&n) && !raw.starts_with('+') => Ok(Some(n)),
            _ => Err(ApiError::BadRequest(format!(
                "invalid {name} {}: expected an integer from {} to {} ({meaning})",
                echo(raw),
                range.start(),
                range.end()
            ))),
        }
    }
}

fn header_value(s: String) -> Result<HeaderValue, ApiError> {
    HeaderValue::try_from(s).map_err(|e| ApiError::internal("building a header", e))
}

/// Headers every `/v1` response carries.
fn identity_headers(state: &ApiState, content_type: &'static str) -> Result<HeaderMap, ApiError> {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        headers::AGENT_ID,
        header_value(state.store.agent_id().to_string())?,
    );
    h.insert(headers::FORMAT_VERSION, HeaderValue::from(FORMAT_VERSION));
    Ok(h)
}

const BLOCKS_USAGE: &str = "after=SEQ (a block sequence number, 0 = from the beginning), optionally followed by &max_bytes=N";

async fn blocks(State(state): State<ApiState>, query: RawParams) -> Result<Response, ApiError> {
    let limit = state.max_response_bytes.max(1);
    let params = Params::new(query, &["after", "max_bytes"], BLOCKS_USAGE)?;
    let after = params
        .u64_in(
            "after",
            0..=u64::MAX,
            "a block sequence number, 0 = from the beginning",
        )?
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "parameter after is missing; expected {BLOCKS_USAGE}"
            ))
        })?;
    let max_bytes = params
        .u64_in(
            "max_bytes",
            1..=limit as u64,
            "the most frame bytes in the response",
        )?
        .map_or(DEFAULT_MAX_BYTES.min(limit), |n| n as usize);
    let store = state.store.clone();
    let page = blocking("reading blocks", move || {
        store.blocks_after(after, max_bytes)
    })
    .await?;

    let mut h = identity_headers(&state, FRAMES_CONTENT_TYPE)?;
    if let Some(oldest) = page.oldest {
        h.insert(headers::OLDEST_SEQUENCE, HeaderValue::from(oldest));
    }
    if let Some(newest) = page.newest {
        h.insert(headers::NEWEST_SEQUENCE, HeaderValue::from(newest));
    }
    h.insert(
        headers::HEAD_SEQUENCE,
        HeaderValue::from(page.head_sequence),
    );
    let present = if page.head.is_some() {
        "present"
    } else {
        "absent"
    };
    h.insert(headers::HEAD, HeaderValue::from_static(present));
    let more = if page.more { "true" } else { "false" };
    h.insert(headers::MORE, HeaderValue::from_static(more));
    if let Some((first, last)) = page.gap {
        h.insert(headers::GAP, header_value(format!("{first}-{last}"))?);
    }
    if let Some(&last) = page.sequences.last() {
        h.insert(headers::LAST_SEQUENCE, HeaderValue::from(last));
    }

    let len =
        page.frames.iter().map(Vec::len).sum::<usize>() + page.head.as_ref().map_or(0, Vec::len);
    let mut body = Vec::with_capacity(len);
    for frame in page.frames.iter().chain(page.head.as_ref()) {
        body.extend_from_slice(frame);
    }
    Ok((h, Body::from(body)).into_response())
}

const SERIES_USAGE: &str = "nothing, or after=ID (a series id: the dictionary of the ids after it)";

async fn series(State(state): State<ApiState>, query: RawParams) -> Result<Response, ApiError> {
    let params = Params::new(query, &["after"], SERIES_USAGE)?;
    let after = params.u64_in("after", 0..=u64::MAX, "a series id")?;
    let store = state.store.clone();
    let (frames, count) = blocking("reading the series dictionary", move || {
        let frames = store.dictionary_after(after)?;
        // Ids are dense and the last dictionary frame ends at the newest one.
        let count = match frames.last() {
            Some(last) => {
                let (frame, _) = pga_format::frame::read_frame(last)
                    .map_err(|e| StoreError::Damaged(format!("dictionary frame: {e}")))?;
                frame
                    .header
                    .series_ranges
                    .last()
                    .map_or(0, |r| r.start.saturating_add(r.len))
            }
            None => store.latest().len() as u64,
        };
        Ok::<_, StoreError>((frames, count))
    })
    .await?;
    let mut h = identity_headers(&state, FRAMES_CONTENT_TYPE)?;
    h.insert(headers::SERIES_COUNT, HeaderValue::from(count));
    Ok((h, Body::from(frames.concat())).into_response())
}

async fn status(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let status = blocking("reading the store status", move || store.status()).await?;
    let mut value =
        serde_json::to_value(&status).map_err(|e| ApiError::internal("encoding status", e))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| ApiError::internal("encoding status", "not a JSON object"))?;
    object.insert("agent_name".into(), state.agent_name.clone().into());
    object.insert("agent_id".into(), state.store.agent_id().to_string().into());
    object.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    object.insert("format_version".into(), FORMAT_VERSION.into());
    object.insert("host".into(), state.inventory.host.clone().into());
    let instances: Vec<serde_json::Value> = state
        .inventory
        .instances
        .iter()
        .filter_map(|r| r.read().ok().and_then(|r| serde_json::to_value(&*r).ok()))
        .collect();
    object.insert("instances".into(), instances.into());
    let mut body =
        serde_json::to_vec_pretty(&value).map_err(|e| ApiError::internal("encoding status", e))?;
    body.push(b'\n');
    let h = identity_headers(&state, content_types::JSON)?;
    Ok((h, Body::from(body)).into_response())
}

async fn metrics(State(state): State<ApiState>, request: HeaderMap) -> Result<Response, ApiError> {
    let format = ExpositionFormat::negotiate(&request);
    let store = state.store.clone();
    let body = blocking("rendering /metrics", move || {
        let now = now_ms();
        // Stored series still fresh, and the store's health live from memory.
        let mut series = store.fresh(now);
        if let Some(health) = store.health() {
            series.extend(
                health
                    .as_series()
                    .into_iter()
                    .map(|(meta, value)| (meta, Some((now, value)))),
            );
        }
        Ok::<_, std::convert::Infallible>(render_metrics(&series, now, format))
    })
    .await?;
    let h = [
        (header::CONTENT_TYPE, format.content_type()),
        (header::CACHE_CONTROL, "no-store"),
        (header::VARY, "accept"),
    ];
    Ok((h, body).into_response())
}

/// The two exposition formats of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpositionFormat {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0.
    OpenMetrics,
}

impl ExpositionFormat {
    /// OpenMetrics when an `Accept` header lists `application/openmetrics-text` with a
    /// non-zero quality, else the text format.
    pub fn negotiate(request: &HeaderMap) -> Self {
        let wants_om = request
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|range| {
                let mut parts = range.split(';');
                let media = parts.next().unwrap_or("").trim();
                media.eq_ignore_ascii_case("application/openmetrics-text")
                    && parts.all(|p| {
                        let p = p.trim();
                        !p.get(..2).is_some_and(|k| k.eq_ignore_ascii_case("q="))
                            || p[2..].trim().parse::<f32>().is_ok_and(|q| q > 0.0)
                    })
            });
        if wants_om {
            ExpositionFormat::OpenMetrics
        } else {
            ExpositionFormat::Text
        }
    }

    pub const fn content_type(self) -> &'static str {
        match self {
            ExpositionFormat::Text => TEXT_CONTENT_TYPE,
            ExpositionFormat::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// Renders the latest value of every series with a fresh sample (at most
/// [`STALE_AFTER_MS`] before `now_ms`), grouped into families by metric name, sorted
/// by name and labels. A series whose kind contradicts its family's (the kind of the
/// family's first series) is left out: a family has one type.
///
/// OpenMetrics: a counter family is named without `_total` (its samples keep it); a
/// counter whose name lacks `_total` is typed `unknown`, so that its samples are
/// named the same in both formats; `# UNIT` appears when the family name ends with
/// the unit; the text ends with `# EOF`.
pub fn render_metrics(
    latest: &[(SeriesMeta, Option<(i64, f64)>)],
    now_ms: i64,
    format: ExpositionFormat,
) -> String {
    let mut fresh: Vec<(&SeriesMeta, f64)> = Vec::with_capacity(latest.len());
    let mut capacity = 16;
    for (meta, sample) in latest {
        let Some((ts, value)) = *sample else {
            continue;
        };
        if now_ms.saturating_sub(ts) > STALE_AFTER_MS {
            continue;
        }
        // Name, braces, quotes, separators and up to 24 bytes of value.
        capacity += meta.name.len()
            + 28
            + meta
                .labels
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>();
        fresh.push((meta, value));
    }
    fresh.sort_unstable_by(|a, b| {
        (a.0.name.as_str(), &a.0.labels).cmp(&(b.0.name.as_str(), &b.0.labels))
    });
    let mut families = Vec::new();
    let mut start = 0;
    while start < fresh.len() {
        let name = fresh[start].0.name.as_str();
        let len = fresh[start..].partition_point(|(m, _)| m.name == name);
        let first = fresh[start].0;
        capacity += 2 * name.len() + first.help.len() + first.unit.len() + 48;
        families.push(start..start + len);
        start += len;
    }
    let mut out = String::with_capacity(capacity);
    for family in families {
        let first = fresh[family.start].0;
        write_family_header(&mut out, first, format);
        for &(meta, value) in &fresh[family] {
            if meta.kind == first.kind {
                write_sample(&mut out, meta, value);
            }
        }
    }
    if format == ExpositionFormat::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn write_family_header(out: &mut String, meta: &SeriesMeta, format: ExpositionFormat) {
    let (family, kind) = match (format, meta.kind) {
        (ExpositionFormat::Text, kind) => (meta.name.as_str(), kind.as_str()),
        (ExpositionFormat::OpenMetrics, MetricKind::Counter) => {
            match meta.name.strip_suffix("_total") {
                Some(base) if !base.is_empty() => (base, "counter"),
                _ => (meta.name.as_str(), "unknown"),
            }
        }
        (ExpositionFormat::OpenMetrics, MetricKind::Gauge) => (meta.name.as_str(), "gauge"),
    };
    if !meta.help.is_empty() {
        out.push_str("# HELP ");
        out.push_str(family);
        out.push(' ');
        let escapes: &[char] = match format {
            ExpositionFormat::Text => &['\\', '\n'],
            ExpositionFormat::OpenMetrics => &['\\', '\n', '"'],
        };
        push_escaped(out, &meta.help, escapes);
        out.push('\n');
    }
    out.push_str("# TYPE ");
    out.push_str(family);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
    if format == ExpositionFormat::OpenMetrics
        && !meta.unit.is_empty()
        && family
            .strip_suffix(meta.unit.as_str())
            .is_some_and(|f| f.ends_with('_'))
        && meta
            .unit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
    {
        out.push_str("# UNIT ");
        out.push_str(family);
        out.push(' ');
        out.push_str(&meta.unit);
        out.push('\n');
    }
}

fn write_sample(out: &mut String, meta: &SeriesMeta, value: f64) {
    out.push_str(&meta.name);
    if !meta.labels.is_empty() {
        out.push('{');
        for (i, (name, value)) in meta.labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(name);
            out.push_str("=\"");
            push_escaped(out, value, LABEL_ESCAPES);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    push_value(out, value, EXPOSITION_PLAIN_BELOW);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_errors_are_a_bare_500() {
        use http_body_util::BodyExt;
        let resp =
            ApiError::internal("reading blocks", "table blocks: page 7 damaged").into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"internal server error\n");
    }

    #[test]
    fn negotiation() {
        let accept = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
            ExpositionFormat::negotiate(&h)
        };
        assert_eq!(
            ExpositionFormat::negotiate(&HeaderMap::new()),
            ExpositionFormat::Text
        );
        // What Prometheus 2.x sends.
        assert_eq!(
            accept(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            ),
            ExpositionFormat::OpenMetrics
        );
        assert_eq!(accept("text/plain;version=0.0.4"), ExpositionFormat::Text);
        assert_eq!(
            accept("application/openmetrics-text; q=0, text/plain"),
            ExpositionFormat::Text
        );
        assert_eq!(accept("*/*"), ExpositionFormat::Text);
    }
}
