//! A running `pga-agent run`: its standard error kept (pga-lab's [`Spawned`]), its
//! data directory known, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use pga_lab::Spawned;

/// Runs `cmd` (a `pga-agent` command line), which must succeed; its standard output
/// as JSON.
pub fn json_of(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub struct Agent {
    process: Spawned,
    /// The agent's `data_dir`.
    pub data: PathBuf,
    /// The directory of its configuration, when the agent owns it.
    pub(super) _dir: Option<tempfile::TempDir>,
}

impl Agent {
    /// Starts the agent on `config` (whose `data_dir` is `data`) with `RUST_LOG`
    /// `filter`; returns at once.
    pub fn spawn(config: &Path, data: &Path, filter: &str) -> Agent {
        let process = Spawned::start(
            Command::new(env!("CARGO_BIN_EXE_pga-agent"))
                .args(["run", "--config"])
                .arg(config)
                .env("RUST_LOG", filter)
                .env("NO_COLOR", "1")
                .stdout(std::process::Stdio::null()),
        )
        .expect("start pga-agent");
        Agent {
            process,
            data: data.to_owned(),
            _dir: None,
        }
    }

    /// Starts the agent on `config` written by [`super::endpoint::config`] (data in
    /// `data/` beside it) and waits until its endpoint listens.
    pub fn start(config: &Path) -> Agent {
        Self::start_logging(
            config,
            "info,pga_agent::store=debug,pga_agent::endpoint=debug",
        )
    }

    /// [`Agent::start`] with its own `RUST_LOG`.
    pub fn start_logging(config: &Path, filter: &str) -> Agent {
        let data = config.parent().unwrap_or(Path::new(".")).join("data");
        let agent = Self::spawn(config, &data, filter);
        agent.wait_log("the endpoint to listen", 30, |l| {
            l.contains("endpoint listening")
        });
        agent
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    pub fn child_mut(&mut self) -> &mut std::process::Child {
        self.process.child_mut()
    }

    /// The agent's log so far.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.process.log_lines()
    }

    pub fn count_log(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.process.count_log(pred)
    }

    /// Waits for a log line matching `pred`; fails the test after `secs`.
    pub fn wait_log(&self, what: &str, secs: u64, pred: impl Fn(&str) -> bool) {
        self.process.wait_log(what, secs, pred);
    }

    /// Passes stored for the system collector so far.
    pub fn system_passes(&self) -> usize {
        self.count_log(|l| l.contains("stored") && l.contains("collector=\"system\""))
    }
}
