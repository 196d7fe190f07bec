//! Writing query results and series lists as a table, CSV, JSON or a terminal chart.
//!
//! - **table**: one section per series, headed by its `name{labels}`, with a `time`
//!   column (RFC 3339) and a right-aligned `value` column; sections are separated by a
//!   blank line. No series at all prints `no data`.
//! - **csv**: the header `series,timestamp_ms,time,value`, then one row per point;
//!   `series` is the `name{labels}` text. Fields holding `,`, `"` or a line break are
//!   quoted as RFC 4180 says (`"` doubled); lines end with `\n`.
//! - **json**: one array with one object per series, one series per line:
//!   `{"metric":"pg_up","labels":{"pg_instance":"main"},"kind":"gauge","unit":"",
//!   "points":[[1795507200000,1.0],…]}`. Timestamps are Unix milliseconds. JSON has no
//!   NaN or infinity, so those values are written as the strings `"NaN"`, `"+Inf"` and
//!   `"-Inf"` (as Prometheus does); every other value is a JSON number.
//! - **chart**: see [`super::chart`].
//!
//! Times are shown in UTC (`Z`) unless [`RenderOptions::utc`] is false, in which case
//! they carry [`RenderOptions::local_offset_secs`]; milliseconds are shown only when
//! some timestamp has them. Values are written in the shortest form that reads back to
//! the same number (`0.1`, `1234.5`, `1e-7`, `1.5e20`).

use std::io::{self, Write};
use std::str::FromStr;

use pga_format::SeriesMeta;
use serde::Serialize;

use super::chart;
use super::table::{Column, text_table};
use super::time::{Zone, format_rfc3339};
use pga_selector::escape;

/// One series of a query and its points, ascending in time.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesResult {
    pub meta: SeriesMeta,
    pub points: Vec<(i64, f64)>,
}

/// How to write results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    #[default]
    Table,
    Csv,
    Json,
    Chart,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Table, Format::Csv, Format::Json, Format::Chart];

    /// The name used on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Chart => "chart",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name that is not one of [`Format::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {input:?}: choose one of table, csv, json, chart")]
#[non_exhaustive]
pub struct UnknownFormat {
    pub input: String,
}

impl FromStr for Format {
    type Err = UnknownFormat;

    /// Parses a format name, ignoring case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == lower)
            .ok_or_else(|| UnknownFormat {
                input: s.to_owned(),
            })
    }
}

/// Layout and time-zone choices for [`render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    /// Columns available to a chart (the terminal width).
    pub width: usize,
    /// Lines of one chart, its title, axis and time labels included.
    pub height: usize,
    /// Show times in UTC; when false, at `local_offset_secs`.
    pub utc: bool,
    /// Seconds east of UTC for local times (the caller works it out; this module does no
    /// I/O). Ignored when `utc` is true.
    pub local_offset_secs: i32,
    /// The queried range; charts span it so that missing data at either end shows.
    /// `None` spans the data.
    pub range: Option<(i64, i64)>,
}

impl Default for RenderOptions {
    /// 80 × 16, UTC, spanning the data.
    fn default() -> Self {
        RenderOptions {
            width: 80,
            height: 16,
            utc: true,
            local_offset_secs: 0,
            range: None,
        }
    }
}

impl RenderOptions {
    /// The zone times are shown in.
    pub fn zone(&self) -> Zone {
        if self.utc {
            Zone::Utc
        } else {
            Zone::Offset(self.local_offset_secs)
        }
    }
}

