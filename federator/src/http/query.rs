//! Series search and range queries, with the selector syntax of `pga-agent query`
//! (crate `pga-selector`); the pseudo-label `agent` matches the agent's name.

use std::collections::BTreeMap;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody, clip};
use super::extract::{Json, Query};
use super::state::ApiState;
use crate::db::query::{self as repo, DataSource, Function, SeriesInfo, Window};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(series))
        .routes(routes!(query))
}

/// Most series one query returns.
pub const MAX_SERIES: usize = 100;
/// Most points per series.
pub const MAX_POINTS: i64 = 11_000;
/// Series candidates a search looks at, at most.
const SCAN_LIMIT: i64 = 100_000;
/// Longest selector text.
const MAX_SELECTOR: usize = 2048;

/// A series search.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SeriesSearch {
    /// A selector: `metric{label="value",label=~"regex"}`.
    #[param(rename = "match", min_length = 1, max_length = 2048)]
    #[serde(rename = "match")]
    pub selector: String,
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

/// Matching series.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesList {
    pub items: Vec<SeriesInfo>,
    /// More series match than were returned.
    pub truncated: bool,
}

/// A range query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// A selector, as `pga-agent query` takes it.
    #[param(min_length = 1, max_length = 2048)]
    pub selector: String,
    /// RFC 3339 time or Unix seconds; default `end` − 1 h.
    #[param(max_length = 64)]
    pub start: Option<String>,
    /// RFC 3339 time or Unix seconds; default now.
    #[param(max_length = 64)]
    pub end: Option<String>,
    /// `15s`, `1m`, `1h`, `1d` or seconds; default the range / 300 (at least 15 s).
    #[param(max_length = 32)]
    pub step: Option<String>,
    /// Aggregation per step: avg (default), min, max, last, rate, increase.
    #[param(rename = "fn", inline)]
    #[serde(rename = "fn")]
    pub function: Option<Function>,
}

/// A point: window start (Unix milliseconds) and value (`null` when not finite).
#[derive(Debug, Serialize, ToSchema)]
pub struct Point {
    pub t: i64,
    pub v: Option<f64>,
}

/// One series' points.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesPoints {
    pub agent: String,
    pub metric: String,
    pub labels: BTreeMap<String, String>,
    pub kind: String,
    pub points: Vec<Point>,
}

/// A query's answer. Each point covers `[t, t + step_ms)`.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueryResult {
    /// raw, rollup_1m or rollup_1h.
    pub source: DataSource,
    pub function: Function,
    /// The range as evaluated (start aligned to the source's buckets), Unix ms.
    pub start: i64,
    pub end: i64,
    /// The step as evaluated (a whole number of the source's buckets).
    pub step_ms: i64,
    pub series: Vec<SeriesPoints>,
}

fn parse_selector(text: &str) -> Result<pga_selector::Selector, ApiError> {
    if text.len() > MAX_SELECTOR {
        return Err(ApiError::bad(format!(
            "the selector is longer than {MAX_SELECTOR} bytes"
        )));
    }
    pga_selector::parse(text).map_err(|e| ApiError::bad(clip(&e.to_string())))
}

/// A time: RFC 3339 or Unix seconds (with a fraction).
fn parse_time(what: &str, text: &str) -> Result<i64, ApiError> {
    if let Ok(secs) = text.parse::<f64>()
        && secs.is_finite()
        && (0.0..=1e11).contains(&secs)
    {
        return Ok((secs * 1000.0).round() as i64);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc).timestamp_millis())
        .map_err(|_| {
            ApiError::bad(format!(
                "{what} = \"{}\": give an RFC 3339 time (2026-01-02T03:04:05Z) or Unix seconds",
                clip(text)
            ))
        })
}

/// A step: seconds, or a number with `ms`, `s`, `m`, `h` or `d`.
fn parse_step(text: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad(format!(
            "step = \"{}\": give seconds or a duration such as 15s, 1m, 1h",
            clip(text)
        ))
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let ms = match unit {
        "" | "s" => n * 1000.0,
        "ms" => n,
        "m" => n * 60_000.0,
        "h" => n * 3_600_000.0,
        "d" => n * 86_400_000.0,
        _ => return Err(bad()),
    };
    if !ms.is_finite() || !(1000.0..=366.0 * 86_400_000.0).contains(&ms) {
        return Err(ApiError::bad(
            "step: give at least 1 s and at most 366 days",
        ));
    }
    Ok(ms as i64)
}

