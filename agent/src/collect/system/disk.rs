//! Block device I/O from `/proc/diskstats`.
//!
//! A line is `major minor name` and then 11 counters (up to Linux 4.17), 15 (4.18 adds
//! discards) or 17 (5.5 adds flushes). Sectors there are always 512 bytes, whatever the
//! device's own sector size.

use std::path::Path;

use super::{BadLines, Conv, Metric, ParseError, Source, fill_u64, parse_lines, parse_u64};
use crate::collect::{CollectError, Emitter};

/// Devices that are never a database's storage: loop, RAM disks, zram swap, floppies and
/// optical drives.
const SKIPPED_PREFIXES: [&str; 5] = ["loop", "ram", "zram", "fd", "sr"];

/// Counters per line on the kernels this supports; anything longer is a newer kernel's
/// addition and is ignored.
const BASE_FIELDS: usize = 11;
const DISCARD_FIELDS: usize = 15;
const FLUSH_FIELDS: usize = 17;

/// The counters of a line, by position, with their metrics and conversions.
const STATS: [(Metric, Conv); FLUSH_FIELDS] = [
    (
        Metric::counter(
            "node_disk_reads_completed_total",
            "Reads completed successfully.",
            "",
        ),
        Conv::Raw,
    ),
    (
        Metric::counter(
            "node_disk_reads_merged_total",
            "Reads merged with an adjacent read before being issued to the device.",
            "",
        ),
        Conv::Raw,
    ),
    (
        Metric::counter(
            "node_disk_read_bytes_total",
            "Bytes read successfully.",
            "bytes",
        ),
        Conv::Sectors,
    ),
    (
        Metric::counter(
            "node_disk_read_time_seconds_total",
            "Time spent on reads, summed over all reads (overlapping reads each count).",
            "seconds",
        ),
        Conv::Millis,
    ),
    (
        Metric::counter(
            "node_disk_writes_completed_total",
            "Writes completed successfully.",
            "",
        ),
        Conv::Raw,
    ),
    (
        Metric::counter(
            "node_disk_writes_merged_total",
            "Writes merged with an adjacent write before being issued to the device.",
            "",
        ),
        Conv::Raw,
    ),
    (
        Metric::counter(
            "node_disk_written_bytes_total",
            "Bytes written successfully.",
            "bytes",
        ),
        Conv::Sectors,
    ),
    (
        Metric::counter(
            "node_disk_write_time_seconds_total",
            "Time spent on writes, summed over all writes (overlapping writes each count).",
            "seconds",
        ),
        Conv::Millis,
    ),
    (
        Metric::gauge(
            "node_disk_io_now",
            "I/O requests in flight on the device right now.",
            "",
        ),
        Conv::Raw,
    ),
    (
        Metric::counter(
            "node_disk_io_time_seconds_total",
            "Time the device had at least one request in flight (its busy time).",
            "seconds",
        ),
        Conv::Millis,
    ),
    (
        Metric::counter(
            "node_disk_io_time_weighted_seconds_total",
            "Time with requests in flight weighted by their number: the integral of the queue depth.",
            "seconds",
        ),
        Conv::Millis,
    ),
    (
        Metric::counter(
            "node_disk_discards_completed_total",
            "Discards completed successfully.",
            "",
        ),
        Conv::Raw,
    ),
    (
        Metric::counter(
            "node_disk_discards_merged_total",
            "Discards merged with an adjacent discard before being issued to the device.",
            "",
        ),
        Conv::Raw,
    ),
    (
        Metric::counter(
            "node_disk_discarded_sectors_total",
            "512-byte sectors discarded successfully.",
            "",
        ),
        Conv::Raw,
    ),
    (
        Metric::counter(
            "node_disk_discard_time_seconds_total",
            "Time spent on discards, summed over all discards.",
            "seconds",
        ),
        Conv::Millis,
    ),
    (
        Metric::counter(
            "node_disk_flush_requests_total",
            "Cache flush requests completed successfully.",
            "",
        ),
        Conv::Raw,
    ),
    (
        Metric::counter(
            "node_disk_flush_requests_time_seconds_total",
            "Time spent on cache flush requests, summed over all of them.",
            "seconds",
        ),
        Conv::Millis,
    ),
];

