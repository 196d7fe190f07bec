//! Reader for the scrape corpus (`shared/corpus/README.md`).
//!
//! A corpus is plain text, optionally zstd-compressed as a whole. Each scrape starts with a
//! header line and continues with an exporter's response body in the Prometheus text
//! exposition format 0.0.4:
//!
//! ```text
//! # SCRAPE <job> <unix_time_ms>
//! # HELP <name> <text>
//! # TYPE <name> <counter|gauge|histogram|summary|untyped|unknown>
//! <name>{<label>="<value>",...} <value> [<timestamp_ms>]
//! # SCRAPE-FAILED <job> <unix_time_ms> <reason>
//! ```
//!
//! A series is the job plus the metric name and labels of a sample line. The job becomes the
//! label `job`; a label `job` already on the sample is renamed `exported_job`, as Prometheus
//! does without `honor_labels`. Series ids are handed out in first-seen order (0, 1, 2, …),
//! as the agent's dictionary does. The kind, unit and help of a series are fixed the first
//! time it is seen. Every sample of a scrape gets the scrape's timestamp; an explicit
//! timestamp on a sample line is checked for syntax and otherwise ignored.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use pga_format::{MetricKind, SeriesId, SeriesMeta};

mod line;

pub use line::{SampleLine, parse_sample_line, parse_value};

/// The first four bytes of every zstd frame (RFC 8878, section 3.1.1).
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Label that carries the scrape's job.
pub const JOB_LABEL: &str = "job";
/// Where a `job` label already present on a sample line goes.
pub const EXPORTED_JOB_LABEL: &str = "exported_job";

/// One successful scrape: one collection pass, all samples at the scrape's timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Scrape {
    pub job: String,
    pub timestamp_ms: i64,
    /// Samples in the order of the body's lines.
    pub samples: Vec<(SeriesId, f64)>,
}

/// A `# SCRAPE-FAILED` header: no samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedScrape {
    pub job: String,
    pub timestamp_ms: i64,
    pub reason: String,
}

/// A parsed corpus.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    /// Every series, indexed by its id: `series[i].id == SeriesId(i)`.
    pub series: Vec<SeriesMeta>,
    /// Successful scrapes in file order.
    pub scrapes: Vec<Scrape>,
    /// Failed scrapes in file order.
    pub failed: Vec<FailedScrape>,
}

impl Corpus {
    /// Number of samples over all scrapes.
    pub fn sample_count(&self) -> usize {
        self.scrapes.iter().map(|s| s.samples.len()).sum()
    }
}

/// Reading a corpus file failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CorpusError {
    #[error("cannot read corpus file {path}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot decompress corpus file {path} (it starts with the zstd magic)")]
    Decompress { path: PathBuf, source: io::Error },
    #[error("cannot parse corpus file {path}")]
    Parse { path: PathBuf, source: ParseError },
}

/// A line of the corpus that cannot be parsed; `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ParseError {
    pub line: usize,
    pub kind: ParseErrorKind,
}

/// Why a corpus line was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    #[error("line is not valid UTF-8")]
    NotUtf8,
    #[error("{0} before any `# SCRAPE` header")]
    BeforeFirstScrape(&'static str),
    #[error("{0} after a `# SCRAPE-FAILED` header (a failed scrape has no body)")]
    InFailedScrape(&'static str),
    #[error("bad scrape header: {0}; expected `# SCRAPE <job> <unix_time_ms>`")]
    BadScrapeHeader(String),
    #[error(
        "bad failed-scrape header: {0}; expected `# SCRAPE-FAILED <job> <unix_time_ms> <reason>`"
    )]
    BadFailedHeader(String),
    #[error("bad `# {directive}` line: {reason}")]
    BadMetadata {
        directive: &'static str,
        reason: String,
    },
    #[error("bad metric name: {0}")]
    BadMetricName(String),
    #[error("bad label: {0}")]
    BadLabel(String),
    #[error("unterminated label value (no closing `\"`)")]
    UnterminatedLabelValue,
    #[error("unterminated label set (no closing `}}`)")]
    UnterminatedLabels,
    #[error("invalid escape `\\{0}` in label value (only \\\\, \\\" and \\n are allowed)")]
    BadEscape(char),
    #[error("label `{0}` appears twice")]
    DuplicateLabel(String),
    #[error("missing sample value")]
    MissingValue,
    #[error("bad sample value `{0}`")]
    BadValue(String),
    #[error("bad sample timestamp `{0}` (expected integer milliseconds)")]
    BadTimestamp(String),
    #[error("unexpected text after the sample: `{0}`")]
    TrailingText(String),
    #[error("series {0} appears twice in one scrape")]
    DuplicateSample(String),
    #[error("invalid series: {0}")]
    InvalidSeries(String),
}

