//! Sign-in, refresh-token rotation and sign-out.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Client, Json};
use super::state::ApiState;
use crate::auth::jwt::Kind;
use crate::auth::throttle::Key;
use crate::auth::token;
use crate::db::audit::{self, Actor, Entry, Outcome};
use crate::db::{tokens, users};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
}

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.@-]+$")]
    pub username: String,
    #[schema(min_length = 1, max_length = 256)]
    pub password: String,
}

/// A refresh token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[schema(min_length = 1, max_length = 4096)]
    pub refresh_token: String,
}

/// Tokens of a sign-in.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    /// A JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds the access token is valid.
    pub expires_in: i64,
    /// Single use: trade it at /api/v1/auth/refresh for a new pair.
    pub refresh_token: String,
    pub refresh_expires_in: i64,
}

const BAD_CREDENTIALS: &str = "invalid user name or password";

fn throttle_keys(username: &str, client: &Client) -> Vec<Key> {
    let mut keys = vec![Key::Account(username.to_lowercase())];
    if let Some(ip) = client.0.source {
        keys.push(Key::Source(ip));
    }
    keys
}

/// Issues an access token and a refresh token in family `family` (a new family
/// when `None`), storing the refresh token in `conn`'s transaction.
async fn issue(
    state: &ApiState,
    conn: &mut sqlx::PgConnection,
    user_id: i64,
    family: Option<i64>,
) -> Result<TokenPair, ApiError> {
    let now = Utc::now().timestamp();
    let s = &state.settings;
    let refresh_id = tokens::next_refresh_id(conn).await?;
    let family = family.unwrap_or(refresh_id);
    let mut jti = [0u8; 16];
    getrandom::getrandom(&mut jti).map_err(ApiError::internal)?;
    let access = state
        .jwt
        .issue(
            Kind::Access,
            user_id,
            now,
            s.access_ttl_secs,
            audit::hex(&jti),
            None,
        )
        .map_err(ApiError::internal)?;
    let refresh = state
        .jwt
        .issue(
            Kind::Refresh,
            user_id,
            now,
            s.refresh_ttl_secs,
            refresh_id.to_string(),
            Some(family),
        )
        .map_err(ApiError::internal)?;
    let expires = Utc::now() + chrono::Duration::seconds(s.refresh_ttl_secs);
    tokens::insert_refresh(
        conn,
        refresh_id,
        user_id,
        family,
        &token::digest(&refresh),
        expires,
    )
    .await?;
    Ok(TokenPair {
        access_token: access,
        token_type: "Bearer".to_owned(),
        expires_in: s.access_ttl_secs,
        refresh_token: refresh,
        refresh_expires_in: s.refresh_ttl_secs,
    })
}

/// Sign in.
///
/// Failed sign-ins are throttled per account and per source address: after the
/// n-th failure in a row the next attempt waits 2^(n−1) s (up to 15 min) and is
/// answered 429 with `Retry-After` until then, whether the account exists or not.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenPair),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Invalid user name or password", body = ErrorBody),
        (status = 429, description = "Too many failures: wait Retry-After seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Every password-hashing slot is busy", body = ErrorBody),
    ))]
async fn login(
    State(state): State<ApiState>,
    client: Client,
    Json(req): Json<LoginRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    if req.username.is_empty()
        || req.username.len() > 64
        || req.password.is_empty()
        || req.password.len() > 1024
    {
        return Err(ApiError::bad(
            "give a user name (1 to 64 characters) and a password",
        ));
    }
    let keys = throttle_keys(&req.username, &client);
    let attempted = Actor {
        username: Some(req.username.clone()),
        ..Actor::default()
    };
    let wait = state.throttle().check(&keys, Instant::now());
    if let Some(wait) = wait {
        state.metrics.login("throttled");
        let entry = Entry::new("auth.login", Outcome::Failure)
            .actor(attempted)
            .detail("throttled");
        audit::append_alone(&state.pool, &client.0, &entry).await?;
        let secs = wait.as_secs_f64().ceil() as u64;
        return Err(ApiError::TooManyRequests {
            message: format!("too many failed sign-ins; try again in {secs} s"),
            retry_after_secs: secs,
        });
    }
    let creds = users::credentials(&state.pool, &req.username).await?;
    let stored = creds.as_ref().and_then(|c| c.password_hash.clone());
    let password = req.password;
    let (ok, new_hash) = match state
        .hashing(move |h| {
            let ok = h.verify(&password, stored.as_deref());
            let rehash = ok && stored.as_deref().is_some_and(|s| h.needs_rehash(s));
            (ok, if rehash { h.hash(&password).ok() } else { None })
        })
        .await
    {
        Ok(r) => r,
        Err(e) => {
            state.metrics.login("busy");
            return Err(e);
        }
    };
    let active = creds.as_ref().is_some_and(|c| c.is_active);
    let Some(user) = creds.filter(|_| ok && active) else {
        state.throttle().failed(&keys, Instant::now());
        state.metrics.login("bad_credentials");
        let detail = if !ok {
            "bad_credentials"
        } else {
            "user_disabled"
        };
        let entry = Entry::new("auth.login", Outcome::Failure)
            .actor(attempted)
            .detail(detail);
        audit::append_alone(&state.pool, &client.0, &entry).await?;
        return Err(ApiError::Unauthorized(BAD_CREDENTIALS.to_owned()));
    };
    state.throttle().succeeded(&keys);
    let mut tx = state.pool.begin().await?;
    users::record_login(&mut tx, user.id, new_hash.as_deref()).await?;
    let pair = issue(&state, &mut tx, user.id, None).await?;
    let mut entry = Entry::new("auth.login", Outcome::Success).actor(Actor {
        user_id: Some(user.id),
        username: Some(user.username.clone()),
        token_id: None,
        role: Some(user.role.clone()),
    });
    if new_hash.is_some() {
        entry = entry.detail("password rehashed with the current parameters");
    }
    audit::append(&mut tx, &client.0, &entry).await?;
    tx.commit().await?;
    state.metrics.login("success");
    Ok(Json(pair))
}

