//! The audit log: append inside the caller's transaction; read; verify the chain.
//!
//! The database sets each entry's position (`seq`), time and hashes in its insert
//! trigger (migrations/0010_api.sql): `hash = SHA-256(prev_hash ||
//! pga_audit_canonical(row))`. [`verify`] walks the log in `seq` order, recomputes
//! every hash here (SHA-256 in Rust over the canonical text) and names the first
//! entry that was altered, deleted or inserted out of order.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Row};

/// Who acted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub token_id: Option<i64>,
    pub role: Option<String>,
}

/// Where a request came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub source: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Refused: wrong credentials, invalid token, throttled.
    Failure,
    /// Authenticated but not allowed.
    Denied,
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// One entry to append.
#[derive(Debug, Clone)]
pub struct Entry {
    pub actor: Actor,
    pub action: &'static str,
    pub resource_type: Option<&'static str>,
    pub resource_id: Option<String>,
    /// The changed fields before and after (never a secret or a hash).
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub outcome: Outcome,
    /// A short reason (`bad_password`, `expired`, …).
    pub detail: Option<String>,
}

impl Entry {
    pub fn new(action: &'static str, outcome: Outcome) -> Entry {
        Entry {
            actor: Actor::default(),
            action,
            resource_type: None,
            resource_id: None,
            before: None,
            after: None,
            outcome,
            detail: None,
        }
    }

    pub fn actor(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }

    pub fn resource(mut self, kind: &'static str, id: impl ToString) -> Self {
        self.resource_type = Some(kind);
        self.resource_id = Some(id.to_string());
        self
    }

    pub fn change(mut self, before: Option<Value>, after: Option<Value>) -> Self {
        self.before = before;
        self.after = after;
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// Appends `entry` on `conn` (inside the caller's transaction); returns its seq.
pub async fn append(
    conn: &mut PgConnection,
    origin: &Origin,
    entry: &Entry,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO audit_log (seq, at, actor_user_id, actor_username, actor_token_id, \
         actor_role, action, resource_type, resource_id, before, after, source_addr, \
         user_agent, request_id, result, detail, prev_hash, hash) \
         VALUES (0, now(), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10::inet, $11, $12, $13, $14, \
         ''::bytea, ''::bytea) RETURNING seq",
    )
    .bind(entry.actor.user_id)
    .bind(&entry.actor.username)
    .bind(entry.actor.token_id)
    .bind(&entry.actor.role)
    .bind(entry.action)
    .bind(entry.resource_type)
    .bind(&entry.resource_id)
    .bind(&entry.before)
    .bind(&entry.after)
    .bind(origin.source.map(|a| a.to_string()))
    .bind(&origin.user_agent)
    .bind(&origin.request_id)
    .bind(entry.outcome.as_str())
    .bind(&entry.detail)
    .fetch_one(conn)
    .await
}

/// Appends one entry in its own transaction (authentication events that change
/// nothing else: a refused token, a failed login).
pub async fn append_alone(
    pool: &PgPool,
    origin: &Origin,
    entry: &Entry,
) -> Result<i64, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    append(&mut conn, origin, entry).await
}

/// One stored entry.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct StoredEntry {
    pub id: i64,
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When it was written (RFC 3339).
    pub at: String,
    pub actor_user_id: Option<i64>,
    pub actor_username: Option<String>,
    pub actor_token_id: Option<i64>,
    pub actor_role: Option<String>,
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub source_addr: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// `success`, `failure` or `denied`.
    pub result: String,
    pub detail: Option<String>,
    /// SHA-256 of the previous entry's hash and this entry, hex.
    pub hash: String,
}

/// Filters of [`list`].
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub after_seq: i64,
    pub limit: i64,
    pub action: Option<String>,
    pub actor_user_id: Option<i64>,
}

