//! Pressure stall information (PSI) from `/proc/pressure/{cpu,memory,io}`.
//!
//! PSI needs Linux 4.20 or later built with `CONFIG_PSI` and not booted with `psi=0`;
//! where it is missing, that is reported once and the subsystem is skipped.

use std::path::Path;

use super::{Metric, ParseError, ReadError, Source, absent_error, parse_u64};
use crate::collect::{CollectError, Emitter};

/// A resource under `/proc/pressure/` and its metrics for `some` and `full`.
#[derive(Debug)]
struct Resource {
    file: &'static str,
    /// From `some`: time at least one task was stalled on the resource.
    waiting: Metric,
    /// From `full`: time all non-idle tasks were stalled on it at once.
    stalled: Metric,
}

const RESOURCES: [Resource; 3] = [
    Resource {
        file: "cpu",
        waiting: Metric::counter(
            "node_pressure_cpu_waiting_seconds_total",
            "Time at least one runnable task was waiting for a CPU (PSI cpu some).",
            "seconds",
        ),
        stalled: Metric::counter(
            "node_pressure_cpu_stalled_seconds_total",
            "Time all non-idle tasks were waiting for a CPU at once (PSI cpu full; Linux 5.13+, always 0 system-wide).",
            "seconds",
        ),
    },
    Resource {
        file: "memory",
        waiting: Metric::counter(
            "node_pressure_memory_waiting_seconds_total",
            "Time at least one task was stalled waiting for memory: reclaim, refaults, swap-in (PSI memory some).",
            "seconds",
        ),
        stalled: Metric::counter(
            "node_pressure_memory_stalled_seconds_total",
            "Time all non-idle tasks were stalled waiting for memory at once (PSI memory full).",
            "seconds",
        ),
    },
    Resource {
        file: "io",
        waiting: Metric::counter(
            "node_pressure_io_waiting_seconds_total",
            "Time at least one task was stalled waiting for block I/O (PSI io some).",
            "seconds",
        ),
        stalled: Metric::counter(
            "node_pressure_io_stalled_seconds_total",
            "Time all non-idle tasks were stalled waiting for block I/O at once (PSI io full).",
            "seconds",
        ),
    },
];

/// The `total=` counters of one pressure file, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Psi {
    pub some: Option<u64>,
    /// Absent for `cpu` before Linux 5.13.
    pub full: Option<u64>,
}

/// Parses a `/proc/pressure/*` file:
/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=12345` and possibly a `full` line.
pub fn parse_pressure(text: &str) -> Result<Psi, ParseError> {
    let mut psi = Psi::default();
    for (i, line) in text.lines().enumerate() {
        let err = |detail: String| ParseError {
            line: i + 1,
            detail,
        };
        let mut tokens = line.split_ascii_whitespace();
        let slot = match tokens.next() {
            Some("some") => &mut psi.some,
            Some("full") => &mut psi.full,
            _ => continue,
        };
        let total = tokens
            .find_map(|t| t.strip_prefix("total="))
            .ok_or_else(|| err("no total= field".into()))?;
        *slot = Some(parse_u64(total, "total").map_err(err)?);
    }
    if psi.some.is_none() {
        return Err(ParseError {
            line: 1,
            detail: "no \"some\" line".into(),
        });
    }
    Ok(psi)
}

#[derive(Debug)]
pub(super) struct Pressure {
    files: [Source; 3],
}

impl Pressure {
    pub(super) fn new(proc_root: &Path) -> Self {
        Self {
            files: RESOURCES
                .each_ref()
                .map(|r| Source::new(proc_root.join("pressure").join(r.file))),
        }
    }

    pub(super) fn collect(
        &mut self,
        buf: &mut Vec<u8>,
        out: &mut Emitter,
        errors: &mut Vec<CollectError>,
    ) {
        let mut newly_absent = None;
        for (resource, source) in RESOURCES.iter().zip(&mut self.files) {
            let text = match source.read(buf) {
                Ok(Some(text)) => text,
                Ok(None) => continue,
                Err(ReadError::NewlyAbsent(e)) => {
                    newly_absent.get_or_insert((source.path.clone(), e));
                    continue;
                }
                Err(ReadError::Failed(e)) => {
                    errors.push(e);
                    continue;
                }
            };
            match parse_pressure(&text) {
                Ok(psi) => {
                    for (metric, total) in
                        [(&resource.waiting, psi.some), (&resource.stalled, psi.full)]
                    {
                        if let Some(us) = total {
                            metric.emit(out, &[], us as f64 / 1e6);
                        }
                    }
                }
                Err(e) => errors.push(CollectError::parse(&source.path, e.to_string())),
            }
        }
        // One report for the whole subsystem, however many of its files are missing.
        if let Some((path, e)) = newly_absent {
            let hint = "; PSI needs Linux 4.20+ built with CONFIG_PSI, not booted with psi=0";
            errors.push(absent_error("Pressure stall (PSI)", &path, e, hint));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_some_and_full() {
        let text = "some avg10=6.48 avg60=14.14 avg300=22.18 total=327230967\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(
            parse_pressure(text),
            Ok(Psi {
                some: Some(327_230_967),
                full: Some(0),
            })
        );
    }

    #[test]
    fn cpu_before_5_13_has_no_full_line() {
        let text = "some avg10=0.00 avg60=0.00 avg300=0.00 total=18446744073709551615\n";
        assert_eq!(
            parse_pressure(text),
            Ok(Psi {
                some: Some(u64::MAX),
                full: None,
            })
        );
    }

    #[test]
    fn rejects_bad_pressure() {
        assert!(parse_pressure("").unwrap_err().detail.contains("some"));
        let e = parse_pressure("some avg10=0.00\n").unwrap_err();
        assert_eq!((e.line, e.detail.as_str()), (1, "no total= field"));
        let e = parse_pressure("some total=1\nfull total=x\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.detail.contains("\"x\""), "{e}");
    }

    #[test]
    fn emits_seconds_and_reports_absence_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut psi = Pressure::new(dir.path());
        let (mut buf, mut out, mut errors) = (Vec::new(), Emitter::new(), Vec::new());
        psi.collect(&mut buf, &mut out, &mut errors);
        assert!(out.is_empty());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].to_string().contains("PSI"), "{}", errors[0]);
        psi.collect(&mut buf, &mut out, &mut errors);
        assert_eq!(errors.len(), 1, "reported once");

        std::fs::create_dir(dir.path().join("pressure")).unwrap();
        for (file, full) in [
            ("cpu", ""),
            ("memory", "full total=500000\n"),
            ("io", "full total=3\n"),
        ] {
            let text = format!("some avg10=0.00 avg60=0.00 avg300=0.00 total=2500000\n{full}");
            std::fs::write(dir.path().join("pressure").join(file), text).unwrap();
        }
        let mut psi = Pressure::new(dir.path());
        let mut errors = Vec::new();
        psi.collect(&mut buf, &mut out, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            out.names_and_values(),
            [
                ("node_pressure_cpu_waiting_seconds_total", 2.5),
                ("node_pressure_memory_waiting_seconds_total", 2.5),
                ("node_pressure_memory_stalled_seconds_total", 0.5),
                ("node_pressure_io_waiting_seconds_total", 2.5),
                ("node_pressure_io_stalled_seconds_total", 0.000003),
            ]
        );
    }
}