/// One device's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskStat<'a> {
    pub device: &'a str,
    /// Counters in kernel order; only the first `fields` are meaningful.
    pub values: [u64; FLUSH_FIELDS],
    /// 11, 15 or 17.
    pub fields: usize,
}

/// Whether `device` is one of the kinds this collector leaves out.
pub fn is_skipped(device: &str) -> bool {
    SKIPPED_PREFIXES.iter().any(|p| device.starts_with(p))
}

/// Parses `/proc/diskstats`, leaving out the devices [`is_skipped`] names.
pub fn parse_diskstats(text: &str) -> impl Iterator<Item = Result<DiskStat<'_>, ParseError>> {
    parse_lines(text, 0, parse_diskstats_line)
}

fn parse_diskstats_line(line: &str) -> Result<Option<DiskStat<'_>>, String> {
    let mut tokens = line.split_ascii_whitespace();
    let (Some(major), Some(minor), Some(device)) = (tokens.next(), tokens.next(), tokens.next())
    else {
        return if line.trim().is_empty() {
            Ok(None)
        } else {
            Err(format!("too few fields in {:?}", super::clip(line)))
        };
    };
    parse_u64(major, "major")?;
    parse_u64(minor, "minor")?;
    if is_skipped(device) {
        return Ok(None);
    }
    let mut values = [0; FLUSH_FIELDS];
    let n = fill_u64(tokens, &mut values).map_err(|e| format!("{device}: {e}"))?;
    let fields = match n {
        BASE_FIELDS | DISCARD_FIELDS => n,
        _ if n >= FLUSH_FIELDS => FLUSH_FIELDS,
        _ => {
            return Err(format!(
                "{device}: {n} counters, expected {BASE_FIELDS}, {DISCARD_FIELDS} or {FLUSH_FIELDS}"
            ));
        }
    };
    Ok(Some(DiskStat {
        device,
        values,
        fields,
    }))
}

#[derive(Debug)]
pub(super) struct Disk {
    diskstats: Source,
}

impl Disk {
    pub(super) fn new(proc_root: &Path) -> Self {
        Self {
            diskstats: Source::new(proc_root.join("diskstats")),
        }
    }

