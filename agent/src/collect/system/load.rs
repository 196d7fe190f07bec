//! Load averages from `/proc/loadavg`.

use std::path::Path;

use super::{Metric, ParseError, Source};
use crate::collect::{CollectError, Emitter};

const LOAD: [Metric; 3] = [
    Metric::gauge(
        "node_load1",
        "Load average over 1 minute: runnable plus uninterruptible (usually I/O-waiting) tasks.",
        "",
    ),
    Metric::gauge(
        "node_load5",
        "Load average over 5 minutes: runnable plus uninterruptible (usually I/O-waiting) tasks.",
        "",
    ),
    Metric::gauge(
        "node_load15",
        "Load average over 15 minutes: runnable plus uninterruptible (usually I/O-waiting) tasks.",
        "",
    ),
];

/// Parses `/proc/loadavg` (`0.52 0.58 0.59 3/467 12345`): the 1, 5 and 15 minute averages.
pub fn parse_loadavg(text: &str) -> Result<[f64; 3], ParseError> {
    let err = |detail: String| ParseError { line: 1, detail };
    let line = text.lines().next().unwrap_or("");
    let mut tokens = line.split_ascii_whitespace();
    let mut load = [0.0; 3];
    for (i, slot) in load.iter_mut().enumerate() {
        let token = tokens
            .next()
            .ok_or_else(|| err(format!("{} fields, expected at least 3", i)))?;
        *slot = token
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| {
                err(format!(
                    "field {}: {:?} is not a load average",
                    i + 1,
                    super::clip(token)
                ))
            })?;
    }
    Ok(load)
}

#[derive(Debug)]
pub(super) struct Load {
    loadavg: Source,
}

impl Load {
    pub(super) fn new(proc_root: &Path) -> Self {
        Self {
            loadavg: Source::new(proc_root.join("loadavg")),
        }
    }

    pub(super) fn collect(
        &mut self,
        buf: &mut Vec<u8>,
        out: &mut Emitter,
        errors: &mut Vec<CollectError>,
    ) {
        let Some(text) = self.loadavg.read_or_report(buf, "Load average", errors) else {
            return;
        };
        match parse_loadavg(&text) {
            Ok(load) => {
                for (metric, value) in LOAD.iter().zip(load) {
                    metric.emit(out, &[], value);
                }
            }
            Err(e) => errors.push(CollectError::parse(&self.loadavg.path, e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loadavg() {
        assert_eq!(
            parse_loadavg("2.41 2.31 1.71 3/108 2629\n"),
            Ok([2.41, 2.31, 1.71])
        );
        assert_eq!(parse_loadavg("0.00 0.00 0.00 1/1 1"), Ok([0.0, 0.0, 0.0]));
        // A 1024-core box under a storm.
        assert_eq!(
            parse_loadavg("2048.95 1500.00 999.99 9/9 9\n"),
            Ok([2048.95, 1500.0, 999.99])
        );
    }

    #[test]
    fn rejects_bad_loadavg() {
        let e = parse_loadavg("").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.detail.contains("0 fields"), "{e}");
        assert!(
            parse_loadavg("1.0 2.0\n")
                .unwrap_err()
                .detail
                .contains("2 fields")
        );
        assert!(
            parse_loadavg("1.0 nan 3.0\n")
                .unwrap_err()
                .detail
                .contains("field 2")
        );
        assert!(parse_loadavg("1.0 2.0 inf\n").is_err());
        assert!(parse_loadavg("1.0 2.0 -1\n").is_err());
    }

    #[test]
    fn emits_three_gauges_or_one_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("loadavg"), "0.5 0.25 0.125 1/2 3\n").unwrap();
        let mut load = Load::new(dir.path());
        let (mut buf, mut out, mut errors) = (Vec::new(), Emitter::new(), Vec::new());
        load.collect(&mut buf, &mut out, &mut errors);
        assert_eq!(
            out.names_and_values(),
            [
                ("node_load1", 0.5),
                ("node_load5", 0.25),
                ("node_load15", 0.125)
            ]
        );

        std::fs::write(dir.path().join("loadavg"), "x\n").unwrap();
        let mut out = Emitter::new();
        load.collect(&mut buf, &mut out, &mut errors);
        assert!(out.is_empty());
        let msg = errors[0].to_string();
        assert!(msg.contains("loadavg") && msg.contains("line 1"), "{msg}");
    }
}