/// Trades a refresh token for a new access and refresh token.
///
/// Each refresh token works once. Presenting one again (a sign that it was
/// stolen) revokes every refresh token of its sign-in.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenPair),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "The refresh token is not valid, used, revoked or expired", body = ErrorBody),
    ))]
async fn refresh(
    State(state): State<ApiState>,
    client: Client,
    Json(req): Json<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let refused = |reason: &str, actor: Actor| {
        Entry::new("auth.refresh", Outcome::Failure)
            .actor(actor)
            .detail(reason.to_owned())
    };
    let claims = match state.jwt.validate(&req.refresh_token, Kind::Refresh) {
        Ok(c) => c,
        Err(e) => {
            state.metrics.auth_refused(e.reason());
            audit::append_alone(
                &state.pool,
                &client.0,
                &refused(e.reason(), Actor::default()),
            )
            .await?;
            return Err(ApiError::Unauthorized(
                "the refresh token is not valid".to_owned(),
            ));
        }
    };
    let (Ok(id), Ok(user_id)) = (claims.jti.parse::<i64>(), claims.sub.parse::<i64>()) else {
        audit::append_alone(
            &state.pool,
            &client.0,
            &refused("malformed", Actor::default()),
        )
        .await?;
        return Err(ApiError::Unauthorized(
            "the refresh token is not valid".to_owned(),
        ));
    };
    let actor = Actor {
        user_id: Some(user_id),
        ..Actor::default()
    };
    let mut tx = state.pool.begin().await?;
    let row = tokens::refresh_for_update(&mut tx, id).await?;
    let digest = token::digest(&req.refresh_token);
    let Some(row) =
        row.filter(|r| r.user_id == user_id && token::digests_equal(&r.token_hash, &digest))
    else {
        audit::append(&mut tx, &client.0, &refused("unknown_refresh_token", actor)).await?;
        tx.commit().await?;
        return Err(ApiError::Unauthorized(
            "the refresh token is not valid".to_owned(),
        ));
    };
    if row.used {
        let revoked = tokens::revoke_family(&mut tx, row.family_id).await?;
        let entry = Entry::new("auth.refresh_reuse", Outcome::Failure)
            .actor(actor)
            .resource("refresh_family", row.family_id)
            .detail(format!(
                "refresh token reused; family revoked ({revoked} live tokens)"
            ));
        audit::append(&mut tx, &client.0, &entry).await?;
        tx.commit().await?;
        state.metrics.auth_refused("refresh_reuse");
        return Err(ApiError::Unauthorized(
            "this refresh token was already used; every token of this sign-in is now revoked: sign in again"
                .to_owned(),
        ));
    }
    if row.revoked || row.expired {
        let reason = if row.revoked {
            "revoked_refresh_token"
        } else {
            "expired"
        };
        audit::append(&mut tx, &client.0, &refused(reason, actor)).await?;
        tx.commit().await?;
        return Err(ApiError::Unauthorized(
            "the refresh token is no longer valid: sign in again".to_owned(),
        ));
    }
    let principal = users::principal(&state.pool, user_id).await?;
    let Some(p) = principal.filter(|p| p.is_active) else {
        tokens::revoke_family(&mut tx, row.family_id).await?;
        audit::append(&mut tx, &client.0, &refused("user_disabled", actor)).await?;
        tx.commit().await?;
        return Err(ApiError::Unauthorized("the account is disabled".to_owned()));
    };
    tokens::mark_refresh_used(&mut tx, row.id).await?;
    let pair = issue(&state, &mut tx, p.id, Some(row.family_id)).await?;
    let entry = Entry::new("auth.refresh", Outcome::Success)
        .actor(Actor {
            user_id: Some(p.id),
            username: Some(p.username),
            token_id: None,
            role: Some(p.role),
        })
        .resource("refresh_family", row.family_id);
    audit::append(&mut tx, &client.0, &entry).await?;
    tx.commit().await?;
    Ok(Json(pair))
}

/// Signs out: revokes every refresh token of the sign-in. Access tokens already
/// issued expire on their own (15 minutes by default).
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 204, description = "Signed out"),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "The refresh token is not valid", body = ErrorBody),
    ))]
async fn logout(
    State(state): State<ApiState>,
    client: Client,
    Json(req): Json<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    let claims = match state.jwt.validate(&req.refresh_token, Kind::Refresh) {
        Ok(c) => c,
        Err(e) => {
            let entry = Entry::new("auth.logout", Outcome::Failure).detail(e.reason());
            audit::append_alone(&state.pool, &client.0, &entry).await?;
            return Err(ApiError::Unauthorized(
                "the refresh token is not valid".to_owned(),
            ));
        }
    };
    let user_id = claims.sub.parse::<i64>().ok();
    let Some(family) = claims.fam else {
        return Err(ApiError::Unauthorized(
            "the refresh token is not valid".to_owned(),
        ));
    };
    let mut tx = state.pool.begin().await?;
    let revoked = tokens::revoke_family(&mut tx, family).await?;
    let entry = Entry::new("auth.logout", Outcome::Success)
        .actor(Actor {
            user_id,
            ..Actor::default()
        })
        .resource("refresh_family", family)
        .detail(format!("{revoked} refresh tokens revoked"));
    audit::append(&mut tx, &client.0, &entry).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
