//! The signed-in user: who am I, change my password.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Client, Json};
use super::state::ApiState;
use crate::auth::password;
use crate::auth::throttle::Key;
use crate::db::audit::{self, Entry, Outcome};
use crate::db::users::User;
use crate::db::{tokens, users};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(change_password))
}

/// A password change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[schema(min_length = 1, max_length = 256)]
    pub current_password: String,
    #[schema(min_length = 12, max_length = 256)]
    pub new_password: String,
}

/// The signed-in user.
#[utoipa::path(get, path = "/me", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn me(State(state): State<ApiState>, caller: Caller) -> Result<Json<User>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    users::get(&mut conn, caller.user_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::Unauthorized("the account no longer exists".to_owned()))
}

/// Changes one's own password (a signed-in session, not an API token). Other
/// sessions are signed out; API tokens stay.
#[utoipa::path(put, path = "/me/password", tag = "me", request_body = PasswordChange, security(("bearer" = [])),
    responses((status = 204, description = "Changed"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, description = "Wrong current password, or not a session", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn change_password(
    State(state): State<ApiState>,
    caller: Caller,
    client: Client,
    Json(req): Json<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    password::check_strength(&req.new_password, &caller.username).map_err(ApiError::BadRequest)?;
    let keys = [Key::Account(caller.username.to_lowercase())];
    let wait = state.throttle().check(&keys, Instant::now());
    if let Some(wait) = wait {
        let secs = wait.as_secs_f64().ceil() as u64;
        return Err(ApiError::TooManyRequests {
            message: format!("too many wrong passwords; try again in {secs} s"),
            retry_after_secs: secs,
        });
    }
    let stored = users::credentials(&state.pool, &caller.username)
        .await?
        .and_then(|c| c.password_hash);
    let (current, new) = (req.current_password, req.new_password);
    let (ok, hash) = state
        .hashing(move |h| {
            let ok = h.verify(&current, stored.as_deref());
            (ok, if ok { h.hash(&new).ok() } else { None })
        })
        .await?;
    let Some(hash) = hash.filter(|_| ok) else {
        state.throttle().failed(&keys, Instant::now());
        let entry = Entry::new("user.change_password", Outcome::Failure)
            .actor(caller.actor())
            .resource("user", caller.user_id)
            .detail("bad_current_password");
        audit::append_alone(&state.pool, &client.0, &entry).await?;
        return Err(ApiError::forbidden("the current password is wrong"));
    };
    let mut tx = state.pool.begin().await?;
    users::set_password(&mut tx, caller.user_id, &hash).await?;
    tokens::revoke_user_refresh_tokens(&mut tx, caller.user_id).await?;
    let entry = Entry::new("user.change_password", Outcome::Success)
        .actor(caller.actor())
        .resource("user", caller.user_id)
        .change(None, Some(serde_json::json!({"password": "changed"})));
    audit::append(&mut tx, &client.0, &entry).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
