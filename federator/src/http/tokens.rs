//! API tokens: one's own (list, create, revoke) and everyone's (admin).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Client, Json, Path, Query};
use super::state::ApiState;
use super::users::IdPage;
use crate::auth::{Scope, token};
use crate::db::audit::{self, Entry, Outcome};
use crate::db::tokens::{self as repo, ApiToken};
use crate::db::{self};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_own, create))
        .routes(routes!(revoke_own))
        .routes(routes!(list_all))
        .routes(routes!(revoke_any))
}

/// A page of tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub items: Vec<ApiToken>,
    pub next_after: Option<i64>,
}

/// A new token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Unique among your tokens; printable characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F]+$"
    )]
    pub name: String,
    /// read, write or admin (each includes the ones before it); at most what your
    /// role allows (viewer: read; user: write; admin: admin).
    #[schema(min_items = 1, max_items = 3)]
    pub scopes: Vec<Scope>,
    /// Days until it expires (1 to 3650); leave out for no expiry.
    #[schema(minimum = 1, maximum = 3650)]
    #[serde(default, deserialize_with = "super::extract::integer")]
    pub expires_in_days: Option<i64>,
}

/// The token made: the secret is shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub token: ApiToken,
    /// `pga_…`: keep it; it cannot be shown again.
    pub secret: String,
}

/// Admin filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AllTokens {
    /// Only this user's tokens.
    #[param(minimum = 1)]
    pub user_id: Option<i64>,
    #[param(minimum = 0)]
    pub after: Option<i64>,
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

fn page(items: Vec<ApiToken>, limit: i64) -> TokenList {
    let next_after = (items.len() as i64 == limit)
        .then(|| items.last().map(|t| t.id))
        .flatten();
    TokenList { items, next_after }
}

/// Your API tokens.
#[utoipa::path(get, path = "/me/tokens", tag = "tokens", params(IdPage), security(("bearer" = [])),
    responses((status = 200, body = TokenList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_own(
    State(state): State<ApiState>,
    caller: Caller,
    Query(p): Query<IdPage>,
) -> Result<Json<TokenList>, ApiError> {
    let (after, limit) = p.bounds()?;
    let items = repo::list_api_tokens(&state.pool, Some(caller.user_id), after, limit).await?;
    Ok(Json(page(items, limit)))
}

/// Creates an API token (from a signed-in session). The secret is in this answer
/// only; the federator keeps its SHA-256.
#[utoipa::path(post, path = "/me/tokens", tag = "tokens", request_body = CreateToken, security(("bearer" = [])),
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "You have a token of that name", body = ErrorBody)))]
async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    client: Client,
    Json(req): Json<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let name = req.name.as_str();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::bad("name: give 1 to 100 printable characters"));
    }
    if req.scopes.is_empty() || req.scopes.len() > 3 {
        return Err(ApiError::bad(
            "scopes: give one to three of read, write, admin",
        ));
    }
    let highest = req.scopes.iter().copied().max().unwrap_or(Scope::Read);
    if highest > caller.role.max_scope() {
        return Err(ApiError::forbidden(format!(
            "a {} may create tokens up to scope {}, not {highest}",
            caller.role,
            caller.role.max_scope()
        )));
    }
    let expires_at = match req.expires_in_days {
        None => None,
        Some(d) if (1..=3650).contains(&d) => Some(Utc::now() + chrono::Duration::days(d)),
        Some(d) => {
            return Err(ApiError::bad(format!(
                "expires_in_days = {d}: give 1 to 3650, or leave it out"
            )));
        }
    };
    let mut scopes: Vec<String> = req.scopes.iter().map(|s| s.as_str().to_owned()).collect();
    scopes.sort();
    scopes.dedup();
    let secret = token::generate().map_err(ApiError::internal)?;
    let mut tx = state.pool.begin().await?;
    let created = repo::create_api_token(
        &mut tx,
        &repo::NewApiToken {
            user_id: caller.user_id,
            name,
            prefix: &token::display_prefix(&secret),
            digest: &token::digest(&secret),
            scopes: &scopes,
            expires_at,
        },
    )
    .await
    .map_err(|e| {
        if db::is_unique_violation(&e) {
            ApiError::conflict(format!("you already have a token named \"{name}\""))
        } else {
            e.into()
        }
    })?;
    let entry = Entry::new("token.create", Outcome::Success)
        .actor(caller.actor())
        .resource("api_token", created.id)
        .change(None, Some(created.audit_view()));
    audit::append(&mut tx, &client.0, &entry).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: created,
            secret,
        }),
    ))
}

async fn revoke(
    state: &ApiState,
    caller: &Caller,
    client: &Client,
    id: i64,
    owner: Option<i64>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.pool.begin().await?;
    let before = repo::api_token_for_update(&mut tx, id, owner)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no API token with id {id}")))?;
    let after = repo::revoke_api_token(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no API token with id {id}")))?;
    let entry = Entry::new("token.revoke", Outcome::Success)
        .actor(caller.actor())
        .resource("api_token", id)
        .change(Some(before.audit_view()), Some(after.audit_view()));
    audit::append(&mut tx, &client.0, &entry).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes one of your tokens; it stops working at once.
#[utoipa::path(delete, path = "/me/tokens/{id}", tag = "tokens", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = [])),
    responses((status = 204, description = "Revoked"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_own(
    State(state): State<ApiState>,
    caller: Caller,
    client: Client,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    revoke(&state, &caller, &client, id, Some(caller.user_id)).await
}

/// Every API token.
#[utoipa::path(get, path = "/tokens", tag = "tokens", params(AllTokens), security(("bearer" = [])),
    responses((status = 200, body = TokenList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_all(
    State(state): State<ApiState>,
    Query(q): Query<AllTokens>,
) -> Result<Json<TokenList>, ApiError> {
    let (after, limit) = IdPage {
        after: q.after,
        limit: q.limit,
    }
    .bounds()?;
    super::at_least_one("user_id", q.user_id)?;
    let items = repo::list_api_tokens(&state.pool, q.user_id, after, limit).await?;
    Ok(Json(page(items, limit)))
}

/// Revokes any API token by id, without knowing it.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = [])),
    responses((status = 204, description = "Revoked"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_any(
    State(state): State<ApiState>,
    caller: Caller,
    client: Client,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    revoke(&state, &caller, &client, id, None).await
}
