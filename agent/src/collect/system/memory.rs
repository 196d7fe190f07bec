//! Memory and swap from `/proc/meminfo`.

use std::path::Path;

use super::{BadLines, Metric, ParseError, Source, parse_lines, parse_u64};
use crate::collect::{CollectError, Emitter};

/// The `/proc/meminfo` fields reported, with their metrics. Fields the running kernel
/// lacks (`MemAvailable` before 3.14, …) are simply not emitted.
pub const FIELDS: [(&str, Metric); 17] = [
    (
        "MemTotal",
        Metric::gauge(
            "node_memory_MemTotal_bytes",
            "Usable RAM: physical memory less reserved regions and the kernel image.",
            "bytes",
        ),
    ),
    (
        "MemFree",
        Metric::gauge(
            "node_memory_MemFree_bytes",
            "RAM not used for anything at all.",
            "bytes",
        ),
    ),
    (
        "MemAvailable",
        Metric::gauge(
            "node_memory_MemAvailable_bytes",
            "Kernel estimate of the memory available for new work without swapping.",
            "bytes",
        ),
    ),
    (
        "Buffers",
        Metric::gauge(
            "node_memory_Buffers_bytes",
            "Memory in buffers for raw block devices and filesystem metadata.",
            "bytes",
        ),
    ),
    (
        "Cached",
        Metric::gauge(
            "node_memory_Cached_bytes",
            "Memory in the page cache for file contents, shared memory and tmpfs included.",
            "bytes",
        ),
    ),
    (
        "SwapTotal",
        Metric::gauge("node_memory_SwapTotal_bytes", "Total swap space.", "bytes"),
    ),
    (
        "SwapFree",
        Metric::gauge(
            "node_memory_SwapFree_bytes",
            "Swap space not in use.",
            "bytes",
        ),
    ),
    (
        "Dirty",
        Metric::gauge(
            "node_memory_Dirty_bytes",
            "Modified page-cache memory waiting to be written back to disk.",
            "bytes",
        ),
    ),
    (
        "Writeback",
        Metric::gauge(
            "node_memory_Writeback_bytes",
            "Memory being written back to disk right now.",
            "bytes",
        ),
    ),
    (
        "Shmem",
        Metric::gauge(
            "node_memory_Shmem_bytes",
            "Shared memory and tmpfs in use, PostgreSQL's shared buffers included.",
            "bytes",
        ),
    ),
    (
        "Slab",
        Metric::gauge(
            "node_memory_Slab_bytes",
            "Memory the kernel uses for its own object caches (slab).",
            "bytes",
        ),
    ),
    (
        "SReclaimable",
        Metric::gauge(
            "node_memory_SReclaimable_bytes",
            "Part of the slab the kernel can reclaim under pressure, such as dentry and inode caches.",
            "bytes",
        ),
    ),
    (
        "HugePages_Total",
        Metric::gauge(
            "node_memory_HugePages_Total",
            "Number of pages in the default-size huge page pool.",
            "",
        ),
    ),
    (
        "HugePages_Free",
        Metric::gauge(
            "node_memory_HugePages_Free",
            "Number of pages in the default-size huge page pool not yet allocated.",
            "",
        ),
    ),
    (
        "Hugepagesize",
        Metric::gauge(
            "node_memory_Hugepagesize_bytes",
            "Size of one default huge page.",
            "bytes",
        ),
    ),
    (
        "CommitLimit",
        Metric::gauge(
            "node_memory_CommitLimit_bytes",
            "Memory that can be committed before allocations fail under strict overcommit (vm.overcommit_memory=2).",
            "bytes",
        ),
    ),
    (
        "Committed_AS",
        Metric::gauge(
            "node_memory_Committed_AS_bytes",
            "Memory all processes have allocated, whether or not it is resident yet.",
            "bytes",
        ),
    ),
];

/// Parses `/proc/meminfo`: for each line naming a field of [`FIELDS`], its index there
/// and its value, converted from kB to bytes where the line says `kB`.
pub fn parse_meminfo(text: &str) -> impl Iterator<Item = Result<(usize, f64), ParseError>> {
    parse_lines(text, 0, parse_meminfo_line)
}

fn parse_meminfo_line(line: &str) -> Result<Option<(usize, f64)>, String> {
    let Some((key, rest)) = line.split_once(':') else {
        return if line.trim().is_empty() {
            Ok(None)
        } else {
            Err(format!("no ':' in {:?}", super::clip(line)))
        };
    };
    let Some(index) = FIELDS.iter().position(|(field, _)| *field == key) else {
        return Ok(None);
    };
    let mut tokens = rest.split_ascii_whitespace();
    let value = tokens
        .next()
        .ok_or_else(|| format!("{key}: value missing"))?;
    let value = parse_u64(value, key)?;
    let bytes = match tokens.next() {
        None => value as f64,
        Some("kB") => value as f64 * 1024.0,
        Some(unit) => return Err(format!("{key}: unknown unit {:?}", super::clip(unit))),
    };
    Ok(Some((index, bytes)))
}

