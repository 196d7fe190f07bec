//! Commands that administer the API from the host: `users add|list|set-password`,
//! `audit verify`, `keygen`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use sqlx::PgPool;

use crate::api::{hasher, pool_options};
use crate::auth::{Role, password};
use crate::config::FederatorConfig;
use crate::db::audit::{self, Actor, Entry, Origin, Outcome, Verification};
use crate::db::users::{self, NewUser, User};
use crate::db::{self, tokens};

/// The actor of commands run on the host.
fn cli_actor() -> Actor {
    let who = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".to_owned());
    Actor {
        username: Some(format!("cli:{who}")),
        ..Actor::default()
    }
}

fn cli_origin() -> Origin {
    Origin {
        source: None,
        user_agent: Some(format!(
            "pga-federator/{} (command line)",
            env!("CARGO_PKG_VERSION")
        )),
        request_id: None,
    }
}

async fn pool(cfg: &FederatorConfig) -> anyhow::Result<PgPool> {
    let pool = db::connect(&cfg.database.url, &pool_options(cfg, 2)?)
        .await
        .context("connecting to the database (database.url)")?;
    let ready: bool = sqlx::query_scalar(
        "SELECT to_regclass('audit_log') IS NOT NULL AND EXISTS \
         (SELECT FROM information_schema.columns WHERE table_name = 'audit_log' AND column_name = 'hash')",
    )
    .fetch_one(&pool)
    .await
    .context("reading the schema")?;
    anyhow::ensure!(
        ready,
        "the database schema is not up to date: run `pga-federator migrate` first"
    );
    Ok(pool)
}

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

/// `audit verify`.
pub async fn audit_verify(cfg: &FederatorConfig) -> anyhow::Result<Verification> {
    let pool = pool(cfg).await?;
    Ok(audit::verify(&pool).await?)
}

/// `keygen`: 64 random bytes, hex, into a new file readable by its owner only.
pub fn keygen(out: &Path, force: bool) -> anyhow::Result<()> {
    let mut key = [0u8; 64];
    getrandom::getrandom(&mut key).context("the OS random source")?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).mode(0o600);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(out).with_context(|| {
        format!(
            "{}: cannot create it{}",
            out.display(),
            if force { "" } else { " (an existing key is never overwritten without --force: every token signed with it would stop working)" }
        )
    })?;
    writeln!(f, "{}", audit::hex(&key)).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
