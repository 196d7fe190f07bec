//! Network traffic per interface from `/proc/net/dev`.

use std::path::Path;

use super::{BadLines, Metric, ParseError, Source, fill_u64, parse_lines};
use crate::collect::{CollectError, Emitter};

/// Header lines at the top of `/proc/net/dev`.
const HEADER_LINES: usize = 2;
/// Counters per interface: 8 receive, then 8 transmit.
const FIELDS: usize = 16;
/// Where the transmit counters start.
const TRANSMIT: usize = 8;

/// The reported counters by position (receive side; transmit is `TRANSMIT` further).
const STATS: [(usize, Metric); 8] = [
    (
        0,
        Metric::counter(
            "node_network_receive_bytes_total",
            "Bytes received by the interface.",
            "bytes",
        ),
    ),
    (
        1,
        Metric::counter(
            "node_network_receive_packets_total",
            "Packets received by the interface.",
            "",
        ),
    ),
    (
        2,
        Metric::counter(
            "node_network_receive_errs_total",
            "Receive errors the driver detected on the interface.",
            "",
        ),
    ),
    (
        3,
        Metric::counter(
            "node_network_receive_drop_total",
            "Received packets dropped by the interface, for lack of buffers among other reasons.",
            "",
        ),
    ),
    (
        TRANSMIT,
        Metric::counter(
            "node_network_transmit_bytes_total",
            "Bytes transmitted by the interface.",
            "bytes",
        ),
    ),
    (
        TRANSMIT + 1,
        Metric::counter(
            "node_network_transmit_packets_total",
            "Packets transmitted by the interface.",
            "",
        ),
    ),
    (
        TRANSMIT + 2,
        Metric::counter(
            "node_network_transmit_errs_total",
            "Transmit errors the driver detected on the interface.",
            "",
        ),
    ),
    (
        TRANSMIT + 3,
        Metric::counter(
            "node_network_transmit_drop_total",
            "Packets dropped by the interface before transmission.",
            "",
        ),
    ),
];

/// One interface's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetDev<'a> {
    pub device: &'a str,
    /// The 16 counters in kernel order: bytes, packets, errs, drop, fifo, frame,
    /// compressed, multicast received; bytes, packets, errs, drop, fifo, colls, carrier,
    /// compressed transmitted.
    pub values: [u64; FIELDS],
}

/// Parses `/proc/net/dev`, leaving out the loopback interface.
///
/// The name ends at the last `:` of the line: old kernels print no space between the
/// name and a wide first counter (`eth0:1234567890 …`), and alias-style names may hold
/// a colon themselves.
pub fn parse_net_dev(text: &str) -> impl Iterator<Item = Result<NetDev<'_>, ParseError>> {
    parse_lines(text, HEADER_LINES, parse_net_dev_line)
}

fn parse_net_dev_line(line: &str) -> Result<Option<NetDev<'_>>, String> {
    let Some((name, counters)) = line.rsplit_once(':') else {
        return if line.trim().is_empty() {
            Ok(None)
        } else {
            Err(format!("no ':' in {:?}", super::clip(line)))
        };
    };
    let device = name.trim();
    if device.is_empty() {
        return Err("empty interface name".into());
    }
    if device == "lo" {
        return Ok(None);
    }
    let mut values = [0; FIELDS];
    let n = fill_u64(counters.split_ascii_whitespace(), &mut values)
        .map_err(|e| format!("{device}: {e}"))?;
    if n < FIELDS {
        return Err(format!("{device}: {n} counters, expected {FIELDS}"));
    }
    Ok(Some(NetDev { device, values }))
}

#[derive(Debug)]
pub(super) struct Network {
    net_dev: Source,
}

impl Network {
    pub(super) fn new(proc_root: &Path) -> Self {
        Self {
            net_dev: Source::new(proc_root.join("net/dev")),
        }
    }

    pub(super) fn collect(
        &mut self,
        buf: &mut Vec<u8>,
        out: &mut Emitter,
        errors: &mut Vec<CollectError>,
    ) {
        let Some(text) = self.net_dev.read_or_report(buf, "Network", errors) else {
            return;
        };
        let mut bad = BadLines::default();
        for dev in parse_net_dev(&text) {
            match dev {
                Ok(d) => {
                    let labels = [("device", d.device)];
                    for (index, metric) in &STATS {
                        metric.emit(out, &labels, d.values[*index] as f64);
                    }
                }
                Err(e) => bad.push(e),
            }
        }
        bad.report(&self.net_dev.path, errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
";

    fn parse_all(text: &str) -> Vec<NetDev<'_>> {
        parse_net_dev(text).collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn parses_interfaces_and_skips_lo() {
        let text = format!(
            "{HEADER}    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0\n\
             \x20 eth0: 133688831    8475    1    2    0     0          0         0   620014    5690    3    4    0     0       0          0\n",
        );
        let devs = parse_all(&text);
        assert_eq!(devs.len(), 1);
        assert_eq!(devs[0].device, "eth0");
        assert_eq!(&devs[0].values[..4], &[133_688_831, 8475, 1, 2]);
        assert_eq!(&devs[0].values[8..12], &[620_014, 5690, 3, 4]);
    }

    #[test]
    fn no_space_after_colon_and_colons_in_names() {
        let text = format!(
            "{HEADER}eth0:18446744073709551615 1 0 0 0 0 0 0 5 6 0 0 0 0 0 0\n\
             \x20eth0:1: 10 1 0 0 0 0 0 0 20 2 0 0 0 0 0 0\n\
             veth9a7f@if3: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
        );
        let devs = parse_all(&text);
        let names: Vec<_> = devs.iter().map(|d| d.device).collect();
        assert_eq!(names, ["eth0", "eth0:1", "veth9a7f@if3"]);
        assert_eq!(devs[0].values[0], u64::MAX);
        assert_eq!(devs[1].values[8], 20);
    }

    #[test]
    fn bad_lines_name_the_line() {
        let text = format!(
            "{HEADER}eth0 1 2 3\neth1: 1 2 3\n: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n\
             eth2: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 -16\neth3: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n"
        );
        let results: Vec<_> = parse_net_dev(&text).collect();
        let errs: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(
            errs.iter().map(|e| e.line).collect::<Vec<_>>(),
            [3, 4, 5, 6]
        );
        assert!(errs[1].detail.contains("eth1: 3 counters"), "{}", errs[1]);
        assert!(errs[3].detail.contains("field 16"), "{}", errs[3]);
        assert!(matches!(
            results.last(),
            Some(Ok(NetDev { device: "eth3", .. }))
        ));
    }

    #[test]
    fn emits_eight_counters_per_interface() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("net")).unwrap();
        let body = "  eth0: 100 2 0 0 0 0 0 0 300 4 0 0 0 0 0 0\n    lo: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0\n";
        std::fs::write(dir.path().join("net/dev"), format!("{HEADER}{body}")).unwrap();
        let mut net = Network::new(dir.path());
        let (mut buf, mut out, mut errors) = (Vec::new(), Emitter::new(), Vec::new());
        net.collect(&mut buf, &mut out, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(out.len(), 8);
        let get = |name: &str| out.samples().iter().find(|s| s.name == name).unwrap().value;
        assert_eq!(get("node_network_receive_bytes_total"), 100.0);
        assert_eq!(get("node_network_transmit_bytes_total"), 300.0);
        assert_eq!(get("node_network_transmit_packets_total"), 4.0);
        assert!(
            out.samples()
                .iter()
                .all(|s| s.labels == [("device".to_owned(), "eth0".to_owned())])
        );
    }
}