#[derive(Debug)]
pub(super) struct Memory {
    meminfo: Source,
}

impl Memory {
    pub(super) fn new(proc_root: &Path) -> Self {
        Self {
            meminfo: Source::new(proc_root.join("meminfo")),
        }
    }

    pub(super) fn collect(
        &mut self,
        buf: &mut Vec<u8>,
        out: &mut Emitter,
        errors: &mut Vec<CollectError>,
    ) {
        let Some(text) = self.meminfo.read_or_report(buf, "Memory", errors) else {
            return;
        };
        let mut bad = BadLines::default();
        let mut seen_total = false;
        for field in parse_meminfo(&text) {
            match field {
                Ok((index, value)) => {
                    seen_total |= index == 0;
                    FIELDS[index].1.emit(out, &[], value);
                }
                Err(e) => bad.push(e),
            }
        }
        if !seen_total {
            bad.push(ParseError {
                line: 0,
                detail: "no MemTotal line".into(),
            });
        }
        bad.report(&self.meminfo.path, errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "\
MemTotal:       24668920 kB
MemFree:        19412316 kB
MemAvailable:   22923344 kB
Buffers:          120760 kB
Cached:          3300184 kB
SwapCached:            0 kB
SwapTotal:             0 kB
SwapFree:              0 kB
Dirty:               148 kB
Writeback:             0 kB
Shmem:             16208 kB
Slab:             326452 kB
SReclaimable:     265804 kB
CommitLimit:    12334460 kB
Committed_AS:    1402712 kB
HugePages_Total:      64
HugePages_Free:       60
Hugepagesize:       2048 kB
DirectMap1G:    23068672 kB
";

    fn value(text: &str, field: &str) -> Option<f64> {
        let want = FIELDS.iter().position(|(f, _)| *f == field).unwrap();
        parse_meminfo(text)
            .map(Result::unwrap)
            .find(|&(i, _)| i == want)
            .map(|(_, v)| v)
    }

    #[test]
    fn converts_kb_to_bytes_and_keeps_page_counts() {
        assert_eq!(parse_meminfo(MEMINFO).count(), 17);
        assert_eq!(value(MEMINFO, "MemTotal"), Some(24_668_920.0 * 1024.0));
        assert_eq!(value(MEMINFO, "Committed_AS"), Some(1_402_712.0 * 1024.0));
        assert_eq!(value(MEMINFO, "HugePages_Total"), Some(64.0));
        assert_eq!(value(MEMINFO, "HugePages_Free"), Some(60.0));
        assert_eq!(value(MEMINFO, "Hugepagesize"), Some(2048.0 * 1024.0));
        // SwapCached and DirectMap1G are not reported; names match exactly, not by prefix.
        assert_eq!(
            value("SwapCached: 5 kB\nMemTotalX: 3 kB\n", "SwapTotal"),
            None
        );
    }

    #[test]
    fn old_kernel_without_memavailable() {
        let text = "MemTotal: 1024 kB\nMemFree: 512 kB\n";
        assert_eq!(value(text, "MemAvailable"), None);
        assert_eq!(value(text, "MemFree"), Some(524_288.0));
    }

    #[test]
    fn huge_values_survive() {
        let v = value("MemTotal: 18446744073709551615 kB\n", "MemTotal").unwrap();
        assert_eq!(v, u64::MAX as f64 * 1024.0);
    }

    #[test]
    fn bad_lines_name_the_line() {
        let text = "MemTotal: 10 kB\nMemFree: lots kB\nCached: 1 MB\nBuffers:\ngarbage\nUnknownField: ??\n";
        let errs: Vec<_> = parse_meminfo(text).filter_map(Result::err).collect();
        assert_eq!(
            errs.iter().map(|e| e.line).collect::<Vec<_>>(),
            [2, 3, 4, 5]
        );
        assert!(errs[0].detail.contains("MemFree"), "{}", errs[0]);
        assert!(errs[1].detail.contains("unit"), "{}", errs[1]);
    }

    #[test]
    fn emits_every_field_and_flags_missing_memtotal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meminfo"), MEMINFO).unwrap();
        let mut mem = Memory::new(dir.path());
        let (mut buf, mut out, mut errors) = (Vec::new(), Emitter::new(), Vec::new());
        mem.collect(&mut buf, &mut out, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<_> = out.samples().iter().map(|s| s.name.as_str()).collect();
        for (_, metric) in FIELDS {
            assert!(names.contains(&metric.name), "{} missing", metric.name);
        }

        std::fs::write(dir.path().join("meminfo"), "MemFree: 1 kB\n").unwrap();
        let mut out = Emitter::new();
        mem.collect(&mut buf, &mut out, &mut errors);
        assert_eq!(out.len(), 1);
        assert!(
            errors[0].to_string().contains("no MemTotal"),
            "{}",
            errors[0]
        );
    }
}
