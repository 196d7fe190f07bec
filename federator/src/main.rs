use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pga_federator::cli::{AuditCommand, Cli, Command, UsersCommand};
use pga_federator::config::{self, has_errors, render_check};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One message, with its fix where one is known; never a Debug dump or a
            // backtrace, whatever RUST_BACKTRACE says.
            eprintln!("error: {}", pga_federator::cli::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::FormatInfo => print(&pga_format::describe())?,
        Command::Rules { command } => {
            let (text, code) =
                pga_federator::alerting::commands::run(&command, cli.config.as_deref())?;
            print(&text)?;
            return Ok(code);
        }
        Command::CheckConfig => {
            let loaded = config::load(cli.config.as_deref())?;
            let problems = loaded.config.validate();
            print(&render_check(&loaded, &problems))?;
            if has_errors(&problems) {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Keygen { out, force } => {
            pga_federator::admin::keygen(&out, force)?;
            print(&format!(
                "wrote a new token-signing key to {}; set api.jwt_key_file to it\n",
                out.display()
            ))?;
        }
        Command::Users(cmd) => {
            let loaded = config::load(cli.config.as_deref())?;
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            return rt.block_on(users(cmd, &loaded.config));
        }
        Command::Audit(AuditCommand::Verify) => {
            let loaded = config::load(cli.config.as_deref())?;
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let v = rt.block_on(pga_federator::admin::audit_verify(&loaded.config))?;
            return match v.first_break {
                None => {
                    print(&format!(
                        "audit log OK: {} entries chain without a break; head {} (seq {})\n",
                        v.entries, v.head, v.last_seq
                    ))?;
                    Ok(ExitCode::SUCCESS)
                }
                Some(b) => {
                    print(&format!(
                        "audit log BROKEN: {b}\n{} entries before it chain correctly (last good seq {})\n",
                        v.entries, v.last_seq
                    ))?;
                    Ok(ExitCode::FAILURE)
                }
            };
        }
        Command::Migrate | Command::Run => {
            init_tracing();
            let loaded = config::load(cli.config.as_deref())?;
            let problems = loaded.config.validate();
            for p in &problems {
                if p.is_error() {
                    tracing::error!(key = %p.key, fix = %p.fix, "{}", p.message);
                } else {
                    tracing::warn!(key = %p.key, fix = %p.fix, "{}", p.message);
                }
            }
            anyhow::ensure!(
                !has_errors(&problems),
                "{}: the configuration has errors; `pga-federator check-config` lists them",
                loaded.path.display()
            );
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            if matches!(cli.command, Command::Migrate) {
                let report = rt.block_on(pga_federator::run::migrate(&loaded.config))?;
                print(&report)?;
            } else {
                tracing::info!(config = %loaded.path.display(), version = env!("CARGO_PKG_VERSION"), "pga-federator starting");
                rt.block_on(pga_federator::run::run(loaded.config))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads one line (the password) from standard input.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let pw = line.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(!pw.is_empty(), "no password on standard input");
    Ok(pw)
}

async fn users(
    cmd: UsersCommand,
    cfg: &pga_federator::config::FederatorConfig,
) -> anyhow::Result<ExitCode> {
    use pga_federator::admin;
    match cmd {
        UsersCommand::Add {
            name,
            role,
            email,
            full_name,
            password_stdin,
        } => {
            let role = role.parse().map_err(anyhow::Error::msg)?;
            let given = if password_stdin {
                Some(password_from_stdin()?)
            } else {
                None
            };
            let (user, generated) = admin::users_add(
                cfg,
                &name,
                role,
                email.as_deref(),
                full_name.as_deref(),
                given,
            )
            .await?;
            print(&format!(
                "created user {} (id {}, role {})\n",
                user.username, user.id, user.role
            ))?;
            if let Some(p) = generated {
                print(&format!(
                    "password: {p}\n(shown once; change it with PUT /api/v1/me/password)\n"
                ))?;
            }
        }
        UsersCommand::List => {
            let users = admin::users_list(cfg).await?;
            let mut out = format!(
                "{:<6} {:<24} {:<7} {:<8} last login\n",
                "id", "name", "role", "active"
            );
            for u in users {
                out.push_str(&format!(
                    "{:<6} {:<24} {:<7} {:<8} {}\n",
                    u.id,
                    u.username,
                    u.role,
                    u.is_active,
                    u.last_login_at.as_deref().unwrap_or("never")
                ));
            }
            print(&out)?;
        }
        UsersCommand::SetPassword {
            name,
            password_stdin,
        } => {
            let given = if password_stdin {
                Some(password_from_stdin()?)
            } else {
                None
            };
            let generated = admin::users_set_password(cfg, &name, given).await?;
            print(&format!(
                "password of {name} set; their sessions are signed out\n"
            ))?;
            if let Some(p) = generated {
                print(&format!("password: {p}\n(shown once)\n"))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to standard output")
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
