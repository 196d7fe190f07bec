//! Users (admin): list, create, read, change, delete, set a password.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Client, Json, Path, Query};
use super::state::ApiState;
use crate::auth::{Role, password};
use crate::db::audit::{self, Entry, Outcome};
use crate::db::users::User;
use crate::db::{self, tokens, users};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
        .routes(routes!(set_password))
}

/// Paging by id.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IdPage {
    /// Only rows with an id above this one.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Page size, default 100; larger values are capped at 1000.
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

impl IdPage {
    pub fn bounds(&self) -> Result<(i64, i64), ApiError> {
        let after = self.after.unwrap_or(0);
        if after < 0 {
            return Err(ApiError::bad("after must be 0 or more"));
        }
        Ok((after, super::page_limit(self.limit)?))
    }
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub items: Vec<User>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<i64>,
}

/// A new user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Letters, digits, `_`, `.`, `@`, `-`.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.@-]+$")]
    pub username: String,
    pub role: Role,
    /// At least 12 characters; leave it out to have one generated and shown once.
    #[schema(min_length = 12, max_length = 256)]
    pub password: Option<String>,
    #[schema(max_length = 254, pattern = "^[^\\u0000-\\u001F\\u007F]*$")]
    pub email: Option<String>,
    #[schema(max_length = 200, pattern = "^[^\\u0000-\\u001F\\u007F]*$")]
    pub full_name: Option<String>,
}

/// The user made, and the generated password when none was given.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedUser {
    pub user: User,
    /// Shown once.
    pub generated_password: Option<String>,
}

/// Fields to change; leave a field out to keep it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub role: Option<Role>,
    /// `false` disables the account: its sessions and tokens stop at once.
    pub is_active: Option<bool>,
    #[schema(max_length = 254, pattern = "^[^\\u0000-\\u001F\\u007F]*$")]
    pub email: Option<String>,
    #[schema(max_length = 200, pattern = "^[^\\u0000-\\u001F\\u007F]*$")]
    pub full_name: Option<String>,
}

/// A new password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    #[schema(min_length = 12, max_length = 256)]
    pub password: String,
}

/// Checks a user name as the table does.
pub fn check_username(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad(
            "the user name must be 1 to 64 letters, digits, '_', '.', '@' or '-'",
        ))
    }
}

fn check_text(what: &str, v: &Option<String>, max: usize) -> Result<(), ApiError> {
    match v {
        Some(s) if s.chars().count() > max => Err(ApiError::bad(format!(
            "{what} is longer than {max} characters"
        ))),
        Some(s) if s.chars().any(char::is_control) => {
            Err(ApiError::bad(format!("{what} contains control characters")))
        }
        _ => Ok(()),
    }
}

/// Users, by id.
#[utoipa::path(get, path = "/users", tag = "users", params(IdPage), security(("bearer" = [])),
    responses((status = 200, body = UserList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<ApiState>,
    Query(page): Query<IdPage>,
) -> Result<Json<UserList>, ApiError> {
    let (after, limit) = page.bounds()?;
    let items = users::list(&state.pool, after, limit).await?;
    let next_after = (items.len() as i64 == limit)
        .then(|| items.last().map(|u| u.id))
        .flatten();
    Ok(Json(UserList { items, next_after }))
}

/// Creates a user; without a password one is generated and shown once.
#[utoipa::path(post, path = "/users", tag = "users", request_body = CreateUser, security(("bearer" = [])),
    responses((status = 201, body = CreatedUser), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "The user name is taken", body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    client: Client,
    Json(req): Json<CreateUser>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    check_username(&req.username)?;
    check_text("email", &req.email, 254)?;
    check_text("full_name", &req.full_name, 200)?;
    let (password, generated) = match req.password {
        Some(p) => {
            password::check_strength(&p, &req.username).map_err(ApiError::BadRequest)?;
            (p, None)
        }
        None => {
            let p = password::generate().map_err(ApiError::internal)?;
            (p.clone(), Some(p))
        }
    };
    let hash = state
        .hashing(move |h| h.hash(&password))
        .await?
        .map_err(ApiError::internal)?;
    let mut tx = state.pool.begin().await?;
    let user = users::create(
        &mut tx,
        &users::NewUser {
            username: &req.username,
            email: req.email.as_deref(),
            full_name: req.full_name.as_deref(),
            role: req.role,
            password_hash: &hash,
        },
    )
    .await
    .map_err(|e| {
        if db::is_unique_violation(&e) {
            ApiError::conflict(format!(
                "a user named \"{}\" (or with that e-mail) exists",
                req.username
            ))
        } else {
            e.into()
        }
    })?;
    let entry = Entry::new("user.create", Outcome::Success)
        .actor(caller.actor())
        .resource("user", user.id)
        .change(None, Some(user.audit_view()));
    audit::append(&mut tx, &client.0, &entry).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user,
            generated_password: generated,
        }),
    ))
}

