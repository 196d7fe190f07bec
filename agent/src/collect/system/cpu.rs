//! CPU time per CPU and mode, and the kernel's process counters, from `/proc/stat`.

use std::path::Path;

use super::{BadLines, Metric, ParseError, Source, fill_u64, parse_lines, parse_u64};
use crate::collect::{CollectError, Emitter};

/// The modes of a `cpuN` line, in the kernel's order. `guest` and `guest_nice` follow
/// them but are already included in `user` and `nice`, so they are not reported.
pub const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// Fewest modes a `cpuN` line has had (Linux 2.4: user, nice, system, idle).
const MIN_MODES: usize = 4;

/// `AT_CLKTCK` in the ELF auxiliary vector: the unit of `/proc/stat` times (`USER_HZ`),
/// what `sysconf(_SC_CLK_TCK)` returns.
const AT_CLKTCK: usize = 17;
/// `USER_HZ` on every architecture Rust targets on Linux; used if the auxv can't be read.
const DEFAULT_USER_HZ: u64 = 100;

const CPU_SECONDS: Metric = Metric::counter(
    "node_cpu_seconds_total",
    "Seconds each CPU has spent in each mode since boot.",
    "seconds",
);
const CPU_COUNT: Metric = Metric::gauge(
    "node_cpu_count",
    "Number of online CPUs, as listed in /proc/stat.",
    "",
);
const CONTEXT_SWITCHES: Metric = Metric::counter(
    "node_context_switches_total",
    "Context switches the kernel has made since boot.",
    "",
);
const FORKS: Metric = Metric::counter(
    "node_forks_total",
    "Processes and threads created since boot.",
    "",
);
const PROCS_RUNNING: Metric = Metric::gauge(
    "node_procs_running",
    "Processes (threads) currently runnable: running or waiting for a CPU.",
    "",
);
const PROCS_BLOCKED: Metric = Metric::gauge(
    "node_procs_blocked",
    "Processes (threads) currently blocked waiting for I/O to complete.",
    "",
);
const BOOT_TIME: Metric = Metric::gauge(
    "node_boot_time_seconds",
    "Time the system booted, in seconds since the Unix epoch.",
    "seconds",
);

/// Ticks one CPU has spent in each mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes<'a> {
    /// The CPU's number as the kernel writes it (`"0"` for `cpu0`).
    pub cpu: &'a str,
    /// Ticks per mode, in [`MODES`] order; only the first `modes` are meaningful.
    pub ticks: [u64; 8],
    /// How many modes the line had (4 to 8; older kernels have fewer).
    pub modes: usize,
}

/// One line of `/proc/stat` this collector uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatLine<'a> {
    Cpu(CpuTimes<'a>),
    ContextSwitches(u64),
    BootTime(u64),
    Forks(u64),
    ProcsRunning(u64),
    ProcsBlocked(u64),
}

/// Parses `/proc/stat`: the per-CPU lines and the single-number lines this collector
/// reports. The all-CPU `cpu` line, `intr`, `softirq` and unknown lines are skipped.
pub fn parse_stat(text: &str) -> impl Iterator<Item = Result<StatLine<'_>, ParseError>> {
    parse_lines(text, 0, parse_stat_line)
}

fn parse_stat_line(line: &str) -> Result<Option<StatLine<'_>>, String> {
    let mut tokens = line.split_ascii_whitespace();
    let Some(key) = tokens.next() else {
        return Ok(None);
    };
    let make: fn(u64) -> StatLine<'static> = match key {
        "ctxt" => StatLine::ContextSwitches,
        "btime" => StatLine::BootTime,
        "processes" => StatLine::Forks,
        "procs_running" => StatLine::ProcsRunning,
        "procs_blocked" => StatLine::ProcsBlocked,
        _ => return parse_cpu_line(key, tokens),
    };
    let value = tokens
        .next()
        .ok_or_else(|| format!("{key}: value missing"))?;
    parse_u64(value, key).map(|v| Some(make(v)))
}

fn parse_cpu_line<'a>(
    key: &'a str,
    tokens: impl Iterator<Item = &'a str>,
) -> Result<Option<StatLine<'a>>, String> {
    let Some(cpu) = key.strip_prefix("cpu") else {
        return Ok(None);
    };
    if cpu.is_empty() || !cpu.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None); // the all-CPU line, or not a CPU line
    }
    let mut ticks = [0u64; 8];
    let n = fill_u64(tokens, &mut ticks).map_err(|e| format!("{key}: {e}"))?;
    if n < MIN_MODES {
        return Err(format!("{key}: {n} fields, expected at least {MIN_MODES}"));
    }
    Ok(Some(StatLine::Cpu(CpuTimes {
        cpu,
        ticks,
        modes: n.min(MODES.len()),
    })))
}

