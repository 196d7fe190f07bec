//! `pga-agent query` and `pga-agent series`: offline questions to the ring store.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use pga_format::SeriesMeta;
use redb::ReadableDatabase;

use crate::cli::{QueryArgs, SeriesArgs};

use super::{open_store, read_store};
use crate::now_ms;
use crate::query::{self, Format, Function, RenderOptions, SeriesResult};
use crate::store::{StoreError, StoreView};

/// Points a chart or table gets when no --step is given.
const AUTO_POINTS: usize = 60;
/// How far before the range `rate` and `increase` look for the sample that starts the
/// first window.
const LOOKBACK_MS: i64 = 15 * 60 * 1000;

fn matching<D: ReadableDatabase + Sync>(
    view: &StoreView<'_, D>,
    selector: &query::Selector,
) -> Result<Vec<SeriesMeta>, StoreError> {
    let mut metas: Vec<SeriesMeta> = view
        .series()?
        .into_iter()
        .filter(|m| selector.matches(m))
        .collect();
    metas.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
    Ok(metas)
}

/// What `pga-agent query` computes: every series matching `selector`, by name and
/// labels, with `function` over each `step` of `start..=end` (the stored samples
/// without a function).
pub fn evaluate<D: ReadableDatabase + Sync>(
    view: &StoreView<'_, D>,
    selector: &query::Selector,
    function: Option<Function>,
    start: i64,
    end: i64,
    step: i64,
) -> Result<Vec<SeriesResult>, StoreError> {
    let metas = matching(view, selector)?;
    let ids: Vec<_> = metas.iter().map(|m| m.id).collect();
    let from = start.saturating_sub(step.max(LOOKBACK_MS));
    let mut samples = view.samples(&ids, from, end)?;
    Ok(metas
        .into_iter()
        .map(|m| {
            let s = samples.remove(&m.id).unwrap_or_default();
            query::evaluate_series(m, &s, function, start, end, step)
        })
        .collect())
}

pub fn query(data_dir: &Path, args: &QueryArgs) -> anyhow::Result<ExitCode> {
    let selector = query::parse_selector(&args.selector).map_err(|e| anyhow!("{e}"))?;
    let (start, end) =
        query::parse_range(&args.since, &args.until, now_ms()).map_err(|e| anyhow!("{e}"))?;
    let function = args
        .function
        .as_deref()
        .map(str::parse::<Function>)
        .transpose()
        .map_err(|e| anyhow!("{e}"))?;
    let format: Format = args.format.parse().map_err(|e| anyhow!("{e}"))?;
    let step = match &args.step {
        Some(s) => query::parse_step(s).map_err(|e| anyhow!("{e}"))?,
        None => query::auto_step(start, end, AUTO_POINTS),
    };
    let reader = open_store(data_dir)?;
    let view = reader.view();
    let results = read_store(view.path(), || {
        evaluate(&view, &selector, function, start, end, step)
    })?;
    if results.is_empty() {
        eprintln!(
            "no series match {}; `pga-agent series` lists what the store holds",
            args.selector
        );
    }
    let opts = RenderOptions {
        width: args.width.max(20),
        height: args.height.max(5),
        range: Some((start, end)),
        ..RenderOptions::default()
    };
    let mut out = std::io::stdout().lock();
    query::render(&results, format, &mut out, &opts)
        .and_then(|()| out.flush())
        .context("writing the result")?;
    Ok(ExitCode::SUCCESS)
}

pub fn series(data_dir: &Path, args: &SeriesArgs) -> anyhow::Result<ExitCode> {
    let selector = match &args.selector {
        Some(s) => query::parse_selector(s).map_err(|e| anyhow!("{e}"))?,
        None => query::Selector::all(),
    };
    let format: Format = args.format.parse().map_err(|e| anyhow!("{e}"))?;
    let reader = open_store(data_dir)?;
    let view = reader.view();
    let metas = read_store(view.path(), || matching(&view, &selector))?;
    let mut out = std::io::stdout().lock();
    query::render_series_list(&metas, format, &mut out)
        .and_then(|()| out.flush())
        .context("writing the list")?;
    Ok(ExitCode::SUCCESS)
}