/// Reads a corpus file into memory, decompressing it when it starts with [`ZSTD_MAGIC`].
pub fn read_corpus_text(path: &Path) -> Result<Vec<u8>, CorpusError> {
    let read_err = |source| CorpusError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(read_err)?);
    // A regular file fills the buffer unless it is shorter than the magic.
    let is_zstd = reader
        .fill_buf()
        .map_err(read_err)?
        .starts_with(&ZSTD_MAGIC);
    let mut text = Vec::new();
    if is_zstd {
        let decompress_err = |source| CorpusError::Decompress {
            path: path.to_path_buf(),
            source,
        };
        let mut decoder =
            zstd::stream::read::Decoder::with_buffer(reader).map_err(decompress_err)?;
        decoder.read_to_end(&mut text).map_err(decompress_err)?;
    } else {
        reader.read_to_end(&mut text).map_err(read_err)?;
    }
    Ok(text)
}

/// Reads and parses a corpus file.
pub fn load_corpus(path: &Path) -> Result<(Corpus, Vec<u8>), CorpusError> {
    let text = read_corpus_text(path)?;
    let corpus = parse_corpus(&text).map_err(|source| CorpusError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((corpus, text))
}

/// Declared type of a metric family (`# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FamilyType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

impl FamilyType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" => Self::Histogram,
            "summary" => Self::Summary,
            "untyped" | "unknown" => Self::Untyped,
            _ => return None,
        })
    }
}

/// HELP and TYPE of one family, as declared in the current scrape body.
#[derive(Debug, Default)]
struct Family {
    ty: Option<FamilyType>,
    help: Option<String>,
}

#[derive(Debug)]
enum State {
    /// No `# SCRAPE` header yet.
    Start,
    /// In the body of a successful scrape.
    Body,
    /// After a `# SCRAPE-FAILED` header: no body allowed.
    Failed,
}

/// Parser state across lines.
#[derive(Debug)]
struct Parser {
    corpus: Corpus,
    ids: HashMap<(String, Vec<(String, String)>), SeriesId>,
    state: State,
    families: HashMap<String, Family>,
    seen_in_scrape: HashSet<SeriesId>,
}

/// Parses a whole corpus held in memory.
pub fn parse_corpus(text: &[u8]) -> Result<Corpus, ParseError> {
    let mut parser = Parser {
        corpus: Corpus::default(),
        ids: HashMap::new(),
        state: State::Start,
        families: HashMap::new(),
        seen_in_scrape: HashSet::new(),
    };
    for (index, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let kind_at = |kind| ParseError { line, kind };
        let s = std::str::from_utf8(raw).map_err(|_| kind_at(ParseErrorKind::NotUtf8))?;
        parser.line(s).map_err(kind_at)?;
    }
    Ok(parser.corpus)
}

impl Parser {
    fn line(&mut self, s: &str) -> Result<(), ParseErrorKind> {
        let trimmed = s.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() {
            return Ok(());
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            return self.comment(comment);
        }
        match self.state {
            State::Start => Err(ParseErrorKind::BeforeFirstScrape("sample")),
            State::Failed => Err(ParseErrorKind::InFailedScrape("sample")),
            State::Body => self.sample(trimmed),
        }
    }

