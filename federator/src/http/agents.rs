//! The fleet: agents from the configuration file (read-only here) and agents
//! added through the API, pulled from then on without a restart.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Client, Json, Path, Query};
use super::state::ApiState;
use crate::config::{MAX_NAME_LEN, is_valid_name, parse_schedule};
use crate::db::agents::{self as repo, Agent, AgentStatus, Definition, Gap};
use crate::db::audit::{self, Entry, Outcome};
use crate::pull::url::AgentUrl;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, remove))
        .routes(routes!(status))
        .routes(routes!(gaps))
}

/// Most labels an agent may carry, and the longest value.
const MAX_LABELS: usize = 32;
const MAX_LABEL_VALUE: usize = 256;

/// Paging by name.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NamePage {
    /// Only agents whose name sorts after this one.
    #[param(max_length = 128)]
    pub after: Option<String>,
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

/// A page of agents.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    pub items: Vec<Agent>,
    pub next_after: Option<String>,
}

/// A new agent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    /// Letters, digits, `_`, `.`, `-`; unique.
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9_.-]+$")]
    pub name: String,
    /// `https://HOST:PORT` (mutual TLS with the federator's `[tls]` certificate),
    /// or `http://127.0.0.1:PORT` for an agent on this host.
    #[schema(min_length = 1, max_length = 512)]
    pub url: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Cron expression with seconds; leave out to follow `scrape.schedule`.
    #[schema(max_length = 200)]
    pub schedule: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// Changes to an API agent; leave a field out to keep it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgent {
    #[schema(min_length = 1, max_length = 512)]
    pub url: Option<String>,
    /// Replaces every label.
    pub labels: Option<BTreeMap<String, String>>,
    /// `""` goes back to `scrape.schedule`.
    #[schema(max_length = 200)]
    pub schedule: Option<String>,
    pub enabled: Option<bool>,
}

/// Filter of recorded gaps.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GapFilter {
    /// Only this agent's gaps.
    #[param(max_length = 128)]
    pub agent: Option<String>,
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

/// A page of gaps, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct GapList {
    pub items: Vec<Gap>,
}

fn check_definition(state: &ApiState, d: &Definition) -> Result<(), ApiError> {
    super::at_most_chars("url", Some(&d.url), 512)?;
    super::at_most_chars("schedule", d.schedule.as_deref(), 200)?;
    let url =
        AgentUrl::parse(&d.url).map_err(|e| ApiError::bad(format!("url: {e}; {}", e.fix())))?;
    if url.tls && !state.settings.agent_tls {
        return Err(ApiError::bad(
            "url: the federator has no client certificate ([tls] in federator.toml), so it cannot \
             pull an https:// agent; configure [tls] first",
        ));
    }
    if let Some(s) = &d.schedule {
        parse_schedule(s).map_err(|e| ApiError::bad(format!("schedule: {e}")))?;
    }
    if d.labels.len() > MAX_LABELS {
        return Err(ApiError::bad(format!("labels: at most {MAX_LABELS}")));
    }
    for (k, v) in &d.labels {
        if !pga_format::is_valid_label_name(k) || k == "agent" {
            return Err(ApiError::bad(format!(
                "labels: \"{}\" is not a usable label name: use [a-zA-Z_][a-zA-Z0-9_]*, not starting \
                 with __, and not `agent`",
                super::error::clip(k)
            )));
        }
        if v.chars().count() > MAX_LABEL_VALUE || v.chars().any(char::is_control) {
            return Err(ApiError::bad(format!(
                "labels.{k}: give at most {MAX_LABEL_VALUE} printable characters"
            )));
        }
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "name: use 1 to {MAX_NAME_LEN} letters, digits, '_', '.' or '-'"
        )))
    }
}

/// Agents with their pull status, by name.
#[utoipa::path(get, path = "/agents", tag = "agents", params(NamePage), security(("bearer" = [])),
    responses((status = 200, body = AgentList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list(
    State(state): State<ApiState>,
    Query(p): Query<NamePage>,
) -> Result<Json<AgentList>, ApiError> {
    let limit = super::page_limit(p.limit)?;
    super::at_most_chars("after", p.after.as_deref(), 128)?;
    let items = repo::list(&state.pool, p.after.as_deref().unwrap_or(""), limit).await?;
    let next_after = (items.len() as i64 == limit)
        .then(|| items.last().map(|a| a.name.clone()))
        .flatten();
    Ok(Json(AgentList { items, next_after }))
}

/// Adds an agent. It is pulled from its next scheduled instant, without a
/// restart. Adding a removed agent's name again brings it back with its history.
#[utoipa::path(post, path = "/agents", tag = "agents", request_body = CreateAgent, security(("bearer" = [])),
    responses((status = 201, body = Agent), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "An agent of that name exists", body = ErrorBody)))]
async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    client: Client,
    Json(req): Json<CreateAgent>,
) -> Result<(StatusCode, Json<Agent>), ApiError> {
    check_name(&req.name)?;
    let d = Definition {
        url: req.url,
        labels: req.labels,
        schedule: req.schedule.filter(|s| !s.is_empty()),
        enabled: req.enabled.unwrap_or(true),
    };
    check_definition(&state, &d)?;
    let mut tx = state.pool.begin().await?;
    if repo::lock(&mut tx, &req.name).await? == Some(false) {
        return Err(ApiError::conflict(format!(
            "an agent named \"{}\" exists",
            req.name
        )));
    }
    repo::create(&mut tx, &req.name, &d).await?;
    let agent = repo::get(&mut tx, &req.name)
        .await?
        .ok_or_else(|| ApiError::internal("the agent just added is not there"))?;
    let change = Change {
        action: "agent.create",
        name: &agent.name,
        before: None,
        after: Some(&agent),
    };
    commit_change(&state, tx, &caller, &client, change).await?;
    Ok((StatusCode::CREATED, Json(agent)))
}

