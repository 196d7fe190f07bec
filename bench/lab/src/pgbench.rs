//! Load with `pgbench`: what to run and what it reported.

use crate::LabError;

/// How long a pgbench run lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgbenchLength {
    /// `-T`: run for this many seconds.
    DurationSecs(u32),
    /// `-t`: each client runs this many transactions.
    TransactionsPerClient(u32),
}

/// One pgbench run (`pgbench -c clients -j jobs -T|-t … [-R rate] extra_args… db`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgbenchRun {
    /// `-c`: concurrent client sessions.
    pub clients: u32,
    /// `-j`: pgbench worker threads.
    pub jobs: u32,
    /// `-T` or `-t`.
    pub length: PgbenchLength,
    /// `-R`: target transactions per second, throttled; `None` runs flat out.
    pub rate: Option<u32>,
    /// Passed through before the database name, e.g. `["-S"]` (select-only)
    /// or `["-N"]`, `["-f", "script.sql"]`.
    pub extra_args: Vec<String>,
}

impl Default for PgbenchRun {
    /// One client, one job, one second, unthrottled, the built-in TPC-B-like script.
    fn default() -> Self {
        PgbenchRun {
            clients: 1,
            jobs: 1,
            length: PgbenchLength::DurationSecs(1),
            rate: None,
            extra_args: Vec::new(),
        }
    }
}

impl PgbenchRun {
    /// One client running for `secs` seconds.
    pub fn for_secs(secs: u32) -> Self {
        PgbenchRun {
            length: PgbenchLength::DurationSecs(secs),
            ..Self::default()
        }
    }

    pub(crate) fn args(&self) -> Vec<String> {
        let mut args = vec![
            "-c".to_owned(),
            self.clients.to_string(),
            "-j".to_owned(),
            self.jobs.to_string(),
        ];
        match self.length {
            PgbenchLength::DurationSecs(s) => args.extend(["-T".to_owned(), s.to_string()]),
            PgbenchLength::TransactionsPerClient(t) => {
                args.extend(["-t".to_owned(), t.to_string()]);
            }
        }
        if let Some(rate) = self.rate {
            args.extend(["-R".to_owned(), rate.to_string()]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// What a pgbench run reported.
#[derive(Debug, Clone, PartialEq)]
pub struct PgbenchReport {
    /// "number of transactions actually processed".
    pub transactions: u64,
    /// Transactions per second, without the initial connection time.
    pub tps: f64,
    /// pgbench's whole standard output.
    pub stdout: String,
}

impl PgbenchReport {
    pub(crate) fn parse(command: &str, stdout: String) -> Result<Self, LabError> {
        let missing = |what: &str| LabError::Output {
            command: command.to_owned(),
            detail: format!("no {what} line in:\n{}", stdout.trim_end()),
        };
        let transactions = stdout
            .lines()
            .find_map(|l| l.strip_prefix("number of transactions actually processed:"))
            .and_then(|rest| {
                // "1234" with -T, "100/100" with -t.
                let n: String = rest
                    .trim_start()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                n.parse().ok()
            })
            .ok_or_else(|| missing("\"number of transactions actually processed\""))?;
        let tps_lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("tps = ")).collect();
        // PostgreSQL 14+: one line "(without initial connection time)";
        // older: "(including …)" and "(excluding connections establishing)".
        let tps_line = tps_lines
            .iter()
            .find(|l| l.contains("without initial") || l.contains("excluding"))
            .or(tps_lines.first())
            .ok_or_else(|| missing("\"tps = \""))?;
        let tps = tps_line
            .trim_start_matches("tps = ")
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| missing("parsable \"tps = \""))?;
        Ok(PgbenchReport {
            transactions,
            tps,
            stdout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG15: &str = "pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 1
query mode: simple
number of clients: 2
number of threads: 1
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 1234
number of failed transactions: 0 (0.000%)
latency average = 3.241 ms
initial connection time = 4.480 ms
tps = 617.092134 (without initial connection time)
";

    const PG13: &str = "number of transactions actually processed: 100/100
tps = 480.1 (including connections establishing)
tps = 500.5 (excluding connections establishing)
";

    #[test]
    fn parses_pg15_output() {
        let r = PgbenchReport::parse("pgbench", PG15.into()).unwrap();
        assert_eq!(r.transactions, 1234);
        assert!((r.tps - 617.092134).abs() < 1e-9);
    }

    #[test]
    fn parses_older_output_preferring_excluding_connections() {
        let r = PgbenchReport::parse("pgbench", PG13.into()).unwrap();
        assert_eq!(r.transactions, 100);
        assert!((r.tps - 500.5).abs() < 1e-9);
    }

    #[test]
    fn garbage_is_an_error_quoting_the_output() {
        let err = PgbenchReport::parse("pgbench", "hello".into()).unwrap_err();
        assert!(err.to_string().contains("hello"));
    }

    #[test]
    fn args_follow_the_run() {
        let run = PgbenchRun {
            clients: 4,
            jobs: 2,
            length: PgbenchLength::TransactionsPerClient(10),
            rate: Some(50),
            extra_args: vec!["-S".into()],
        };
        assert_eq!(
            run.args(),
            ["-c", "4", "-j", "2", "-t", "10", "-R", "50", "-S"]
        );
    }
}