    fn comment(&mut self, comment: &str) -> Result<(), ParseErrorKind> {
        let comment = comment.trim_start_matches([' ', '\t']);
        let (directive, rest) = split_token(comment);
        match directive {
            "SCRAPE" => self.scrape_header(rest),
            "SCRAPE-FAILED" => self.failed_header(rest),
            "HELP" | "TYPE" => {
                let directive = if directive == "HELP" { "HELP" } else { "TYPE" };
                match self.state {
                    State::Start => Err(ParseErrorKind::BeforeFirstScrape(directive)),
                    State::Failed => Err(ParseErrorKind::InFailedScrape(directive)),
                    State::Body => self.metadata(directive, rest),
                }
            }
            // Any other comment carries no data.
            _ => Ok(()),
        }
    }

    fn start_body(&mut self, state: State) {
        self.state = state;
        self.families.clear();
        self.seen_in_scrape.clear();
    }

    fn scrape_header(&mut self, rest: &str) -> Result<(), ParseErrorKind> {
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let [job, ms] = fields[..] else {
            return Err(ParseErrorKind::BadScrapeHeader(format!(
                "{} fields after `SCRAPE`",
                fields.len()
            )));
        };
        let timestamp_ms = ms.parse::<i64>().map_err(|_| {
            ParseErrorKind::BadScrapeHeader(format!("timestamp `{ms}` is not integer ms"))
        })?;
        self.corpus.scrapes.push(Scrape {
            job: job.to_owned(),
            timestamp_ms,
            samples: Vec::new(),
        });
        self.start_body(State::Body);
        Ok(())
    }

    fn failed_header(&mut self, rest: &str) -> Result<(), ParseErrorKind> {
        let (job, rest) = split_token(rest);
        let (ms, reason) = split_token(rest);
        if job.is_empty() || ms.is_empty() {
            return Err(ParseErrorKind::BadFailedHeader(
                "missing job or timestamp".into(),
            ));
        }
        let timestamp_ms = ms.parse::<i64>().map_err(|_| {
            ParseErrorKind::BadFailedHeader(format!("timestamp `{ms}` is not integer ms"))
        })?;
        self.corpus.failed.push(FailedScrape {
            job: job.to_owned(),
            timestamp_ms,
            reason: reason.trim_end().to_owned(),
        });
        self.start_body(State::Failed);
        Ok(())
    }

    fn metadata(&mut self, directive: &'static str, rest: &str) -> Result<(), ParseErrorKind> {
        let bad = |reason: String| ParseErrorKind::BadMetadata { directive, reason };
        let (name, text) = split_token(rest);
        if !line::is_metric_name(name) {
            return Err(bad(format!("bad metric name `{name}`")));
        }
        let family = self.families.entry(name.to_owned()).or_default();
        if directive == "HELP" {
            family.help = Some(unescape_help(text));
        } else {
            let ty = text.trim_end();
            family.ty = Some(FamilyType::parse(ty).ok_or_else(|| {
                bad(format!(
                    "unknown type `{ty}` (counter, gauge, histogram, summary, untyped)"
                ))
            })?);
        }
        Ok(())
    }

    fn sample(&mut self, s: &str) -> Result<(), ParseErrorKind> {
        let SampleLine {
            name,
            mut labels,
            value,
            ..
        } = parse_sample_line(s)?;
        let scrape = self
            .corpus
            .scrapes
            .last_mut()
            .ok_or(ParseErrorKind::BeforeFirstScrape("sample"))?;
        for (label, _) in &mut labels {
            if label == JOB_LABEL {
                EXPORTED_JOB_LABEL.clone_into(label);
            }
        }
        labels.push((JOB_LABEL.to_owned(), scrape.job.clone()));
        labels.sort_unstable();
        if let Some(pair) = labels.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(ParseErrorKind::DuplicateLabel(pair[0].0.clone()));
        }
        let next_id = SeriesId(self.corpus.series.len() as u64);
        let id = match self.ids.entry((name.to_owned(), labels)) {
            Entry::Occupied(entry) => *entry.get(),
            Entry::Vacant(entry) => {
                let (kind, family) = resolve_family(name, &self.families);
                let unit = unit_of(family.map_or(name, |(family_name, _)| family_name));
                let help = family.and_then(|(_, f)| f.help.clone()).unwrap_or_default();
                let meta = SeriesMeta::new(next_id, name, entry.key().1.clone(), kind, unit, help)
                    .map_err(|e| ParseErrorKind::InvalidSeries(e.to_string()))?;
                self.corpus.series.push(meta);
                *entry.insert(next_id)
            }
        };
        if !self.seen_in_scrape.insert(id) {
            return Err(ParseErrorKind::DuplicateSample(s.trim_end().to_owned()));
        }
        scrape.samples.push((id, value));
        Ok(())
    }
}

