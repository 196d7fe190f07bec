//! The query engine behind `pga-agent query` and `pga-agent series`.
//!
//! Pure functions: nothing here touches the store, the clock, the terminal or the
//! environment; output goes to a `dyn Write` the caller hands in. The CLI glues it
//! together:
//!
//! 1. [`parse_selector`] the selector (`pg_stat_database_xact_commit_total{datname="app"}`),
//!    [`parse_range`] (or [`parse_time`] twice) `--since`/`--until` against the current
//!    time, [`parse_step`] `--step` (or [`auto_step`]), `--fn` into a [`Function`] and
//!    `--format` into a [`Format`] (both implement `FromStr`).
//! 2. For every series of the store that [`Selector::matches`], read its samples in
//!    ascending time order, covering `(start − step, end]` and, for `rate` and
//!    `increase`, the last sample at or before `start` (it starts the first window).
//! 3. [`evaluate_series`] each into a [`SeriesResult`], then [`render`] them.
//!
//! `pga-agent series` filters the series dictionary with the same selector and writes
//! it with [`render_series_list`].
//!
//! The window semantics (alignment, resets, gaps) are documented in [`eval`]; the
//! output formats in [`output`] and [`chart`]; the accepted time forms in [`time`];
//! the selector grammar and its error messages in [`selector`].
//!
//! ```
//! use pga_agent::query::{self, Format, Function, RenderOptions};
//! use pga_format::{MetricKind, Sample, SeriesId, SeriesMeta};
//!
//! let now = 1_795_507_200_000; // 2026-11-24T08:00:00Z
//! let selector = query::parse_selector(r#"pg_stat_database_xact_commit_total{datname="app"}"#)?;
//! let (start, end) = query::parse_range("2m", "now", now)?;
//! let step = query::parse_step("1m")?;
//! let meta = SeriesMeta::new(
//!     SeriesId(1),
//!     "pg_stat_database_xact_commit_total",
//!     vec![("datname".into(), "app".into())],
//!     MetricKind::Counter,
//!     "",
//!     "Transactions committed.",
//! )?;
//! assert!(selector.matches(&meta));
//! let samples: Vec<Sample> = (0..=12)
//!     .map(|i| Sample { timestamp_ms: start + i * 10_000, value: (i * 30) as f64 })
//!     .collect();
//! let result = query::evaluate_series(meta, &samples, Some(Function::Rate), start, end, step);
//! assert_eq!(result.points, vec![(start + 60_000, 3.0), (end, 3.0)]);
//!
//! let mut out = Vec::new();
//! query::render(&[result], Format::Csv, &mut out, &RenderOptions::default())?;
//! assert!(String::from_utf8(out)?.ends_with(",1795507200000,2026-11-24T08:00:00Z,3\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod chart;
pub mod eval;
pub mod output;
pub mod table;
pub mod time;

use pga_format::{Sample, SeriesMeta};

pub use eval::{Function, UnknownFunction, evaluate, raw};
pub use output::{
    Format, RenderOptions, SeriesResult, UnknownFormat, format_value, render, render_series_list,
    series_text,
};
/// Series selectors (crate `pga-selector`, shared with the federator's API).
pub use pga_selector as selector;
pub use pga_selector::{MatchOp, Matcher, Selector, SelectorError, parse as parse_selector};
pub use time::{TimeError, Zone, auto_step, format_rfc3339, parse_range, parse_step, parse_time};

/// One series' points for a query: `function` over each step window of
/// `(start_ms, end_ms]`, or the raw samples of `[start_ms, end_ms]` without a function.
///
/// `samples` must be ascending in time (see [`evaluate`] for which samples to pass).
pub fn evaluate_series(
    meta: SeriesMeta,
    samples: &[Sample],
    function: Option<Function>,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
) -> SeriesResult {
    let points = match function {
        Some(f) => evaluate(samples, f, start_ms, end_ms, step_ms),
        None => raw(samples, start_ms, end_ms),
    };
    SeriesResult { meta, points }
}