/// One user.
#[utoipa::path(get, path = "/users/{id}", tag = "users", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = [])),
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get(State(state): State<ApiState>, Path(id): Path<i64>) -> Result<Json<User>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    users::get(&mut conn, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no user with id {id}")))
}

/// Changes a user. Disabling or demoting takes effect on their next request. You
/// cannot disable or demote yourself, nor leave the federator without an active
/// admin.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", params(("id" = i64, Path, minimum = 1)),
    request_body = UpdateUser, security(("bearer" = [])),
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    client: Client,
    Path(id): Path<i64>,
    Json(req): Json<UpdateUser>,
) -> Result<Json<User>, ApiError> {
    check_text("email", &req.email, 254)?;
    check_text("full_name", &req.full_name, 200)?;
    let mut tx = state.pool.begin().await?;
    let before = users::get_for_update(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user with id {id}")))?;
    let demotes = req.role.is_some_and(|r| r != Role::Admin) && before.role == Role::Admin;
    let disables = req.is_active == Some(false) && before.is_active;
    if id == caller.user_id && (demotes || disables) {
        return Err(ApiError::conflict(
            "you cannot disable or demote yourself; ask another admin",
        ));
    }
    if (demotes || disables)
        && before.role == Role::Admin
        && users::other_active_admins(&mut tx, id).await? == 0
    {
        return Err(ApiError::conflict(
            "this is the last active admin; make another admin first",
        ));
    }
    let patch = users::Patch {
        email: req.email.map(|e| Some(e).filter(|e| !e.is_empty())),
        full_name: req.full_name.map(|n| Some(n).filter(|n| !n.is_empty())),
        role: req.role,
        is_active: req.is_active,
    };
    let after = users::update(&mut tx, id, &patch)
        .await
        .map_err(|e| {
            if db::is_unique_violation(&e) {
                ApiError::conflict("another user has that e-mail address")
            } else {
                e.into()
            }
        })?
        .ok_or_else(|| ApiError::not_found(format!("no user with id {id}")))?;
    if disables || after.role < before.role {
        tokens::revoke_user_refresh_tokens(&mut tx, id).await?;
    }
    let entry = Entry::new("user.update", Outcome::Success)
        .actor(caller.actor())
        .resource("user", id)
        .change(Some(before.audit_view()), Some(after.audit_view()));
    audit::append(&mut tx, &client.0, &entry).await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Deletes a user with their tokens; the audit log keeps their name.
#[utoipa::path(delete, path = "/users/{id}", tag = "users", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    client: Client,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    if id == caller.user_id {
        return Err(ApiError::conflict(
            "you cannot delete yourself; ask another admin",
        ));
    }
    let mut tx = state.pool.begin().await?;
    let before = users::get_for_update(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user with id {id}")))?;
    if before.role == Role::Admin
        && before.is_active
        && users::other_active_admins(&mut tx, id).await? == 0
    {
        return Err(ApiError::conflict(
            "this is the last active admin; make another admin first",
        ));
    }
    users::delete(&mut tx, id).await?;
    let entry = Entry::new("user.delete", Outcome::Success)
        .actor(caller.actor())
        .resource("user", id)
        .change(Some(before.audit_view()), None);
    audit::append(&mut tx, &client.0, &entry).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets a user's password and signs out their sessions.
#[utoipa::path(put, path = "/users/{id}/password", tag = "users", params(("id" = i64, Path, minimum = 1)),
    request_body = NewPassword, security(("bearer" = [])),
    responses((status = 204, description = "Set"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn set_password(
    State(state): State<ApiState>,
    caller: Caller,
    client: Client,
    Path(id): Path<i64>,
    Json(req): Json<NewPassword>,
) -> Result<StatusCode, ApiError> {
    let user = {
        let mut conn = state.pool.acquire().await?;
        users::get(&mut conn, id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no user with id {id}")))?
    };
    password::check_strength(&req.password, &user.username).map_err(ApiError::BadRequest)?;
    let pw = req.password;
    let hash = state
        .hashing(move |h| h.hash(&pw))
        .await?
        .map_err(ApiError::internal)?;
    let mut tx = state.pool.begin().await?;
    users::set_password(&mut tx, id, &hash).await?;
    tokens::revoke_user_refresh_tokens(&mut tx, id).await?;
    let entry = Entry::new("user.set_password", Outcome::Success)
        .actor(caller.actor())
        .resource("user", id)
        .change(None, Some(serde_json::json!({"password": "changed"})));
    audit::append(&mut tx, &client.0, &entry).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
