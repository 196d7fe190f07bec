//! The inventory the pulls fill: servers, PostgreSQL instances, databases.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Json, Query};
use super::state::ApiState;
use super::users::IdPage;
use crate::db::inventory::{self as repo, Database, Instance, Server, Table};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(servers))
        .routes(routes!(instances))
        .routes(routes!(databases))
}

/// A page of servers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerList {
    pub items: Vec<Server>,
    pub next_after: Option<i64>,
}

/// A page of instances.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceList {
    pub items: Vec<Instance>,
    pub next_after: Option<i64>,
}

/// A page of databases.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatabaseList {
    pub items: Vec<Database>,
    pub next_after: Option<i64>,
}

/// Instances of one server.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InstanceFilter {
    #[param(minimum = 1)]
    pub server_id: Option<i64>,
    #[param(minimum = 0)]
    pub after: Option<i64>,
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

/// Databases of one instance.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DatabaseFilter {
    #[param(minimum = 1)]
    pub instance_id: Option<i64>,
    #[param(minimum = 0)]
    pub after: Option<i64>,
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

/// The `{"items": …, "next_after": …}` page of rows.
fn page(items: Vec<Value>, limit: i64) -> Value {
    let next_after = if items.len() as i64 == limit {
        items.last().and_then(|v| v.get("id")).cloned()
    } else {
        None
    };
    serde_json::json!({ "items": items, "next_after": next_after })
}

/// Servers, by id.
#[utoipa::path(get, path = "/servers", tag = "inventory", params(IdPage), security(("bearer" = [])),
    responses((status = 200, body = ServerList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn servers(
    State(state): State<ApiState>,
    Query(p): Query<IdPage>,
) -> Result<Json<Value>, ApiError> {
    let (after, limit) = p.bounds()?;
    let rows = repo::list(&state.pool, Table::Servers, None, after, limit).await?;
    Ok(Json(page(rows, limit)))
}

/// PostgreSQL instances, by id.
#[utoipa::path(get, path = "/instances", tag = "inventory", params(InstanceFilter), security(("bearer" = [])),
    responses((status = 200, body = InstanceList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn instances(
    State(state): State<ApiState>,
    Query(f): Query<InstanceFilter>,
) -> Result<Json<Value>, ApiError> {
    let (after, limit) = IdPage {
        after: f.after,
        limit: f.limit,
    }
    .bounds()?;
    super::at_least_one("server_id", f.server_id)?;
    let rows = repo::list(&state.pool, Table::Instances, f.server_id, after, limit).await?;
    Ok(Json(page(rows, limit)))
}

/// Databases, by id.
#[utoipa::path(get, path = "/databases", tag = "inventory", params(DatabaseFilter), security(("bearer" = [])),
    responses((status = 200, body = DatabaseList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn databases(
    State(state): State<ApiState>,
    Query(f): Query<DatabaseFilter>,
) -> Result<Json<Value>, ApiError> {
    let (after, limit) = IdPage {
        after: f.after,
        limit: f.limit,
    }
    .bounds()?;
    super::at_least_one("instance_id", f.instance_id)?;
    let rows = repo::list(&state.pool, Table::Databases, f.instance_id, after, limit).await?;
    Ok(Json(page(rows, limit)))
}