/// Kind of a sample named `name`, with the family (name and metadata) it belongs to.
///
/// `counter` → Counter; `gauge`, `untyped`, `unknown` and undeclared → Gauge; the quantile
/// lines of a summary → Gauge; `_sum`/`_count` of a summary and `_bucket`/`_sum`/`_count` of
/// a histogram → Counter.
fn resolve_family<'a>(
    name: &'a str,
    families: &'a HashMap<String, Family>,
) -> (MetricKind, Option<(&'a str, &'a Family)>) {
    let exact = families.get_key_value(name);
    if let Some((family_name, family)) = exact
        && family.ty.is_some()
    {
        let kind = match family.ty {
            Some(FamilyType::Counter) => MetricKind::Counter,
            _ => MetricKind::Gauge,
        };
        return (kind, Some((family_name.as_str(), family)));
    }
    for (suffix, types) in [
        ("_bucket", &[FamilyType::Histogram][..]),
        ("_sum", &[FamilyType::Histogram, FamilyType::Summary][..]),
        ("_count", &[FamilyType::Histogram, FamilyType::Summary][..]),
    ] {
        let Some(base) = name.strip_suffix(suffix) else {
            continue;
        };
        if let Some((family_name, family)) = families.get_key_value(base)
            && family.ty.is_some_and(|ty| types.contains(&ty))
        {
            return (MetricKind::Counter, Some((family_name.as_str(), family)));
        }
    }
    (
        MetricKind::Gauge,
        exact.map(|(family_name, family)| (family_name.as_str(), family)),
    )
}

/// Unit from the Prometheus naming convention of a metric or family name.
pub fn unit_of(name: &str) -> &'static str {
    let base = name.strip_suffix("_total").unwrap_or(name);
    if base.ends_with("_seconds") {
        "seconds"
    } else if base.ends_with("_bytes") {
        "bytes"
    } else {
        ""
    }
}

/// Splits off the first whitespace-separated token; the rest keeps its inner spacing.
fn split_token(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches([' ', '\t']);
    match s.find([' ', '\t']) {
        Some(end) => (&s[..end], s[end..].trim_start_matches([' ', '\t'])),
        None => (s, ""),
    }
}

/// HELP text escapes: `\\` and `\n`; any other backslash stays as written.
fn unescape_help(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.trim_end().chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_follows_name_suffix() {
        assert_eq!(unit_of("node_cpu_seconds_total"), "seconds");
        assert_eq!(unit_of("go_gc_duration_seconds"), "seconds");
        assert_eq!(unit_of("pg_database_size_bytes"), "bytes");
        assert_eq!(unit_of("node_network_receive_bytes_total"), "bytes");
        assert_eq!(unit_of("pg_up"), "");
        assert_eq!(unit_of("seconds"), "");
    }

    #[test]
    fn help_unescapes_backslash_and_newline_only() {
        assert_eq!(unescape_help(r"a\\b\nc\td  "), "a\\b\nc\\td");
    }

    #[test]
    fn split_token_keeps_inner_spacing() {
        assert_eq!(split_token("  name  some  text"), ("name", "some  text"));
        assert_eq!(split_token("name"), ("name", ""));
    }
}
