//! `pga-agent status`: the ring store's health.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::cli::StatusArgs;
use crate::config::{AgentConfig, format_bytes};
use crate::now_ms;
use crate::query::table::{Column, text_table};
use crate::query::{Zone, format_rfc3339};
use crate::store::{HealthState, StoreStatus, Verified, read_health_file};

pub fn status(data_dir: &Path, cfg: &AgentConfig, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    if !matches!(args.format.as_str(), "table" | "json") {
        bail!("unknown format {:?}: use table or json", args.format);
    }
    let reader = super::open_store(data_dir)?;
    let view = reader.view();
    let (mut status, verified) = super::read_store(view.path(), || {
        let status = view.status()?;
        let verified = view.verify()?;
        Ok((status, verified))
    })?;
    // The agent writing this store reports how its writes go; one that no longer
    // runs reports nothing current.
    let health = read_health_file(data_dir);
    let running = health.as_ref().is_some_and(|(_, running)| *running);
    status.health = health.filter(|(_, running)| *running).map(|(h, _)| h);
    let failing = status.health.as_ref().is_some_and(|h| !h.healthy);
    let text = if args.format == "json" {
        let mut v = serde_json::to_value(&status).context("encoding the status")?;
        v["budget_bytes"] = cfg.store.max_bytes.into();
        v["retention_secs"] = cfg.store.retention_secs.into();
        v["verified"] = serde_json::to_value(verified).context("encoding the status")?;
        v["agent_running"] = running.into();
        serde_json::to_string_pretty(&v).context("encoding the status")? + "\n"
    } else {
        render(&status, cfg, &verified)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the status")?;
    Ok(if failing {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Appends one formatted line to a `String`.
macro_rules! line {
    ($o:expr, $($fmt:tt)*) => {{
        $o.push_str(&format!($($fmt)*));
        $o.push('\n');
    }};
}

fn time(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_owned(), |t| format_rfc3339(t, Zone::Utc, false))
}

fn ago(ms: i64, now: i64) -> String {
    let secs = (now - ms).max(0) / 1000;
    match secs {
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s if s < 172_800 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// The human-readable status.
pub fn render(s: &StoreStatus, cfg: &AgentConfig, verified: &Verified) -> String {
    let now = now_ms();
    let mut o = String::new();
    let budget = cfg.store.max_bytes;
    line!(o, "store       {}", s.path.display());
    line!(o, "agent id    {}", s.agent_id);
    line!(
        o,
        "verified    {} blocks, {} dictionary frames, {} head rows ({} read): sound",
        verified.blocks,
        verified.dictionary_frames,
        verified.head_rows,
        format_bytes(verified.bytes)
    );
    match &s.health {
        None => line!(o, "writes      no agent is writing this store now"),
        Some(h) if h.healthy => line!(
            o,
            "writes      ok (agent pid {}, last write {}; budget in force {})",
            h.pid,
            h.last_write_ms
                .map_or_else(|| "none yet".to_owned(), |t| ago(t, now)),
            format_bytes(h.budget_bytes)
        ),
        Some(h) => {
            let what = if h.state == HealthState::Recovering {
                "RECOVERING: writing again after failing"
            } else {
                "FAILING"
            };
            line!(
                o,
                "writes      {what} since {} (agent pid {}): {} collection(s) lost so far, {} in all",
                time(h.failing_since_ms),
                h.pid,
                h.lost_in_failure,
                h.write_errors_total
            );
            line!(
                o,
                "            last error: {}",
                h.last_error.as_deref().unwrap_or("-")
            );
        }
    }
    line!(
        o,
        "size        {} on disk, {} of data; budget {} ({:.0}% used)",
        format_bytes(s.file_bytes),
        format_bytes(s.logical_bytes),
        format_bytes(budget),
        s.file_bytes as f64 * 100.0 / budget.max(1) as f64
    );
    let seq = match (s.oldest_sequence, s.newest_sequence) {
        (Some(a), Some(b)) => format!(" (sequence {a}..={b})"),
        _ => String::new(),
    };
    line!(
        o,
        "blocks      {} sealed{seq}, head holds {} collections",
        s.blocks,
        s.head_collections
    );
    let span = match (s.oldest_ms, s.newest_ms) {
        (Some(a), Some(b)) => format!(
            "{} .. {} ({:.1} h)",
            time(Some(a)),
            time(Some(b)),
            (b - a) as f64 / 3.6e6
        ),
        _ => "empty".to_owned(),
    };
    line!(o, "time span   {span}");
    line!(o, "series      {}", s.series);
    if s.collectors.is_empty() {
        line!(o, "collectors  none has run yet");
    } else {
        let columns = [
            Column::left("collector"),
            Column::left("last run"),
            Column::right("duration"),
            Column::right("samples"),
            Column::right("runs"),
            Column::right("errors"),
            Column::left("last error"),
        ];
        let rows = s.collectors.iter().map(|(name, h)| {
            [
                name.clone(),
                format!(
                    "{} ({})",
                    time(Some(h.last_run_ms)).get(11..19).unwrap_or(""),
                    ago(h.last_run_ms, now)
                ),
                format!("{:.1}ms", h.last_duration_ms),
                h.last_samples.to_string(),
                h.runs_total.to_string(),
                h.errors_total.to_string(),
                h.last_error.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        });
        o.push('\n');
        o.push_str(&text_table(&columns, rows));
    }
    if !s.events.is_empty() {
        line!(o, "\nevents");
        for (t, line) in &s.events {
            line!(o, "  {}  {line}", time(Some(*t)));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::CollectorHealth;

    #[test]
    fn the_collector_table_stays_aligned_with_long_names() {
        let health = |errors: u64, error: Option<&str>| CollectorHealth {
            last_run_ms: now_ms() - 5_000,
            last_duration_ms: 12.25,
            last_samples: 140,
            last_error: error.map(str::to_owned),
            runs_total: 3,
            errors_total: errors,
        };
        let status = StoreStatus {
            path: "/var/lib/pganalytics/agent/store.redb".into(),
            agent_id: "0".repeat(32),
            created_ms: None,
            file_bytes: 1 << 20,
            logical_bytes: 1 << 19,
            blocks: 0,
            oldest_sequence: None,
            newest_sequence: None,
            oldest_ms: None,
            newest_ms: None,
            series: 10,
            head_collections: 1,
            collectors: vec![
                ("self".into(), health(0, None)),
                (
                    "postgres:orders-replica-eu-west:sizes".into(),
                    health(12, Some("connection refused")),
                ),
            ],
            events: Vec::new(),
            health: None,
        };
        let text = render(&status, &AgentConfig::default(), &Verified::default());
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("collector"))
            .collect();
        assert_eq!(table.len(), 3, "{text}");
        // Every column starts where its header does, and numbers end where theirs do.
        let start = |header: &str| table[0].find(header).unwrap();
        let end = |header: &str| start(header) + header.len();
        for row in &table[1..] {
            assert_eq!(
                row.find(" (").map(|i| i - 8),
                Some(start("last run")),
                "{text}"
            );
            assert_eq!(
                row.find("ms ").map(|i| i + 2),
                Some(end("duration")),
                "{text}"
            );
            assert!(row[..end("errors")].ends_with(['0', '2']), "{text}");
        }
        assert!(table[2].ends_with("  connection refused"), "{text}");
    }
}
