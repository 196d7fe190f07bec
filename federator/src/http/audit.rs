//! The audit log (admin).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Query};
use super::state::ApiState;
use crate::db::audit::{self as repo, ListFilter, StoredEntry};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// Which entries.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// Only entries after this position in the chain.
    #[param(minimum = 0)]
    pub after_seq: Option<i64>,
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// Only this action (`auth.login`, `agent.create`, …).
    #[param(max_length = 64)]
    pub action: Option<String>,
    /// Only this actor.
    #[param(minimum = 1)]
    pub user_id: Option<i64>,
}

/// A page of entries, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub items: Vec<StoredEntry>,
    /// Pass as `after_seq` for the next page.
    pub next_after_seq: Option<i64>,
}

/// Audit entries in chain order.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditFilter), security(("bearer" = [])),
    responses((status = 200, body = AuditList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<ApiState>,
    Query(f): Query<AuditFilter>,
) -> Result<Json<AuditList>, ApiError> {
    let limit = super::page_limit(f.limit)?;
    super::at_least_one("user_id", f.user_id)?;
    super::at_most_chars("action", f.action.as_deref(), 64)?;
    let after_seq = f.after_seq.unwrap_or(0);
    if after_seq < 0 {
        return Err(ApiError::bad("after_seq must be 0 or more"));
    }
    let items = repo::list(
        &state.pool,
        &ListFilter {
            after_seq,
            limit,
            action: f.action,
            actor_user_id: f.user_id,
        },
    )
    .await?;
    let next_after_seq = (items.len() as i64 == limit)
        .then(|| items.last().map(|e| e.seq))
        .flatten();
    Ok(Json(AuditList {
        items,
        next_after_seq,
    }))
}
