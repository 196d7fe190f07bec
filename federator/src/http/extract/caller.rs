//! Who is calling: resolved from `Authorization: Bearer …` on every request, with
//! the user's role and state as the database holds them *now*, so a disabled
//! user, a lowered role or a revoked token takes effect on the very next request.

use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::auth::jwt::{JwtError, Kind};
use crate::auth::roles::highest_scope;
use crate::auth::{Credential, Role, token};
use crate::db::audit::{self, Actor, Entry, Outcome};
use crate::db::{tokens, users};
use crate::http::error::ApiError;
use crate::http::extract::Client;
use crate::http::state::ApiState;

/// A token's `last_used_at` is written at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: i64,
    pub username: String,
    /// The role as of this request.
    pub role: Role,
    pub credential: Credential,
}

impl Caller {
    /// The caller as the audit log records them.
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: Some(self.user_id),
            username: Some(self.username.clone()),
            token_id: match self.credential {
                Credential::ApiToken { id, .. } => Some(id),
                Credential::Session => None,
            },
            role: Some(self.role.as_str().to_owned()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    /// The caller the authorization layer resolved; a route that declares itself
    /// public has none.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::internal("a handler asked for the caller on a route declared public")
        })
    }
}

/// A refusal: audited, then answered 401.
async fn refuse(
    state: &ApiState,
    parts: &Parts,
    reason: &str,
    actor: Actor,
    message: &str,
) -> ApiError {
    state.metrics.auth_refused(reason);
    let entry = Entry::new("auth.token_refused", Outcome::Failure)
        .actor(actor)
        .detail(reason);
    if let Err(e) = audit::append_alone(&state.pool, &Client::from_parts(parts).0, &entry).await {
        return ApiError::from(e);
    }
    ApiError::Unauthorized(message.to_owned())
}

/// The caller of `parts`: `Ok(None)` without an `Authorization` header, an error
/// (audited) for a credential that does not hold.
pub async fn resolve(state: &ApiState, parts: &Parts) -> Result<Option<Caller>, ApiError> {
    let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let credential = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|c| !c.is_empty());
    let Some(credential) = credential else {
        return Err(refuse(
            state,
            parts,
            "malformed_header",
            Actor::default(),
            "send the token as `Authorization: Bearer TOKEN`",
        )
        .await);
    };
    if token::looks_like_api_token(credential) {
        resolve_api_token(state, parts, credential).await.map(Some)
    } else {
        resolve_jwt(state, parts, credential).await.map(Some)
    }
}

async fn resolve_jwt(state: &ApiState, parts: &Parts, jwt: &str) -> Result<Caller, ApiError> {
    let claims = match state.jwt.validate(jwt, Kind::Access) {
        Ok(c) => c,
        Err(e) => {
            let message = match &e {
                JwtError::Expired => {
                    "the access token has expired; get a new one from /api/v1/auth/refresh"
                }
                JwtError::WrongType { .. } => {
                    "this is not an access token (a refresh token goes to /api/v1/auth/refresh)"
                }
                _ => "the access token is not valid",
            };
            return Err(refuse(state, parts, e.reason(), Actor::default(), message).await);
        }
    };
    let Ok(user_id) = claims.sub.parse::<i64>() else {
        return Err(refuse(
            state,
            parts,
            "malformed",
            Actor::default(),
            "the access token is not valid",
        )
        .await);
    };
    let principal = users::principal(&state.pool, user_id).await?;
    let Some(p) = principal else {
        let actor = Actor {
            user_id: Some(user_id),
            ..Actor::default()
        };
        return Err(refuse(
            state,
            parts,
            "unknown_user",
            actor,
            "the access token's user no longer exists",
        )
        .await);
    };
    let actor = Actor {
        user_id: Some(p.id),
        username: Some(p.username.clone()),
        token_id: None,
        role: Some(p.role.clone()),
    };
    if !p.is_active {
        return Err(refuse(
            state,
            parts,
            "user_disabled",
            actor,
            "the account is disabled",
        )
        .await);
    }
    Ok(Caller {
        user_id: p.id,
        username: p.username,
        role: p.role.parse().unwrap_or(Role::Viewer),
        credential: Credential::Session,
    })
}

async fn resolve_api_token(
    state: &ApiState,
    parts: &Parts,
    secret: &str,
) -> Result<Caller, ApiError> {
    if let Err(e) = token::check(secret) {
        let reason = match e {
            token::TokenFormatError::Shape => "malformed_api_token",
            token::TokenFormatError::Checksum => "bad_checksum",
        };
        return Err(refuse(
            state,
            parts,
            reason,
            Actor::default(),
            "the API token is not valid",
        )
        .await);
    }
    let digest = token::digest(secret);
    let found = tokens::api_token_principal(&state.pool, &digest).await?;
    let Some(t) = found.filter(|t| token::digests_equal(&t.token_hash, &digest)) else {
        return Err(refuse(
            state,
            parts,
            "unknown_api_token",
            Actor::default(),
            "the API token is not valid",
        )
        .await);
    };
    let actor = Actor {
        user_id: Some(t.user_id),
        username: Some(t.username.clone()),
        token_id: Some(t.token_id),
        role: Some(t.role.clone()),
    };
    let refusal = if t.revoked {
        Some(("revoked_api_token", "the API token has been revoked"))
    } else if t.expired {
        Some(("expired_api_token", "the API token has expired"))
    } else if !t.is_active {
        Some(("user_disabled", "the account is disabled"))
    } else {
        None
    };
    if let Some((reason, message)) = refusal {
        return Err(refuse(state, parts, reason, actor, message).await);
    }
    let Some(scope) = highest_scope(&t.scopes) else {
        return Err(refuse(
            state,
            parts,
            "no_scope",
            actor,
            "the API token has no scope",
        )
        .await);
    };
    touch(state, t.token_id).await;
    Ok(Caller {
        user_id: t.user_id,
        username: t.username,
        role: t.role.parse().unwrap_or(Role::Viewer),
        credential: Credential::ApiToken {
            id: t.token_id,
            scope,
        },
    })
}

/// Records the token's use, at most once a minute per token and process.
async fn touch(state: &ApiState, id: i64) {
    let due = {
        let mut seen = state
            .token_touched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let due = seen
            .get(&id)
            .is_none_or(|t| now.duration_since(*t) >= TOUCH_EVERY);
        if due {
            if seen.len() > 100_000 {
                seen.retain(|_, t| now.duration_since(*t) < TOUCH_EVERY);
            }
            seen.insert(id, now);
        }
        due
    };
    if due && let Err(e) = tokens::touch_api_token(&state.pool, id).await {
        tracing::warn!(token_id = id, error = %e, "cannot record an API token's last use");
    }
}
