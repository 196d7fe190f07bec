//! The system collector against this machine's `/proc`, read independently here, and
//! against a fixture tree with a subsystem missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, RwLock};

use pga_agent::collect::system::{SharedPaths, SystemCollector, SystemOptions};
use pga_agent::collect::{CollectError, Collector as _, Emitted, Emitter};
use pga_format::MetricKind;

fn collect(collector: &mut SystemCollector) -> (Vec<Emitted>, Vec<CollectError>) {
    let mut out = Emitter::new();
    let errors = collector.collect(&mut out);
    (out.take(), errors)
}

fn label<'a>(s: &'a Emitted, key: &str) -> Option<&'a str> {
    s.labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The value of the one sample named `name` whose labels include all of `labels`.
fn value(samples: &[Emitted], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<_> = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|&(k, v)| label(s, k) == Some(v)))
        .collect();
    assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
    found[0].value
}

fn names(samples: &[Emitted]) -> BTreeSet<&str> {
    samples.iter().map(|s| s.name.as_str()).collect()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// `/proc/stat` as `key -> numbers`, read independently of the collector.
fn proc_stat() -> BTreeMap<String, Vec<u64>> {
    read("/proc/stat")
        .lines()
        .filter_map(|l| {
            let mut t = l.split_whitespace();
            let key = t.next()?.to_owned();
            Some((key, t.map(|v| v.parse().unwrap()).collect()))
        })
        .collect()
}

/// `/proc/net/dev` as `interface -> 16 counters`.
fn net_dev() -> BTreeMap<String, Vec<u64>> {
    read("/proc/net/dev")
        .lines()
        .skip(2)
        .map(|l| {
            let (name, rest) = l.rsplit_once(':').unwrap();
            (
                name.trim().to_owned(),
                rest.split_whitespace()
                    .map(|v| v.parse().unwrap())
                    .collect(),
            )
        })
        .collect()
}

/// `/proc/diskstats` as `device -> counters`.
fn diskstats() -> BTreeMap<String, Vec<u64>> {
    read("/proc/diskstats")
        .lines()
        .map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            (
                t[2].to_owned(),
                t[3..].iter().map(|v| v.parse().unwrap()).collect(),
            )
        })
        .collect()
}

fn user_hz() -> f64 {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf runs");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn real_collector(paths: Vec<(String, PathBuf)>) -> SystemCollector {
    SystemCollector::new(SystemOptions {
        filesystems: Arc::new(RwLock::new(paths)),
        ..SystemOptions::default()
    })
}

/// On a host without PSI (or in a restricted container) absences are reported; nothing
/// else may fail on a real `/proc`.
fn assert_only_absences(errors: &[CollectError]) {
    for e in errors {
        assert!(
            e.to_string().contains("not available on this host"),
            "unexpected error: {e}"
        );
    }
}

#[test]
fn every_series_is_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = real_collector(vec![("agent_data_dir".into(), dir.path().into())]);
    let (samples, errors) = collect(&mut c);
    assert_only_absences(&errors);
    let mut label_keys: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for s in &samples {
        assert!(s.name.starts_with("node_"), "{}", s.name);
        assert!(
            s.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{}",
            s.name
        );
        assert_eq!(
            s.kind == MetricKind::Counter,
            s.name.ends_with("_total"),
            "{}",
            s.name
        );
        assert!(
            s.help.len() > 15 && s.help.ends_with('.'),
            "{}: help {:?}",
            s.name,
            s.help
        );
        assert!(
            s.value.is_finite() && s.value >= 0.0,
            "{} = {}",
            s.name,
            s.value
        );
        match s.unit {
            "seconds" | "bytes" => {
                assert!(
                    s.name.contains(&format!("_{}", s.unit)),
                    "{} unit {}",
                    s.name,
                    s.unit
                )
            }
            "" => assert!(
                !s.name.contains("_seconds") && !s.name.contains("_bytes"),
                "{}",
                s.name
            ),
            other => panic!("{}: unit {other}", s.name),
        }
        let keys: Vec<&str> = s.labels.iter().map(|(k, _)| k.as_str()).collect();
        let first = label_keys.entry(&s.name).or_insert_with(|| keys.clone());
        assert_eq!(*first, keys, "{}: one label set per metric", s.name);
        assert!(
            seen.insert((&s.name, &s.labels)),
            "duplicate series {} {:?}",
            s.name,
            s.labels
        );
    }
    for expected in [
        "node_cpu_seconds_total",
        "node_cpu_count",
        "node_context_switches_total",
        "node_forks_total",
        "node_procs_running",
        "node_procs_blocked",
        "node_boot_time_seconds",
        "node_memory_MemTotal_bytes",
        "node_load1",
        "node_load5",
        "node_load15",
        "node_network_receive_bytes_total",
        "node_filesystem_size_bytes",
    ] {
        assert!(names(&samples).contains(expected), "{expected} missing");
    }
}