/// Series whose metric and labels match a selector.
#[utoipa::path(get, path = "/series", tag = "query", params(SeriesSearch), security(("bearer" = [])),
    responses((status = 200, body = SeriesList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn series(
    State(state): State<ApiState>,
    Query(q): Query<SeriesSearch>,
) -> Result<Json<SeriesList>, ApiError> {
    let selector = parse_selector(&q.selector)?;
    let limit = super::page_limit(q.limit)? as usize;
    let (items, truncated) = repo::find_series(&state.pool, &selector, limit, SCAN_LIMIT).await?;
    Ok(Json(SeriesList { items, truncated }))
}

/// One selector over a time range and step, from raw samples (steps under a
/// minute), 1-minute rollups (under an hour) or 1-hour rollups, with
/// `avg|min|max|last|rate|increase` per step window.
#[utoipa::path(get, path = "/query", tag = "query", params(RangeQuery), security(("bearer" = [])),
    responses((status = 200, body = QueryResult), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn query(
    State(state): State<ApiState>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<QueryResult>, ApiError> {
    let selector = parse_selector(&q.selector)?;
    let now = Utc::now().timestamp_millis();
    let end = q
        .end
        .as_deref()
        .map(|t| parse_time("end", t))
        .transpose()?
        .unwrap_or(now);
    let start = q
        .start
        .as_deref()
        .map(|t| parse_time("start", t))
        .transpose()?
        .unwrap_or(end - 3_600_000);
    if start >= end {
        return Err(ApiError::bad("start must be before end"));
    }
    let step = match q.step.as_deref() {
        Some(s) => parse_step(s)?,
        None => ((end - start) / 300).max(15_000),
    };
    if (end - start) / step > MAX_POINTS {
        return Err(ApiError::bad(format!(
            "{} points per series asked for; at most {MAX_POINTS}: widen the step or shorten the range",
            (end - start) / step
        )));
    }
    let function = q.function.unwrap_or(Function::Avg);
    let raw_kept_from = now - state.settings.raw_retention.as_millis() as i64;
    let window = Window::new(
        start,
        end,
        step,
        repo::pick_source(start, step, raw_kept_from),
    );
    let (found, truncated) =
        repo::find_series(&state.pool, &selector, MAX_SERIES, SCAN_LIMIT).await?;
    if truncated {
        return Err(ApiError::bad(format!(
            "the selector matches more than {MAX_SERIES} series; narrow it with more labels"
        )));
    }
    if function.needs_counter()
        && let Some(g) = found.iter().find(|s| s.kind != "counter")
    {
        return Err(ApiError::bad(format!(
            "rate and increase apply to counters; {} is a {}: use avg, min, max or last",
            g.metric, g.kind
        )));
    }
    let ids: Vec<i64> = found.iter().map(|s| s.id).collect();
    let mut points = if ids.is_empty() {
        Default::default()
    } else {
        repo::range(&state.pool, &ids, window, function).await?
    };
    let series = found
        .into_iter()
        .map(|s| SeriesPoints {
            points: points
                .remove(&s.id)
                .unwrap_or_default()
                .into_iter()
                .map(|(t, v)| Point { t, v })
                .collect(),
            agent: s.agent,
            metric: s.metric,
            labels: s.labels,
            kind: s.kind,
        })
        .collect();
    Ok(Json(QueryResult {
        source: window.source,
        function,
        start: window.start_ms,
        end: window.end_ms,
        step_ms: window.step_ms,
        series,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_times_parse() {
        assert_eq!(parse_step("15s").unwrap(), 15_000);
        assert_eq!(parse_step("60").unwrap(), 60_000);
        assert_eq!(parse_step("1m").unwrap(), 60_000);
        assert_eq!(parse_step("1.5h").unwrap(), 5_400_000);
        assert!(parse_step("10ms").is_err());
        assert!(parse_step("1w").is_err());
        assert!(parse_step("").is_err());
        assert_eq!(parse_time("t", "1700000000").unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time("t", "2026-01-02T03:04:05Z").unwrap(),
            1_767_323_045_000
        );
        assert!(parse_time("t", "yesterday").is_err());
        assert!(parse_time("t", "-5").is_err());
    }
}
