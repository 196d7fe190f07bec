//! Users: accounts of the API (and of Grafana, later).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{FromRow, PgConnection, PgPool};

use crate::auth::Role;

/// A user as the API shows it (no hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub role: Role,
    /// A disabled user cannot sign in; their tokens stop working at once.
    pub is_active: bool,
    /// RFC 3339.
    pub last_login_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, FromRow)]
struct UserRow {
    id: i64,
    username: String,
    email: Option<String>,
    full_name: Option<String>,
    role: String,
    is_active: bool,
    last_login_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const USER_COLUMNS: &str =
    "id, username, email, full_name, role, is_active, last_login_at, created_at, updated_at";

impl From<UserRow> for User {
    fn from(r: UserRow) -> User {
        User {
            id: r.id,
            username: r.username,
            email: r.email,
            full_name: r.full_name,
            // The table's check constraint allows only the three roles.
            role: r.role.parse().unwrap_or(Role::Viewer),
            is_active: r.is_active,
            last_login_at: super::rfc3339_opt(r.last_login_at),
            created_at: super::rfc3339(r.created_at),
            updated_at: super::rfc3339(r.updated_at),
        }
    }
}

impl User {
    /// The fields an audit entry records (no secret).
    pub fn audit_view(&self) -> Value {
        json!({
            "username": self.username,
            "email": self.email,
            "full_name": self.full_name,
            "role": self.role,
            "is_active": self.is_active,
        })
    }
}

/// What a login needs.
#[derive(Debug, Clone, FromRow)]
pub struct Credentials {
    pub id: i64,
    pub username: String,
    pub role: String,
    pub is_active: bool,
    pub password_hash: Option<String>,
}

/// The caller as resolved on every request: role and state as of now.
#[derive(Debug, Clone, FromRow)]
pub struct Principal {
    pub id: i64,
    pub username: String,
    pub role: String,
    pub is_active: bool,
}

/// A new user.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: Option<&'a str>,
    pub full_name: Option<&'a str>,
    pub role: Role,
    pub password_hash: &'a str,
}

pub async fn create(conn: &mut PgConnection, u: &NewUser<'_>) -> Result<User, sqlx::Error> {
    let row: UserRow = sqlx::query_as(&format!(
        "INSERT INTO users (username, email, full_name, role, password_hash, password_changed_at) \
         VALUES ($1, $2, $3, $4, $5, now()) RETURNING {USER_COLUMNS}"
    ))
    .bind(u.username)
    .bind(u.email)
    .bind(u.full_name)
    .bind(u.role.as_str())
    .bind(u.password_hash)
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

pub async fn get(conn: &mut PgConnection, id: i64) -> Result<Option<User>, sqlx::Error> {
    let row: Option<UserRow> =
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(User::from))
}

/// The row locked for an update in the caller's transaction.
pub async fn get_for_update(conn: &mut PgConnection, id: i64) -> Result<Option<User>, sqlx::Error> {
    let row: Option<UserRow> = sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(User::from))
}

/// Users ordered by id, after `after_id`.
pub async fn list(pool: &PgPool, after_id: i64, limit: i64) -> Result<Vec<User>, sqlx::Error> {
    let rows: Vec<UserRow> = sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(after_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(User::from).collect())
}

/// The credentials of `username` (case-sensitive), for a login.
pub async fn credentials(
    pool: &PgPool,
    username: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, username, role, is_active, password_hash FROM users WHERE username = $1",
    )
    .bind(username)
    .fetch_optional(pool)
    .await
}

/// The user behind an access token, as of now.
pub async fn principal(pool: &PgPool, id: i64) -> Result<Option<Principal>, sqlx::Error> {
    sqlx::query_as("SELECT id, username, role, is_active FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// A successful login: last login time, and the new hash when rehashed.
pub async fn record_login(
    conn: &mut PgConnection,
    id: i64,
    new_hash: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET last_login_at = now(), password_hash = coalesce($2, password_hash) \
         WHERE id = $1",
    )
    .bind(id)
    .bind(new_hash)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_password(conn: &mut PgConnection, id: i64, hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET password_hash = $2, password_changed_at = now() WHERE id = $1")
        .bind(id)
        .bind(hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// Fields an admin may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    pub email: Option<Option<String>>,
    pub full_name: Option<Option<String>>,
    pub role: Option<Role>,
    pub is_active: Option<bool>,
}

pub async fn update(
    conn: &mut PgConnection,
    id: i64,
    p: &Patch,
) -> Result<Option<User>, sqlx::Error> {
    let row: Option<UserRow> = sqlx::query_as(&format!(
        "UPDATE users SET \
           email = CASE WHEN $2 THEN $3 ELSE email END, \
           full_name = CASE WHEN $4 THEN $5 ELSE full_name END, \
           role = coalesce($6, role), \
           is_active = coalesce($7, is_active) \
         WHERE id = $1 RETURNING {USER_COLUMNS}"
    ))
    .bind(id)
    .bind(p.email.is_some())
    .bind(p.email.clone().flatten())
    .bind(p.full_name.is_some())
    .bind(p.full_name.clone().flatten())
    .bind(p.role.map(Role::as_str))
    .bind(p.is_active)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(User::from))
}

pub async fn delete(conn: &mut PgConnection, id: i64) -> Result<bool, sqlx::Error> {
    let n = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n > 0)
}

/// Active admins other than `except`, locking them, so that two concurrent
/// demotions cannot leave no admin.
pub async fn other_active_admins(conn: &mut PgConnection, except: i64) -> Result<i64, sqlx::Error> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM users WHERE role = 'admin' AND is_active AND id <> $1 FOR UPDATE",
    )
    .bind(except)
    .fetch_all(conn)
    .await?;
    Ok(ids.len() as i64)
}
