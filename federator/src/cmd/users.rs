//! `pga-federator users add|list|set-password`: the API's accounts, administered
//! from the host (the first admin is made this way).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::{UsersCommand, admin_pool as pool, cli_actor, cli_origin, print};
use crate::app::api::hasher;
use crate::auth::{Role, password};
use crate::config::{self, FederatorConfig};
use crate::db::audit::{self, Entry, Outcome};
use crate::db::users::{self, NewUser, User};
use crate::db::{self, tokens};

/// The hash of the given password (checked for strength), or of a generated one,
/// which is returned to be printed once.
fn hash_password(
    cfg: &FederatorConfig,
    username: &str,
    given: Option<String>,
) -> anyhow::Result<(String, Option<String>)> {
    let (pw, generated) = match given {
        Some(p) => {
            password::check_strength(&p, username).map_err(anyhow::Error::msg)?;
            (p, None)
        }
        None => {
            let p = password::generate().context("the OS random source")?;
            (p.clone(), Some(p))
        }
    };
    Ok((hasher(&cfg.api)?.hash(&pw)?, generated))
}

/// `users add`: creates a user; with no password given, generates one and returns
/// it (to be printed once).
pub async fn users_add(
    cfg: &FederatorConfig,
    username: &str,
    role: Role,
    email: Option<&str>,
    full_name: Option<&str>,
    given: Option<String>,
) -> anyhow::Result<(User, Option<String>)> {
    anyhow::ensure!(
        !username.is_empty()
            && username.len() <= 64
            && username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-')),
        "\"{username}\" is not a usable user name: use 1 to 64 letters, digits, '_', '.', '@' or '-'"
    );
    let (hash, generated) = hash_password(cfg, username, given)?;
    let pool = pool(cfg).await?;
    let mut tx = pool.begin().await?;
    let user = users::create(
        &mut tx,
        &NewUser {
            username,
            email,
            full_name,
            role,
            password_hash: &hash,
        },
    )
    .await
    .map_err(|e| {
        if db::is_unique_violation(&e) {
            anyhow::anyhow!("a user named \"{username}\" (or with that e-mail) exists; `pga-federator users set-password {username}` sets a new password")
        } else {
            anyhow::Error::new(e).context("creating the user")
        }
    })?;
    let entry = Entry::new("user.create", Outcome::Success)
        .actor(cli_actor())
        .resource("user", user.id)
        .change(None, Some(user.audit_view()));
    audit::append(&mut tx, &cli_origin(), &entry).await?;
    tx.commit().await?;
    Ok((user, generated))
}

/// `users set-password`: sets a password (generated when none is given) and signs
/// the user's sessions out.
pub async fn users_set_password(
    cfg: &FederatorConfig,
    username: &str,
    given: Option<String>,
) -> anyhow::Result<Option<String>> {
    let (hash, generated) = hash_password(cfg, username, given)?;
    let pool = pool(cfg).await?;
    let creds = users::credentials(&pool, username)
        .await?
        .with_context(|| {
            format!("no user named \"{username}\"; `pga-federator users list` shows them")
        })?;
    let mut tx = pool.begin().await?;
    users::set_password(&mut tx, creds.id, &hash).await?;
    tokens::revoke_user_refresh_tokens(&mut tx, creds.id).await?;
    let entry = Entry::new("user.set_password", Outcome::Success)
        .actor(cli_actor())
        .resource("user", creds.id)
        .change(None, Some(serde_json::json!({"password": "changed"})));
    audit::append(&mut tx, &cli_origin(), &entry).await?;
    tx.commit().await?;
    Ok(generated)
}

/// `users list`.
pub async fn users_list(cfg: &FederatorConfig) -> anyhow::Result<Vec<User>> {
    let pool = pool(cfg).await?;
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = users::list(&pool, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        all.extend(page);
    }
    Ok(all)
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

pub(super) fn main(cmd: UsersCommand, path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let loaded = config::load(path)?;
    super::runtime()?.block_on(users(cmd, &loaded.config))
}

async fn users(cmd: UsersCommand, cfg: &FederatorConfig) -> anyhow::Result<ExitCode> {
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
            let (user, generated) = users_add(
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
            let users = users_list(cfg).await?;
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
            let generated = users_set_password(cfg, &name, given).await?;
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