/// Writes query results in `format`.
pub fn render(
    results: &[SeriesResult],
    format: Format,
    out: &mut dyn Write,
    opts: &RenderOptions,
) -> io::Result<()> {
    let millis = results
        .iter()
        .flat_map(|r| &r.points)
        .any(|(ts, _)| ts.rem_euclid(1000) != 0);
    let time = |ts: i64| format_rfc3339(ts, opts.zone(), millis);
    match format {
        Format::Table => render_table(results, out, &time),
        Format::Csv => {
            writeln!(out, "series,timestamp_ms,time,value")?;
            for r in results {
                let series = csv_field(&series_text(&r.meta));
                for &(ts, v) in &r.points {
                    writeln!(out, "{series},{ts},{},{}", time(ts), format_value(v))?;
                }
            }
            Ok(())
        }
        Format::Json => render_json(results, out),
        Format::Chart => chart::render_charts(results, out, opts),
    }
}

fn render_table(
    results: &[SeriesResult],
    out: &mut dyn Write,
    time: &dyn Fn(i64) -> String,
) -> io::Result<()> {
    if results.is_empty() {
        return writeln!(out, "no data");
    }
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "{}", series_text(&r.meta))?;
        if r.points.is_empty() {
            writeln!(out, "(no points in this range)")?;
            continue;
        }
        let rows = r.points.iter().map(|&(ts, v)| [time(ts), format_value(v)]);
        let table = text_table(&[Column::left("time"), Column::right("value")], rows);
        out.write_all(table.as_bytes())?;
    }
    Ok(())
}

fn render_json(results: &[SeriesResult], out: &mut dyn Write) -> io::Result<()> {
    json_lines(
        results.iter().map(|r| JsonSeries {
            points: Some(JsonPoints(&r.points)),
            ..JsonSeries::of(&r.meta)
        }),
        out,
    )
}

/// A JSON array with one element a line (`[`, `  {…},`, …, `]`); `[]` when empty.
fn json_lines<T: Serialize>(
    items: impl ExactSizeIterator<Item = T>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let n = items.len();
    if n == 0 {
        return writeln!(out, "[]");
    }
    writeln!(out, "[")?;
    for (i, item) in items.enumerate() {
        out.write_all(b"  ")?;
        serde_json::to_writer(&mut *out, &item).map_err(io::Error::from)?;
        writeln!(out, "{}", if i + 1 < n { "," } else { "" })?;
    }
    writeln!(out, "]")
}

/// One series in the JSON output: `metric`, `labels`, `kind`, `unit`, then `help`
/// (series lists) or `points` (query results).
#[derive(Serialize)]
struct JsonSeries<'a> {
    metric: &'a str,
    labels: JsonLabels<'a>,
    kind: &'a str,
    unit: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    points: Option<JsonPoints<'a>>,
}

impl<'a> JsonSeries<'a> {
    fn of(meta: &'a SeriesMeta) -> Self {
        JsonSeries {
            metric: &meta.name,
            labels: JsonLabels(&meta.labels),
            kind: meta.kind.as_str(),
            unit: &meta.unit,
            help: None,
            points: None,
        }
    }
}

/// Labels as a JSON object, in their (sorted) order.
struct JsonLabels<'a>(&'a [(String, String)]);

impl Serialize for JsonLabels<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// Points as `[[timestamp_ms, value], …]`.
struct JsonPoints<'a>(&'a [(i64, f64)]);

impl Serialize for JsonPoints<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|&(ts, v)| (ts, JsonValue(v))))
    }
}

/// A finite value as a JSON number; NaN and infinities as strings.
struct JsonValue(f64);

impl Serialize for JsonValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_finite() {
            s.serialize_f64(self.0)
        } else {
            s.serialize_str(&format_value(self.0))
        }
    }
}