async fn find(state: &ApiState, name: &str) -> Result<Agent, ApiError> {
    let mut conn = state.pool.acquire().await?;
    repo::get(&mut conn, name).await?.ok_or_else(|| {
        ApiError::not_found(format!("no agent named \"{}\"", super::error::clip(name)))
    })
}

/// One agent.
#[utoipa::path(get, path = "/agents/{name}", tag = "agents", params(("name" = String, Path, max_length = 128)),
    security(("bearer" = [])),
    responses((status = 200, body = Agent), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn get(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    find(&state, &name).await.map(Json)
}

/// Where one agent's pulls stand.
#[utoipa::path(get, path = "/agents/{name}/status", tag = "agents", params(("name" = String, Path, max_length = 128)),
    security(("bearer" = [])),
    responses((status = 200, body = AgentStatus), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn status(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<AgentStatus>, ApiError> {
    find(&state, &name).await.map(|a| Json(a.status))
}

/// Locks the agent `name` for a change and reads it: 404 when there is none, 409
/// when it comes from the configuration file.
async fn lock_api_agent(conn: &mut sqlx::PgConnection, name: &str) -> Result<Agent, ApiError> {
    let not_found =
        || ApiError::not_found(format!("no agent named \"{}\"", super::error::clip(name)));
    if repo::lock(conn, name).await? != Some(false) {
        return Err(not_found());
    }
    let agent = repo::get(conn, name).await?.ok_or_else(not_found)?;
    if agent.read_only {
        return Err(ApiError::conflict(format!(
            "agent \"{name}\" comes from the configuration file (federator.toml): change or remove it there"
        )));
    }
    Ok(agent)
}

/// A change of an agent, as it is audited.
struct Change<'a> {
    action: &'static str,
    name: &'a str,
    before: Option<&'a Agent>,
    after: Option<&'a Agent>,
}

/// Audits a successful change, commits it with the change and tells the
/// scheduler that the fleet changed.
async fn commit_change(
    state: &ApiState,
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    caller: &Caller,
    client: &Client,
    change: Change<'_>,
) -> Result<(), ApiError> {
    let entry = Entry::new(change.action, Outcome::Success)
        .actor(caller.actor())
        .resource("agent", change.name)
        .change(
            change.before.map(Agent::audit_view),
            change.after.map(Agent::audit_view),
        );
    audit::append(&mut tx, &client.0, &entry).await?;
    tx.commit().await?;
    state.fleet_changed.notify_one();
    Ok(())
}

/// Changes an agent added through the API; the scheduler picks the change up
/// without a restart.
#[utoipa::path(patch, path = "/agents/{name}", tag = "agents", params(("name" = String, Path, max_length = 128)),
    request_body = UpdateAgent, security(("bearer" = [])),
    responses((status = 200, body = Agent), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The agent comes from the configuration file", body = ErrorBody)))]
async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    client: Client,
    Path(name): Path<String>,
    Json(req): Json<UpdateAgent>,
) -> Result<Json<Agent>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let before = lock_api_agent(&mut tx, &name).await?;
    let d = Definition {
        url: req.url.or_else(|| before.url.clone()).unwrap_or_default(),
        labels: req.labels.unwrap_or_else(|| before.labels.clone()),
        schedule: match req.schedule {
            Some(s) if s.is_empty() => None,
            Some(s) => Some(s),
            None => before.schedule.clone(),
        },
        enabled: req.enabled.unwrap_or(before.enabled),
    };
    check_definition(&state, &d)?;
    repo::update(&mut tx, &name, &d).await?;
    let after = repo::get(&mut tx, &name).await?.ok_or_else(|| {
        ApiError::not_found(format!("no agent named \"{}\"", super::error::clip(&name)))
    })?;
    let change = Change {
        action: "agent.update",
        name: &name,
        before: Some(&before),
        after: Some(&after),
    };
    commit_change(&state, tx, &caller, &client, change).await?;
    Ok(Json(after))
}

/// Removes an agent added through the API: it is no longer pulled. Its data stays
/// until retention.
#[utoipa::path(delete, path = "/agents/{name}", tag = "agents", params(("name" = String, Path, max_length = 128)),
    security(("bearer" = [])),
    responses((status = 204, description = "Removed"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The agent comes from the configuration file", body = ErrorBody)))]
async fn remove(
    State(state): State<ApiState>,
    caller: Caller,
    client: Client,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.pool.begin().await?;
    let before = lock_api_agent(&mut tx, &name).await?;
    repo::remove(&mut tx, &name).await?;
    let change = Change {
        action: "agent.remove",
        name: &name,
        before: Some(&before),
        after: None,
    };
    commit_change(&state, tx, &caller, &client, change).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Recorded gaps: blocks an agent evicted before they were pulled, newest first.
#[utoipa::path(get, path = "/gaps", tag = "agents", params(GapFilter), security(("bearer" = [])),
    responses((status = 200, body = GapList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn gaps(
    State(state): State<ApiState>,
    Query(f): Query<GapFilter>,
) -> Result<Json<GapList>, ApiError> {
    let limit = super::page_limit(f.limit)?;
    super::at_most_chars("agent", f.agent.as_deref(), 128)?;
    let items = repo::gaps(&state.pool, f.agent.as_deref(), limit).await?;
    Ok(Json(GapList { items }))
}