/// `AT_CLKTCK` from the bytes of `/proc/self/auxv` (native-endian word pairs).
pub fn clock_ticks_from_auxv(auxv: &[u8]) -> Option<u64> {
    const WORD: usize = size_of::<usize>();
    auxv.chunks_exact(2 * WORD).find_map(|pair| {
        let (key, value) = pair.split_at(WORD);
        let key = usize::from_ne_bytes(key.try_into().ok()?);
        let value = usize::from_ne_bytes(value.try_into().ok()?);
        (key == AT_CLKTCK && value > 0).then_some(value as u64)
    })
}

#[derive(Debug)]
pub(super) struct Cpu {
    stat: Source,
    /// `USER_HZ`: ticks per second in `/proc/stat`.
    ticks_per_second: f64,
}

impl Cpu {
    pub(super) fn new(proc_root: &Path) -> Self {
        let hz = std::fs::read(proc_root.join("self/auxv"))
            .ok()
            .and_then(|auxv| clock_ticks_from_auxv(&auxv))
            .unwrap_or(DEFAULT_USER_HZ);
        Self {
            stat: Source::new(proc_root.join("stat")),
            ticks_per_second: hz as f64,
        }
    }

    pub(super) fn collect(
        &mut self,
        buf: &mut Vec<u8>,
        out: &mut Emitter,
        errors: &mut Vec<CollectError>,
    ) {
        let Some(text) = self.stat.read_or_report(buf, "CPU", errors) else {
            return;
        };
        let mut bad = BadLines::default();
        let mut cpus = 0u64;
        for line in parse_stat(&text) {
            match line {
                Ok(StatLine::Cpu(t)) => {
                    cpus += 1;
                    for (mode, &ticks) in MODES.iter().zip(&t.ticks).take(t.modes) {
                        CPU_SECONDS.emit(
                            out,
                            &[("cpu", t.cpu), ("mode", mode)],
                            ticks as f64 / self.ticks_per_second,
                        );
                    }
                }
                Ok(StatLine::ContextSwitches(v)) => CONTEXT_SWITCHES.emit(out, &[], v as f64),
                Ok(StatLine::BootTime(v)) => BOOT_TIME.emit(out, &[], v as f64),
                Ok(StatLine::Forks(v)) => FORKS.emit(out, &[], v as f64),
                Ok(StatLine::ProcsRunning(v)) => PROCS_RUNNING.emit(out, &[], v as f64),
                Ok(StatLine::ProcsBlocked(v)) => PROCS_BLOCKED.emit(out, &[], v as f64),
                Err(e) => bad.push(e),
            }
        }
        if cpus > 0 {
            CPU_COUNT.emit(out, &[], cpus as f64);
        } else {
            bad.push(ParseError {
                line: 0,
                detail: "no cpuN lines".into(),
            });
        }
        bad.report(&self.stat.path, errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(text: &str) -> Vec<StatLine<'_>> {
        parse_stat(text).collect::<Result<_, _>>().unwrap()
    }

    const MODERN: &str = "\
cpu  127921 16379 15921 157428 736 0 93 114 0 0
cpu0 62952 8742 7628 79709 150 0 14 55 0 0
cpu1 64969 7636 8292 77719 586 0 78 58 0 0
intr 2838383 0 9 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
ctxt 5812237
btime 1714000000
processes 29183
procs_running 3
procs_blocked 1
softirq 1234 0 1 2 3 4 5 6 7 8 9
";

    #[test]
    fn parses_modern_stat() {
        let lines = parse_all(MODERN);
        assert_eq!(lines.len(), 7);
        assert_eq!(
            lines[0],
            StatLine::Cpu(CpuTimes {
                cpu: "0",
                ticks: [62952, 8742, 7628, 79709, 150, 0, 14, 55],
                modes: 8,
            })
        );
        assert!(matches!(lines[1], StatLine::Cpu(CpuTimes { cpu: "1", .. })));
        assert_eq!(lines[2], StatLine::ContextSwitches(5_812_237));
        assert_eq!(lines[3], StatLine::BootTime(1_714_000_000));
        assert_eq!(lines[4], StatLine::Forks(29183));
        assert_eq!(lines[5], StatLine::ProcsRunning(3));
        assert_eq!(lines[6], StatLine::ProcsBlocked(1));
    }

    #[test]
    fn old_kernels_have_fewer_modes() {
        // 2.6.10 and before: no steal; 2.4: no iowait/irq/softirq either.
        let lines = parse_all("cpu0 1 2 3 4 5 6 7\ncpu1 10 20 30 40\n");
        let StatLine::Cpu(a) = lines[0] else { panic!() };
        let StatLine::Cpu(b) = lines[1] else { panic!() };
        assert_eq!((a.modes, &a.ticks[..7]), (7, &[1, 2, 3, 4, 5, 6, 7][..]));
        assert_eq!((b.modes, &b.ticks[..4]), (4, &[10, 20, 30, 40][..]));
    }

    #[test]
    fn huge_counters_and_many_cpus() {
        let text = "cpu127 18446744073709551615 0 0 0 0 0 0 0 0 0\nctxt 18446744073709551615\n";
        let lines = parse_all(text);
        assert!(matches!(
            lines[0],
            StatLine::Cpu(CpuTimes {
                cpu: "127",
                ticks: [u64::MAX, ..],
                ..
            })
        ));
        assert_eq!(lines[1], StatLine::ContextSwitches(u64::MAX));
    }

    #[test]
    fn bad_lines_name_the_line() {
        let text =
            "cpu  1 2 3 4\ncpu0 1 2 x 4\ncpu1 1 2\nctxt\nbtime -5\ncpu2 1 2 3 4\ncpufreq 9\n";
        let results: Vec<_> = parse_stat(text).collect();
        assert_eq!(results.len(), 5);
        let errs: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(
            errs.iter().map(|e| e.line).collect::<Vec<_>>(),
            [2, 3, 4, 5]
        );
        assert!(
            errs[0].detail.contains("cpu0") && errs[0].detail.contains("field 3"),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].detail.contains("expected at least 4"),
            "{}",
            errs[1]
        );
        assert!(matches!(
            results[4],
            Ok(StatLine::Cpu(CpuTimes { cpu: "2", .. }))
        ));
    }