/// Writes the series list of `pga-agent series`, in the given order.
///
/// - table: columns `metric`, `labels`, `kind`, `unit`; no series prints `no series`.
/// - csv: header `series,metric,kind,unit,help`, `series` being the `name{labels}` text
///   as in query CSV.
/// - json: an array of `{"metric","labels","kind","unit","help"}` objects, one a line.
/// - chart: a list has nothing to chart; written as the table.
pub fn render_series_list(
    metas: &[SeriesMeta],
    format: Format,
    out: &mut dyn Write,
) -> io::Result<()> {
    match format {
        Format::Table | Format::Chart => {
            if metas.is_empty() {
                return writeln!(out, "no series");
            }
            let rows = metas.iter().map(|m| {
                [
                    m.name.clone(),
                    labels_text(m),
                    m.kind.as_str().to_owned(),
                    m.unit.clone(),
                ]
            });
            let columns = ["metric", "labels", "kind", "unit"].map(Column::left);
            out.write_all(text_table(&columns, rows).as_bytes())
        }
        Format::Csv => {
            writeln!(out, "series,metric,kind,unit,help")?;
            for m in metas {
                writeln!(
                    out,
                    "{},{},{},{},{}",
                    csv_field(&series_text(m)),
                    csv_field(&m.name),
                    m.kind.as_str(),
                    csv_field(&m.unit),
                    csv_field(&m.help)
                )?;
            }
            Ok(())
        }
        Format::Json => json_lines(
            metas.iter().map(|m| JsonSeries {
                help: Some(&m.help),
                ..JsonSeries::of(m)
            }),
            out,
        ),
    }
}

/// `name{label="value",…}` (just `name` without labels), values escaped as in a
/// selector, so the text can be pasted back into `pga-agent query`.
pub fn series_text(meta: &SeriesMeta) -> String {
    format!("{}{}", meta.name, labels_text(meta))
}

/// `{label="value",…}`, or `""` without labels.
fn labels_text(meta: &SeriesMeta) -> String {
    if meta.labels.is_empty() {
        return String::new();
    }
    let mut s = String::from("{");
    for (i, (name, value)) in meta.labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(name);
        s.push_str("=\"");
        s.push_str(&escape(value));
        s.push('"');
    }
    s.push('}');
    s
}