/// Entries after `after_seq`, oldest first.
pub async fn list(pool: &PgPool, f: &ListFilter) -> Result<Vec<StoredEntry>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, seq, at, actor_user_id, actor_username, actor_token_id, actor_role, action, \
         resource_type, resource_id, before, after, host(source_addr) AS source_addr, user_agent, \
         request_id, result, detail, hash \
         FROM audit_log WHERE seq > $1 AND ($3::text IS NULL OR action = $3) \
         AND ($4::bigint IS NULL OR actor_user_id = $4) ORDER BY seq LIMIT $2",
    )
    .bind(f.after_seq)
    .bind(f.limit)
    .bind(&f.action)
    .bind(f.actor_user_id)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(StoredEntry {
                id: r.try_get("id")?,
                seq: r.try_get("seq")?,
                at: super::rfc3339(r.try_get::<DateTime<Utc>, _>("at")?),
                actor_user_id: r.try_get("actor_user_id")?,
                actor_username: r.try_get("actor_username")?,
                actor_token_id: r.try_get("actor_token_id")?,
                actor_role: r.try_get("actor_role")?,
                action: r.try_get("action")?,
                resource_type: r.try_get("resource_type")?,
                resource_id: r.try_get("resource_id")?,
                before: r.try_get("before")?,
                after: r.try_get("after")?,
                source_addr: r.try_get("source_addr")?,
                user_agent: r.try_get("user_agent")?,
                request_id: r.try_get("request_id")?,
                result: r.try_get("result")?,
                detail: r.try_get("detail")?,
                hash: hex(&r.try_get::<Vec<u8>, _>("hash")?),
            })
        })
        .collect()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// What is wrong with the chain at the first bad entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// The entry's content or hash no longer matches its hash.
    Altered { seq: i64, id: i64 },
    /// Entries are missing before this one (deleted).
    Missing {
        expected_seq: i64,
        found_seq: i64,
        id: i64,
    },
    /// The entry does not follow the one before it (its prev_hash is another
    /// entry's hash: moved, or inserted out of order).
    OutOfOrder { seq: i64, id: i64 },
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Break::Altered { seq, id } => write!(
                f,
                "entry seq {seq} (id {id}) was altered or moved: its content does not match its hash"
            ),
            Break::Missing {
                expected_seq,
                found_seq,
                id,
            } => write!(
                f,
                "entries deleted: seq {expected_seq} to {} are missing before seq {found_seq} (id {id})",
                found_seq - 1
            ),
            Break::OutOfOrder { seq, id } => write!(
                f,
                "entry seq {seq} (id {id}) is out of order: it does not chain to the entry before it"
            ),
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Entries checked (up to the first break).
    pub entries: u64,
    /// Hash of the last good entry, hex (all zeros for an empty log).
    pub head: String,
    pub last_seq: i64,
    /// The first break, if any.
    pub first_break: Option<Break>,
}

/// Walks the whole chain.
pub async fn verify(pool: &PgPool) -> Result<Verification, sqlx::Error> {
    let mut rows = sqlx::query(
        "SELECT id, seq, prev_hash, hash, pga_audit_canonical(a) AS canonical \
         FROM audit_log a ORDER BY seq, id",
    )
    .fetch(pool);
    let mut prev = vec![0u8; 32];
    let mut v = Verification {
        entries: 0,
        head: hex(&prev),
        last_seq: 0,
        first_break: None,
    };
    while let Some(row) = rows.try_next().await? {
        let id: i64 = row.try_get("id")?;
        let seq: i64 = row.try_get("seq")?;
        let prev_hash: Vec<u8> = row.try_get("prev_hash")?;
        let hash: Vec<u8> = row.try_get("hash")?;
        let canonical: String = row.try_get("canonical")?;
        let mut h = Sha256::new();
        h.update(&prev_hash);
        h.update(canonical.as_bytes());
        let computed = h.finalize().to_vec();
        let brk = if computed != hash {
            Some(Break::Altered { seq, id })
        } else if seq > v.last_seq + 1 {
            Some(Break::Missing {
                expected_seq: v.last_seq + 1,
                found_seq: seq,
                id,
            })
        } else if seq != v.last_seq + 1 || prev_hash != prev {
            Some(Break::OutOfOrder { seq, id })
        } else {
            None
        };
        if brk.is_some() {
            v.first_break = brk;
            return Ok(v);
        }
        prev = hash;
        v.entries += 1;
        v.last_seq = seq;
        v.head = hex(&prev);
    }
    Ok(v)
}