#[test]
fn memory_equals_proc_meminfo() {
    let mut c = real_collector(vec![]);
    let (samples, errors) = collect(&mut c);
    assert_only_absences(&errors);
    let meminfo = read("/proc/meminfo");
    let field = |name: &str| -> u64 {
        let line = meminfo
            .lines()
            .find(|l| l.split(':').next() == Some(name))
            .unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    // Fields that do not move while the test runs.
    for name in ["MemTotal", "SwapTotal", "Hugepagesize"] {
        let got = value(&samples, &format!("node_memory_{name}_bytes"), &[]);
        assert_eq!(got, (field(name) * 1024) as f64, "{name}");
    }
    let pages = value(&samples, "node_memory_HugePages_Total", &[]);
    assert_eq!(pages, field("HugePages_Total") as f64);
    let total = value(&samples, "node_memory_MemTotal_bytes", &[]);
    assert!(value(&samples, "node_memory_MemFree_bytes", &[]) <= total);
}

#[test]
fn cpu_and_process_counters_lie_between_two_independent_reads() {
    let hz = user_hz();
    let mut c = real_collector(vec![]);
    let before = proc_stat();
    let (samples, errors) = collect(&mut c);
    let after = proc_stat();
    assert_only_absences(&errors);

    let cpus: Vec<&String> = before
        .keys()
        .filter(|k| {
            k.len() > 3 && k.starts_with("cpu") && k[3..].bytes().all(|b| b.is_ascii_digit())
        })
        .collect();
    assert_eq!(value(&samples, "node_cpu_count", &[]), cpus.len() as f64);
    let per_cpu = samples
        .iter()
        .filter(|s| s.name == "node_cpu_seconds_total")
        .count();
    assert_eq!(per_cpu, cpus.len() * 8.min(before[cpus[0]].len()));

    let ticks = |cpu: &str, mode: &str| {
        (value(
            &samples,
            "node_cpu_seconds_total",
            &[("cpu", cpu), ("mode", mode)],
        ) * hz)
            .round() as u64
    };
    let modes = [
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    ];
    for key in cpus {
        let cpu = &key[3..];
        for (i, mode) in modes.iter().enumerate() {
            // On tickless kernels an idle CPU's in-progress idle time moves between `idle`
            // and `iowait` as I/O waiters come and go, so each alone may step back; their
            // sum never does.
            if matches!(*mode, "idle" | "iowait") {
                continue;
            }
            let got = ticks(cpu, mode);
            assert!(
                before[key][i] <= got && got <= after[key][i],
                "cpu{cpu} {mode}: {} <= {got} <= {}",
                before[key][i],
                after[key][i]
            );
        }
        let idle = ticks(cpu, "idle") + ticks(cpu, "iowait");
        let (lo, hi) = (
            before[key][3] + before[key][4],
            after[key][3] + after[key][4],
        );
        assert!(
            lo <= idle && idle <= hi,
            "cpu{cpu} idle+iowait: {lo} <= {idle} <= {hi}"
        );
    }

    for (key, name) in [
        ("ctxt", "node_context_switches_total"),
        ("processes", "node_forks_total"),
    ] {
        let got = value(&samples, name, &[]) as u64;
        assert!(
            before[key][0] <= got && got <= after[key][0],
            "{name}: {} <= {got} <= {}",
            before[key][0],
            after[key][0]
        );
    }
    assert_eq!(
        value(&samples, "node_boot_time_seconds", &[]),
        before["btime"][0] as f64
    );
}

#[test]
fn network_counters_lie_between_two_independent_reads() {
    let mut c = real_collector(vec![]);
    let before = net_dev();
    let (samples, errors) = collect(&mut c);
    let after = net_dev();
    assert_only_absences(&errors);

    let devices: BTreeSet<&str> = samples
        .iter()
        .filter(|s| s.name == "node_network_receive_bytes_total")
        .map(|s| label(s, "device").unwrap())
        .collect();
    let expected: BTreeSet<&str> = before
        .keys()
        .map(String::as_str)
        .filter(|d| *d != "lo")
        .collect();
    assert_eq!(devices, expected, "every interface but lo");
    for dev in devices {
        for (i, name) in [
            (0, "node_network_receive_bytes_total"),
            (1, "node_network_receive_packets_total"),
            (8, "node_network_transmit_bytes_total"),
            (9, "node_network_transmit_packets_total"),
        ] {
            let got = value(&samples, name, &[("device", dev)]);
            let (lo, hi) = (before[dev][i] as f64, after[dev][i] as f64);
            assert!(
                lo <= got && got <= hi,
                "{name}{{device={dev}}}: {lo} <= {got} <= {hi}"
            );
        }
    }
}

#[test]
fn disk_counters_lie_between_two_independent_reads() {
    let mut c = real_collector(vec![]);
    let before = diskstats();
    let (samples, errors) = collect(&mut c);
    let after = diskstats();
    assert_only_absences(&errors);

    let devices: BTreeSet<&str> = samples
        .iter()
        .filter(|s| s.name == "node_disk_reads_completed_total")
        .map(|s| label(s, "device").unwrap())
        .collect();
    let noise = ["loop", "ram", "zram", "fd", "sr"];
    let expected: BTreeSet<&str> = before
        .keys()
        .map(String::as_str)
        .filter(|d| !noise.iter().any(|p| d.starts_with(p)))
        .collect();
    assert_eq!(devices, expected);
    for dev in devices {
        let count = |v: u64| v as f64;
        let sectors = |v: u64| v as f64 * 512.0;
        let millis = |v: u64| v as f64 / 1000.0;
        for (i, name, conv) in [
            (
                0,
                "node_disk_reads_completed_total",
                &count as &dyn Fn(u64) -> f64,
            ),
            (2, "node_disk_read_bytes_total", &sectors),
            (4, "node_disk_writes_completed_total", &count),
            (6, "node_disk_written_bytes_total", &sectors),
            (9, "node_disk_io_time_seconds_total", &millis),
            (10, "node_disk_io_time_weighted_seconds_total", &millis),
        ] {
            let got = value(&samples, name, &[("device", dev)]);
            let (lo, hi) = (conv(before[dev][i]), conv(after[dev][i]));
            assert!(
                lo <= got && got <= hi,
                "{name}{{device={dev}}}: {lo} <= {got} <= {hi}"
            );
        }
        let has_flush = before[dev].len() >= 17;
        let flush = samples
            .iter()
            .any(|s| s.name == "node_disk_flush_requests_total" && label(s, "device") == Some(dev));
        assert_eq!(
            flush, has_flush,
            "{dev}: flush series exactly when the kernel reports flushes"
        );
    }
}

#[test]
fn pressure_counters_lie_between_two_independent_reads() {
    if !Path::new("/proc/pressure/io").exists() {
        eprintln!("no PSI on this kernel; covered by the fixture test");
        return;
    }
    let total = |res: &str, kind: &str| -> f64 {
        let text = read(&format!("/proc/pressure/{res}"));
        let line = text.lines().find(|l| l.starts_with(kind)).unwrap();
        line.rsplit_once("total=")
            .unwrap()
            .1
            .trim()
            .parse::<u64>()
            .unwrap() as f64
            / 1e6
    };
    let mut c = real_collector(vec![]);
    let before = [total("io", "some"), total("memory", "full")];
    let (samples, errors) = collect(&mut c);
    let after = [total("io", "some"), total("memory", "full")];
    assert!(errors.is_empty(), "{errors:?}");
    let got = [
        value(&samples, "node_pressure_io_waiting_seconds_total", &[]),
        value(&samples, "node_pressure_memory_stalled_seconds_total", &[]),
    ];
    for i in 0..2 {
        assert!(
            before[i] <= got[i] && got[i] <= after[i],
            "{before:?} {got:?} {after:?}"
        );
    }
}

fn df(path: &Path, field: &str) -> String {
    let out = Command::new("df")
        .args(["-B1", &format!("--output={field}")])
        .arg(path)
        .output()
        .expect("df runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn filesystem_matches_df_and_statvfs() {
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("pg_wal");
    std::fs::create_dir(&wal).unwrap();
    let paths: SharedPaths = Arc::new(RwLock::new(vec![
        ("data_directory".into(), dir.path().into()),
        ("wal_directory".into(), wal.clone()),
    ]));
    let mut c = SystemCollector::new(SystemOptions {
        filesystems: paths.clone(),
        ..SystemOptions::default()
    });
    let (samples, errors) = collect(&mut c);
    assert_only_absences(&errors);

    let st = rustix::fs::statvfs(dir.path()).unwrap();
    for (role, path) in [
        ("data_directory", dir.path()),
        ("wal_directory", wal.as_path()),
    ] {
        let l = [("role", role)];
        let size = value(&samples, "node_filesystem_size_bytes", &l);
        assert_eq!(
            size,
            df(path, "size").parse::<f64>().unwrap(),
            "{role}: size as df says"
        );
        assert_eq!(size, (st.f_blocks * st.f_frsize) as f64);
        assert_eq!(
            value(&samples, "node_filesystem_files", &l),
            st.f_files as f64
        );
        let (avail, free) = (
            value(&samples, "node_filesystem_avail_bytes", &l),
            value(&samples, "node_filesystem_free_bytes", &l),
        );
        assert!(avail <= free && free <= size, "{avail} <= {free} <= {size}");
        assert_eq!(value(&samples, "node_filesystem_readonly", &l), 0.0);
        let s = samples
            .iter()
            .find(|s| s.name == "node_filesystem_size_bytes" && label(s, "role") == Some(role))
            .unwrap();
        assert_eq!(label(s, "path"), path.to_str());
        assert_eq!(label(s, "mountpoint"), Some(df(path, "target").as_str()));
        assert_eq!(label(s, "fstype"), Some(df(path, "fstype").as_str()));
        assert_eq!(label(s, "device"), Some(df(path, "source").as_str()));
    }

    // A tablespace the PostgreSQL collector adds later shows up at the next pass.
    paths
        .write()
        .unwrap()
        .push(("tablespace:fast".into(), wal.clone()));
    let (samples, _) = collect(&mut c);
    let roles: BTreeSet<_> = samples
        .iter()
        .filter(|s| s.name == "node_filesystem_size_bytes")
        .filter_map(|s| label(s, "role"))
        .collect();
    assert_eq!(
        roles,
        BTreeSet::from(["data_directory", "wal_directory", "tablespace:fast"])
    );
}

/// A `/proc` tree with everything the collector reads except `pressure/`.
fn fixture_proc_without_pressure(root: &Path) {
    let files = [
        (
            "stat",
            "cpu  2 0 2 8 0 0 0 0 0 0\ncpu0 1 0 1 4 0 0 0 0 0 0\ncpu1 1 0 1 4 0 0 0 0 0 0\nctxt 10\nbtime 1700000000\nprocesses 5\nprocs_running 1\nprocs_blocked 0\n",
        ),
        (
            "meminfo",
            "MemTotal: 2048 kB\nMemFree: 1024 kB\nMemAvailable: 1536 kB\n",
        ),
        ("loadavg", "0.10 0.20 0.30 1/50 99\n"),
        (
            "diskstats",
            "   8       0 sda 1 0 8 1 1 0 8 1 0 2 2\n   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0\n",
        ),
        (
            "net/dev",
            "Inter-|   Receive\n face |bytes\n    lo: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0\n  eth0: 100 2 0 0 0 0 0 0 200 3 0 0 0 0 0 0\n",
        ),
        ("self/mountinfo", "1 0 8:0 / / rw - ext4 /dev/sda rw\n"),
    ];
    for (name, text) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

#[test]
fn missing_pressure_is_reported_once_and_the_rest_still_emits() {
    let proc_root = tempfile::tempdir().unwrap();
    fixture_proc_without_pressure(proc_root.path());
    let data = tempfile::tempdir().unwrap();
    let mut opts = SystemOptions::new(data.path());
    opts.proc_root = proc_root.path().into();
    let mut c = SystemCollector::new(opts);

    let (first, errors) = collect(&mut c);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let msg = errors[0].to_string();
    assert!(msg.contains("PSI") && msg.contains("pressure"), "{msg}");

    let got = names(&first);
    assert!(!got.iter().any(|n| n.starts_with("node_pressure_")));
    for prefix in [
        "node_cpu_",
        "node_memory_",
        "node_load",
        "node_disk_",
        "node_network_",
        "node_filesystem_",
    ] {
        assert!(
            got.iter().any(|n| n.starts_with(prefix)),
            "{prefix}* missing: {got:?}"
        );
    }
    assert_eq!(
        value(
            &first,
            "node_cpu_seconds_total",
            &[("cpu", "1"), ("mode", "idle")]
        ),
        0.04
    );
    assert_eq!(
        value(&first, "node_memory_MemAvailable_bytes", &[]),
        1536.0 * 1024.0
    );
    assert_eq!(value(&first, "node_load15", &[]), 0.3);
    assert_eq!(
        value(&first, "node_disk_read_bytes_total", &[("device", "sda")]),
        4096.0
    );
    assert_eq!(
        value(
            &first,
            "node_network_transmit_bytes_total",
            &[("device", "eth0")]
        ),
        200.0
    );
    let fs = first
        .iter()
        .find(|s| s.name == "node_filesystem_size_bytes")
        .unwrap();
    assert_eq!(
        (label(fs, "role"), label(fs, "device")),
        (Some("agent_data_dir"), Some("/dev/sda"))
    );

    let (second, errors) = collect(&mut c);
    assert!(errors.is_empty(), "absence is reported once: {errors:?}");
    assert_eq!(names(&second), got);
    assert_eq!(second.len(), first.len());
}

#[test]
fn one_broken_subsystem_does_not_stop_the_others() {
    let proc_root = tempfile::tempdir().unwrap();
    fixture_proc_without_pressure(proc_root.path());
    std::fs::write(proc_root.path().join("loadavg"), "garbage\n").unwrap();
    std::fs::write(
        proc_root.path().join("meminfo"),
        "MemTotal: 2048 kB\nMemFree: x kB\n",
    )
    .unwrap();
    let mut opts = SystemOptions::new(proc_root.path());
    opts.proc_root = proc_root.path().into();
    let mut c = SystemCollector::new(opts);
    let (_, errors) = collect(&mut c);
    assert_eq!(
        errors.len(),
        3,
        "PSI absent, loadavg and meminfo bad: {errors:?}"
    );

    let (samples, errors) = collect(&mut c);
    let msgs: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs.iter()
            .any(|m| m.contains("loadavg") && m.contains("line 1")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("meminfo") && m.contains("line 2")),
        "{msgs:?}"
    );
    let got = names(&samples);
    assert!(
        got.contains("node_memory_MemTotal_bytes"),
        "good lines of a bad file still emit"
    );
    assert!(!got.contains("node_load1"));
    assert!(
        got.contains("node_cpu_count")
            && got.contains("node_disk_io_now")
            && got.contains("node_filesystem_files")
    );
}
