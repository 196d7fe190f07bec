//! API tokens and refresh tokens. Only SHA-256 digests of the secrets are stored.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{FromRow, PgConnection, PgPool};

/// An API token as the API lists it (never the secret or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    /// Revokes the token without knowing it.
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    pub name: String,
    /// The token's first characters, to recognise it.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
    /// To the minute.
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    pub created_at: String,
}

#[derive(Debug, FromRow)]
struct TokenRow {
    id: i64,
    user_id: i64,
    username: String,
    name: String,
    prefix: String,
    scopes: Vec<String>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl From<TokenRow> for ApiToken {
    fn from(r: TokenRow) -> Self {
        ApiToken {
            id: r.id,
            user_id: r.user_id,
            username: r.username,
            name: r.name,
            prefix: r.prefix,
            scopes: r.scopes,
            expires_at: super::rfc3339_opt(r.expires_at),
            last_used_at: super::rfc3339_opt(r.last_used_at),
            revoked_at: super::rfc3339_opt(r.revoked_at),
            created_at: super::rfc3339(r.created_at),
        }
    }
}

impl ApiToken {
    /// What the audit log records of a token.
    pub fn audit_view(&self) -> Value {
        json!({
            "user_id": self.user_id,
            "name": self.name,
            "prefix": self.prefix,
            "scopes": self.scopes,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
        })
    }
}

const SELECT: &str = "SELECT t.id, t.user_id, u.username, t.name, t.prefix, t.scopes, t.expires_at, \
                      t.last_used_at, t.revoked_at, t.created_at \
                      FROM api_tokens t JOIN users u ON u.id = t.user_id";

/// A new token row.
#[derive(Debug, Clone)]
pub struct NewApiToken<'a> {
    pub user_id: i64,
    pub name: &'a str,
    pub prefix: &'a str,
    pub digest: &'a [u8],
    pub scopes: &'a [String],
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn create_api_token(
    conn: &mut PgConnection,
    t: &NewApiToken<'_>,
) -> Result<ApiToken, sqlx::Error> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api_tokens (user_id, name, prefix, token_hash, scopes, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(t.user_id)
    .bind(t.name)
    .bind(t.prefix)
    .bind(t.digest)
    .bind(t.scopes)
    .bind(t.expires_at)
    .fetch_one(&mut *conn)
    .await?;
    let row: TokenRow = sqlx::query_as(&format!("{SELECT} WHERE t.id = $1"))
        .bind(id)
        .fetch_one(conn)
        .await?;
    Ok(row.into())
}

/// Tokens of one user (`Some`) or of everyone, by id.
pub async fn list_api_tokens(
    pool: &PgPool,
    user_id: Option<i64>,
    after_id: i64,
    limit: i64,
) -> Result<Vec<ApiToken>, sqlx::Error> {
    let rows: Vec<TokenRow> = sqlx::query_as(&format!(
        "{SELECT} WHERE ($1::bigint IS NULL OR t.user_id = $1) AND t.id > $2 ORDER BY t.id LIMIT $3"
    ))
    .bind(user_id)
    .bind(after_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(ApiToken::from).collect())
}

/// The token with `id`, locked, limited to `user_id`'s when given.
pub async fn api_token_for_update(
    conn: &mut PgConnection,
    id: i64,
    user_id: Option<i64>,
) -> Result<Option<ApiToken>, sqlx::Error> {
    let row: Option<TokenRow> = sqlx::query_as(&format!(
        "{SELECT} WHERE t.id = $1 AND ($2::bigint IS NULL OR t.user_id = $2) FOR UPDATE OF t"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(ApiToken::from))
}

/// Revokes a token; returns it as it is now.
pub async fn revoke_api_token(
    conn: &mut PgConnection,
    id: i64,
) -> Result<Option<ApiToken>, sqlx::Error> {
    sqlx::query("UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let row: Option<TokenRow> = sqlx::query_as(&format!("{SELECT} WHERE t.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(ApiToken::from))
}

/// What authenticating with an API token needs: the token's state and its
/// owner's, as of now.
#[derive(Debug, Clone, FromRow)]
pub struct TokenPrincipal {
    pub token_id: i64,
    pub token_hash: Vec<u8>,
    pub scopes: Vec<String>,
    pub expired: bool,
    pub revoked: bool,
    pub user_id: i64,
    pub username: String,
    pub role: String,
    pub is_active: bool,
}

pub async fn api_token_principal(
    pool: &PgPool,
    digest: &[u8],
) -> Result<Option<TokenPrincipal>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.id AS token_id, t.token_hash, t.scopes, \
                coalesce(t.expires_at <= now(), false) AS expired, \
                t.revoked_at IS NOT NULL AS revoked, \
                u.id AS user_id, u.username, u.role, u.is_active \
         FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
    )
    .bind(digest)
    .fetch_optional(pool)
    .await
}

/// Records a use of the token (callers do it at most once a minute per token).
pub async fn touch_api_token(pool: &PgPool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE api_tokens SET last_used_at = now() WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Revokes every refresh token of a user (disabled, demoted, password changed).
pub async fn revoke_user_refresh_tokens(
    conn: &mut PgConnection,
    user_id: i64,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .execute(conn)
    .await?
    .rows_affected())
}

/// A stored refresh token.
#[derive(Debug, Clone, FromRow)]
pub struct RefreshRow {
    pub id: i64,
    pub user_id: i64,
    pub family_id: i64,
    pub token_hash: Vec<u8>,
    pub used: bool,
    pub revoked: bool,
    pub expired: bool,
}

/// Reserves the id of a new refresh token (its JWT carries it as `jti`).
pub async fn next_refresh_id(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence('refresh_tokens', 'id'))")
        .fetch_one(conn)
        .await
}

/// Stores a refresh token under a reserved id. `family_id` is `id` for a login.
pub async fn insert_refresh(
    conn: &mut PgConnection,
    id: i64,
    user_id: i64,
    family_id: i64,
    digest: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at) \
         OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(user_id)
    .bind(family_id)
    .bind(digest)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The refresh token `id`, locked for its rotation.
pub async fn refresh_for_update(
    conn: &mut PgConnection,
    id: i64,
) -> Result<Option<RefreshRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, user_id, family_id, token_hash, used_at IS NOT NULL AS used, \
                revoked_at IS NOT NULL AS revoked, expires_at <= now() AS expired \
         FROM refresh_tokens WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn mark_refresh_used(conn: &mut PgConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Revokes every token of a family; returns how many were still live.
pub async fn revoke_family(conn: &mut PgConnection, family_id: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family_id)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Drops refresh tokens expired for a day (housekeeping).
pub async fn purge_expired_refresh(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < now() - interval '1 day'")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