/// A CSV field, quoted when it holds `,`, `"`, CR or LF (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The shortest text that reads back as `v`: `0.1`, `1234.5`, `1e-7`, `1.5e20`;
/// `NaN`, `+Inf`, `-Inf` for the non-finite values.
pub fn format_value(v: f64) -> String {
    pga_format::text::format_value(v, pga_format::text::READABLE_PLAIN_BELOW)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pga_format::{MetricKind, SeriesId};

    pub(crate) fn meta(name: &str, labels: &[(&str, &str)], kind: MetricKind) -> SeriesMeta {
        SeriesMeta::new(
            SeriesId(7),
            name,
            pga_format::owned_labels(labels),
            kind,
            "",
            "",
        )
        .unwrap()
    }

    const T0: i64 = 1_795_507_200_000; // 2026-11-24T08:00:00Z

    fn sample_results() -> Vec<SeriesResult> {
        vec![
            SeriesResult {
                meta: meta(
                    "pg_stat_database_xact_commit_total",
                    &[("datname", "app"), ("pg_instance", "main")],
                    MetricKind::Counter,
                ),
                points: vec![(T0, 1.5), (T0 + 60_000, 1234.25), (T0 + 120_000, 0.0)],
            },
            SeriesResult {
                meta: meta("pg_up", &[], MetricKind::Gauge),
                points: vec![(T0, 1.0), (T0 + 60_000, f64::NAN)],
            },
        ]
    }

    fn to_string(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
        let mut buf = Vec::new();
        f(&mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    fn rendered(results: &[SeriesResult], format: Format, opts: &RenderOptions) -> String {
        to_string(|out| render(results, format, out, opts))
    }

    #[test]
    fn format_names() {
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>(), Ok(f));
        }
        assert_eq!("JSON".parse::<Format>(), Ok(Format::Json));
        assert_eq!(
            "yaml".parse::<Format>().unwrap_err().to_string(),
            "unknown format \"yaml\": choose one of table, csv, json, chart"
        );
    }

    #[test]
    fn table_golden() {
        let text = rendered(&sample_results(), Format::Table, &RenderOptions::default());
        assert_eq!(
            text,
            "\
pg_stat_database_xact_commit_total{datname=\"app\",pg_instance=\"main\"}
time                    value
2026-11-24T08:00:00Z      1.5
2026-11-24T08:01:00Z  1234.25
2026-11-24T08:02:00Z        0

pg_up
time                  value
2026-11-24T08:00:00Z      1
2026-11-24T08:01:00Z    NaN
"
        );
    }

    #[test]
    fn table_local_time_and_millis() {
        let results = vec![SeriesResult {
            meta: meta("pg_up", &[], MetricKind::Gauge),
            points: vec![(T0 + 5, 1.0)],
        }];
        let opts = RenderOptions {
            utc: false,
            local_offset_secs: 3600,
            ..RenderOptions::default()
        };
        assert_eq!(
            rendered(&results, Format::Table, &opts),
            "pg_up\ntime                           value\n\
             2026-11-24T09:00:00.005+01:00      1\n"
        );
    }

    #[test]
    fn empty_outputs() {
        let opts = RenderOptions::default();
        assert_eq!(rendered(&[], Format::Table, &opts), "no data\n");
        assert_eq!(rendered(&[], Format::Json, &opts), "[]\n");
        assert_eq!(
            rendered(&[], Format::Csv, &opts),
            "series,timestamp_ms,time,value\n"
        );
        let no_points = vec![SeriesResult {
            meta: meta("pg_up", &[], MetricKind::Gauge),
            points: vec![],
        }];
        assert_eq!(
            rendered(&no_points, Format::Table, &opts),
            "pg_up\n(no points in this range)\n"
        );
    }

    #[test]
    fn csv_golden() {
        let text = rendered(&sample_results(), Format::Csv, &RenderOptions::default());
        assert_eq!(
            text,
            "\
series,timestamp_ms,time,value
\"pg_stat_database_xact_commit_total{datname=\"\"app\"\",pg_instance=\"\"main\"\"}\",1795507200000,2026-11-24T08:00:00Z,1.5
\"pg_stat_database_xact_commit_total{datname=\"\"app\"\",pg_instance=\"\"main\"\"}\",1795507260000,2026-11-24T08:01:00Z,1234.25
\"pg_stat_database_xact_commit_total{datname=\"\"app\"\",pg_instance=\"\"main\"\"}\",1795507320000,2026-11-24T08:02:00Z,0
pg_up,1795507200000,2026-11-24T08:00:00Z,1
pg_up,1795507260000,2026-11-24T08:01:00Z,NaN
"
        );
    }

    #[test]
    fn json_parses_back() {
        let mut results = sample_results();
        results[1].points.push((T0 + 120_000, f64::INFINITY));
        results[1].points.push((T0 + 180_000, f64::NEG_INFINITY));
        results.push(SeriesResult {
            meta: meta(
                "pg_settings_value",
                &[("name", "quote\"back\\slash\nnewline ünï")],
                MetricKind::Gauge,
            ),
            points: vec![(T0, 1e300), (T0 + 1, -0.5)],
        });
        let text = rendered(&results, Format::Json, &RenderOptions::default());
        assert_eq!(text.lines().count(), 5, "one line per series:\n{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 3);
        assert_eq!(arr[0]["metric"], "pg_stat_database_xact_commit_total");
        assert_eq!(arr[0]["labels"]["datname"], "app");
        assert_eq!(arr[0]["labels"]["pg_instance"], "main");
        assert_eq!(arr[0]["kind"], "counter");
        assert_eq!(
            arr[0]["points"][1],
            serde_json::json!([1_795_507_260_000i64, 1234.25])
        );
        assert_eq!(arr[1]["labels"], serde_json::json!({}));
        assert_eq!(
            arr[1]["points"],
            serde_json::json!([
                [1_795_507_200_000i64, 1.0],
                [1_795_507_260_000i64, "NaN"],
                [1_795_507_320_000i64, "+Inf"],
                [1_795_507_380_000i64, "-Inf"]
            ])
        );
        assert_eq!(arr[2]["labels"]["name"], "quote\"back\\slash\nnewline ünï");
        assert_eq!(arr[2]["points"][0][1], 1e300);
    }

    #[test]
    fn values_read_back() {
        for v in [
            0.1,
            1234.5,
            1e-7,
            1.5e20,
            -3.25,
            123_456_789_012.0,
            5e-324,
            f64::MAX,
        ] {
            let text = format_value(v);
            assert_eq!(text.parse::<f64>().unwrap(), v, "{text}");
        }
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(-0.0), "0");
        assert_eq!(format_value(1e-7), "1e-7");
        assert_eq!(format_value(1.5e20), "1.5e20");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    }

    fn list() -> Vec<SeriesMeta> {
        let mut a = meta(
            "pg_database_size_bytes",
            &[("datname", "app")],
            MetricKind::Gauge,
        );
        a.unit = "bytes".into();
        a.help = "Size of the database, \"on disk\".".into();
        vec![a, meta("pg_up", &[], MetricKind::Gauge)]
    }

    #[test]
    fn series_list_table() {
        let text = to_string(|out| render_series_list(&list(), Format::Table, out));
        assert_eq!(
            text,
            "\
metric                  labels           kind   unit
pg_database_size_bytes  {datname=\"app\"}  gauge  bytes
pg_up                                    gauge
"
        );
        let text = to_string(|out| render_series_list(&[], Format::Table, out));
        assert_eq!(text, "no series\n");
    }

    #[test]
    fn series_list_csv_and_json() {
        let text = to_string(|out| render_series_list(&list(), Format::Csv, out));
        assert_eq!(
            text,
            "series,metric,kind,unit,help\n\
             \"pg_database_size_bytes{datname=\"\"app\"\"}\",pg_database_size_bytes,gauge,bytes,\
             \"Size of the database, \"\"on disk\"\".\"\n\
             pg_up,pg_up,gauge,,\n"
        );
        let text = to_string(|out| render_series_list(&list(), Format::Json, out));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"metric": "pg_database_size_bytes", "labels": {"datname": "app"},
                 "kind": "gauge", "unit": "bytes", "help": "Size of the database, \"on disk\"."},
                {"metric": "pg_up", "labels": {}, "kind": "gauge", "unit": "", "help": ""}
            ])
        );
        let text = to_string(|out| render_series_list(&[], Format::Json, out));
        assert_eq!(text, "[]\n");
    }

    #[test]
    fn json_layout_is_one_series_a_line() {
        let m = meta("m", &[("a", "x\"y"), ("b", "")], MetricKind::Gauge);
        let results = [SeriesResult {
            meta: m.clone(),
            points: vec![(1, 1.0), (2, f64::NAN), (3, 0.25)],
        }];
        assert_eq!(
            rendered(&results, Format::Json, &RenderOptions::default()),
            "[\n  {\"metric\":\"m\",\"labels\":{\"a\":\"x\\\"y\",\"b\":\"\"},\"kind\":\"gauge\",\
             \"unit\":\"\",\"points\":[[1,1.0],[2,\"NaN\"],[3,0.25]]}\n]\n"
        );
        let text = to_string(|out| render_series_list(&[m.clone(), m], Format::Json, out));
        let line = "{\"metric\":\"m\",\"labels\":{\"a\":\"x\\\"y\",\"b\":\"\"},\"kind\":\"gauge\",\
                    \"unit\":\"\",\"help\":\"\"}";
        assert_eq!(text, format!("[\n  {line},\n  {line}\n]\n"));
    }

    #[test]
    fn series_text_escapes_like_a_selector() {
        let m = meta("m", &[("a", "x\"y"), ("b", "")], MetricKind::Gauge);
        let text = series_text(&m);
        assert_eq!(text, r#"m{a="x\"y",b=""}"#);
        let sel = pga_selector::parse(&text).unwrap();
        assert!(sel.matches(&m));
    }
}