    pub(super) fn collect(
        &mut self,
        buf: &mut Vec<u8>,
        out: &mut Emitter,
        errors: &mut Vec<CollectError>,
    ) {
        let Some(text) = self.diskstats.read_or_report(buf, "Disk I/O", errors) else {
            return;
        };
        let mut bad = BadLines::default();
        for stat in parse_diskstats(&text) {
            match stat {
                Ok(d) => {
                    let labels = [("device", d.device)];
                    for ((metric, conv), &v) in STATS.iter().zip(&d.values).take(d.fields) {
                        metric.emit(out, &labels, conv.apply(v));
                    }
                }
                Err(e) => bad.push(e),
            }
        }
        bad.report(&self.diskstats.path, errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(text: &str) -> Vec<DiskStat<'_>> {
        parse_diskstats(text).collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn parses_14_18_and_20_field_lines() {
        let text = "   8       0 sda 1 2 3 4 5 6 7 8 9 10 11\n\
                    \x20  8       1 sda1 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n\
                    254       0 vda 111539 7440 8644434 298494 13455 41401 12944384 60956 0 16248 361647 9623 27 3946488 2185 256 10\n";
        let disks = parse_all(text);
        assert_eq!(disks.len(), 3);
        assert_eq!((disks[0].device, disks[0].fields), ("sda", 11));
        assert_eq!(&disks[0].values[..11], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(
            (disks[1].device, disks[1].fields, disks[1].values[14]),
            ("sda1", 15, 15)
        );
        assert_eq!((disks[2].device, disks[2].fields), ("vda", 17));
        assert_eq!(disks[2].values[2], 8_644_434);
        assert_eq!(disks[2].values[16], 10);
    }

    #[test]
    fn future_kernels_may_append_counters() {
        let text = "259 0 nvme0n1 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19\n";
        let disks = parse_all(text);
        assert_eq!((disks[0].fields, disks[0].values[16]), (17, 17));
    }

    #[test]
    fn skips_noise_devices_but_keeps_partitions_and_dm() {
        let text = "7 0 loop0 0 0 0 0 0 0 0 0 0 0 0\n1 0 ram0 0 0 0 0 0 0 0 0 0 0 0\n\
                    253 0 zram0 0 0 0 0 0 0 0 0 0 0 0\n2 0 fd0 0 0 0 0 0 0 0 0 0 0 0\n\
                    11 0 sr0 0 0 0 0 0 0 0 0 0 0 0\n8 1 sda1 0 0 0 0 0 0 0 0 0 0 0\n\
                    252 0 dm-0 0 0 0 0 0 0 0 0 0 0 0\n259 1 nvme0n1p1 0 0 0 0 0 0 0 0 0 0 0\n";
        let names: Vec<_> = parse_all(text).iter().map(|d| d.device).collect();
        assert_eq!(names, ["sda1", "dm-0", "nvme0n1p1"]);
    }

    #[test]
    fn huge_counters_stay_ordered_in_bytes() {
        let text = "8 0 sda 18446744073709551615 0 18446744073709551615 0 0 0 0 0 0 0 0\n";
        let d = parse_all(text)[0];
        assert_eq!(d.values[0], u64::MAX);
        assert_eq!(Conv::Sectors.apply(d.values[2]), u64::MAX as f64 * 512.0);
    }

    #[test]
    fn bad_lines_name_the_line() {
        let text = "8 0 sda 1 2 3 4 5 6 7 8 9 10\n\
                    8 1 sda1 1 2 3 4 5 6 7 8 9 10 11 12\n\
                    8 2 sda2 1 2 3 4 5 6 7 8 9 10 x\n\
                    8 3\nx 4 sda4 1 2 3 4 5 6 7 8 9 10 11\n\
                    8 5 sda5 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n\
                    8 6 sda6 1 2 3 4 5 6 7 8 9 10 11\n";
        let results: Vec<_> = parse_diskstats(text).collect();
        let errs: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(
            errs.iter().map(|e| e.line).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6]
        );
        assert!(errs[0].detail.contains("sda: 10 counters"), "{}", errs[0]);
        assert!(errs[2].detail.contains("field 11"), "{}", errs[2]);
        assert!(errs[4].detail.contains("major"), "{}", errs[4]);
        assert!(matches!(
            results.last(),
            Some(Ok(DiskStat { device: "sda6", .. }))
        ));
    }

    #[test]
    fn emits_in_base_units_with_device_label() {
        let dir = tempfile::tempdir().unwrap();
        let text = "254 0 vda 100 7 8 1500 13 41 16 60956 2 16248 361647\n7 0 loop0 1 1 1 1 1 1 1 1 1 1 1\n";
        std::fs::write(dir.path().join("diskstats"), text).unwrap();
        let mut disk = Disk::new(dir.path());
        let (mut buf, mut out, mut errors) = (Vec::new(), Emitter::new(), Vec::new());
        disk.collect(&mut buf, &mut out, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            out.len(),
            11,
            "no discard/flush series on an 11-counter kernel"
        );
        let get = |name: &str| {
            let s = out.samples().iter().find(|s| s.name == name).unwrap();
            assert_eq!(s.labels, [("device".to_owned(), "vda".to_owned())]);
            s.value
        };
        assert_eq!(get("node_disk_read_bytes_total"), 4096.0);
        assert_eq!(get("node_disk_read_time_seconds_total"), 1.5);
        assert_eq!(get("node_disk_written_bytes_total"), 8192.0);
        assert_eq!(get("node_disk_io_now"), 2.0);
        assert_eq!(get("node_disk_io_time_weighted_seconds_total"), 361.647);
    }
}
