//! `pga-federator rules check|test|load|list`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::RulesCommand;
use crate::alerting::engine::Settings;
use crate::alerting::rulefile;
use crate::alerting::testing::run_file;
use crate::config::{self, BUILTIN_RULES_DIR, DEFAULT_CONFIG_PATH};

/// Appends one formatted line to a `String`.
macro_rules! push_line {
    ($out:expr, $($arg:tt)*) => {{
        $out.push_str(&format!($($arg)*));
        $out.push('\n');
    }};
}

/// The rule files to use: those given, else the configuration's `alerting.rule_files`
/// (when a configuration is found), else the built-in pack's directory.
fn files_or_configured(
    files: &[PathBuf],
    config_path: Option<&Path>,
) -> anyhow::Result<Vec<PathBuf>> {
    if !files.is_empty() {
        return Ok(files.to_vec());
    }
    let default = Path::new(DEFAULT_CONFIG_PATH);
    if config_path.is_some() || default.exists() {
        let loaded = config::load(config_path)?;
        return Ok(loaded.config.alerting.rule_files);
    }
    Ok(vec![PathBuf::from(BUILTIN_RULES_DIR)])
}

fn missing(paths: &[PathBuf]) -> Option<String> {
    let gone: Vec<String> = paths
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    (!gone.is_empty()).then(|| {
        format!(
            "{} not found; name rule files or directories (e.g. federator/rules in a source \
             tree), or install the pganalytics-federator package for {BUILTIN_RULES_DIR}",
            gone.join(", ")
        )
    })
}

pub(super) fn main(cmd: &RulesCommand, config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (text, code) = run(cmd, config_path)?;
    super::print(&text)?;
    Ok(code)
}

/// Runs a `rules` subcommand; the text to print and the exit code.
pub fn run(cmd: &RulesCommand, config_path: Option<&Path>) -> anyhow::Result<(String, ExitCode)> {
    match cmd {
        RulesCommand::Check { files } => {
            let files = files_or_configured(files, config_path)?;
            if let Some(m) = missing(&files) {
                return Ok((format!("{m}\n"), ExitCode::FAILURE));
            }
            Ok(match rulefile::load_all(&files) {
                Ok(loaded) => {
                    let mut out = String::new();
                    for f in &loaded {
                        push_line!(
                            out,
                            "{}: {} rules, {} tests, {} overrides",
                            f.path.display(),
                            f.rules.len(),
                            f.tests.len(),
                            f.overrides.len()
                        );
                    }
                    let n: usize = loaded.iter().map(|f| f.rules.len()).sum();
                    push_line!(out, "rules OK: {n} rules in {} files", loaded.len());
                    (out, ExitCode::SUCCESS)
                }
                Err(errors) => {
                    let mut out = String::new();
                    for e in &errors {
                        push_line!(out, "{e}");
                    }
                    let n: usize = errors.iter().map(|e| e.problems.len()).sum();
                    push_line!(out, "\n{n} problem(s); nothing was loaded");
                    (out, ExitCode::FAILURE)
                }
            })
        }
        RulesCommand::Test { files } => {
            let files = files_or_configured(files, config_path)?;
            if let Some(m) = missing(&files) {
                return Ok((format!("{m}\n"), ExitCode::FAILURE));
            }
            let loaded = match rulefile::load_all(&files) {
                Ok(l) => l,
                Err(errors) => {
                    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    return Ok((format!("{}\n", text.join("\n")), ExitCode::FAILURE));
                }
            };
            let settings = Settings::default();
            let (mut passed, mut failed) = (0, 0);
            let mut untested = Vec::new();
            let mut out = String::new();
            for f in &loaded {
                push_line!(out, "{}", f.path.display());
                let outcome = run_file(f, &settings);
                for t in &outcome.tests {
                    if t.failures.is_empty() {
                        passed += 1;
                        push_line!(out, "  PASS  {}", t.name);
                    } else {
                        failed += 1;
                        push_line!(out, "  FAIL  {}", t.name);
                        for e in &t.failures {
                            push_line!(out, "        {e}");
                        }
                    }
                }
                untested.extend(outcome.untested);
            }
            if !untested.is_empty() {
                push_line!(
                    out,
                    "\nrules no test expects to fire: {}",
                    untested.join(", ")
                );
            }
            push_line!(
                out,
                "\n{} tests: {passed} passed, {failed} failed",
                passed + failed
            );
            Ok((
                out,
                if failed == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                },
            ))
        }
        RulesCommand::Load => {
            let loaded = config::load(config_path)?;
            let cfg = loaded.config;
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async {
                let pool = crate::app::alerting::pool(&cfg).await?;
                let (files, r) =
                    crate::app::alerting::load_rule_files(&pool, &cfg.alerting).await?;
                let mut out = String::new();
                let n: usize = files.iter().map(|f| f.rules.len()).sum();
                push_line!(out, "{n} rules from {} files", files.len());
                push_line!(out, "added:     {}", list(&r.added));
                push_line!(out, "updated:   {}", list(&r.updated));
                push_line!(out, "removed:   {}", list(&r.removed));
                push_line!(
                    out,
                    "replaced API rules of the same name: {}",
                    list(&r.replaced)
                );
                push_line!(out, "unchanged: {}", r.unchanged);
                Ok((out, ExitCode::SUCCESS))
            })
        }
        RulesCommand::List => {
            let loaded = config::load(config_path)?;
            let cfg = loaded.config;
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async {
                let pool = crate::app::alerting::pool(&cfg).await?;
                let rules = crate::db::rules::list(&pool).await?;
                let mut out = String::new();
                for r in &rules {
                    let s = &r.spec;
                    push_line!(
                        out,
                        "{:<36} {:<8} {:<8} {} {} {}{}\n    {}  [{}]",
                        s.name,
                        s.severity,
                        if s.enabled { "enabled" } else { "disabled" },
                        s.comparison,
                        s.threshold,
                        if s.for_secs > 0 {
                            format!("for {} s", s.for_secs)
                        } else {
                            String::new()
                        },
                        if s.overrides.is_empty() {
                            String::new()
                        } else {
                            format!(", {} override(s)", s.overrides.len())
                        },
                        s.query,
                        r.origin
                    );
                }
                push_line!(out, "{} rules", rules.len());
                Ok((out, ExitCode::SUCCESS))
            })
        }
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(", ")
    }
}