    #[test]
    fn auxv_clock_ticks() {
        let mut auxv = Vec::new();
        for (k, v) in [(6usize, 4096usize), (AT_CLKTCK, 100), (0, 0)] {
            auxv.extend_from_slice(&k.to_ne_bytes());
            auxv.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(clock_ticks_from_auxv(&auxv), Some(100));
        assert_eq!(clock_ticks_from_auxv(&auxv[..16]), None);
        assert_eq!(clock_ticks_from_auxv(&[1, 2, 3]), None);
    }

    #[test]
    fn emits_seconds_with_cpu_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stat"), MODERN).unwrap();
        let mut cpu = Cpu::new(dir.path()); // no self/auxv: USER_HZ 100
        let (mut buf, mut out, mut errors) = (Vec::new(), Emitter::new(), Vec::new());
        cpu.collect(&mut buf, &mut out, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let find = |name: &str, labels: &[(&str, &str)]| {
            out.samples()
                .iter()
                .find(|s| {
                    s.name == name
                        && s.labels.len() == labels.len()
                        && labels
                            .iter()
                            .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
                })
                .map(|s| s.value)
        };
        assert_eq!(
            find("node_cpu_seconds_total", &[("cpu", "1"), ("mode", "idle")]),
            Some(777.19)
        );
        assert_eq!(
            find("node_cpu_seconds_total", &[("cpu", "0"), ("mode", "steal")]),
            Some(0.55)
        );
        assert_eq!(find("node_cpu_count", &[]), Some(2.0));
        assert_eq!(find("node_boot_time_seconds", &[]), Some(1_714_000_000.0));
        assert_eq!(
            out.samples()
                .iter()
                .filter(|s| s.name == "node_cpu_seconds_total")
                .count(),
            16
        );
    }

    #[test]
    fn stat_without_cpu_lines_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stat"), "ctxt 5\n").unwrap();
        let mut cpu = Cpu::new(dir.path());
        let (mut buf, mut out, mut errors) = (Vec::new(), Emitter::new(), Vec::new());
        cpu.collect(&mut buf, &mut out, &mut errors);
        assert_eq!(out.len(), 1);
        assert!(
            errors[0].to_string().contains("no cpuN lines"),
            "{}",
            errors[0]
        );
    }
}
