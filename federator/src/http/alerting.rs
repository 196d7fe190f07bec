//! Alerting through the API: rules (list, read, create, replace, delete, enable or
//! disable; every change audited), alerts (current, history with late alerts, one
//! alert with what each receiver did with its notifications) and maintenance
//! windows. Thin handlers over `crate::db::{rules, alerts, maintenance, outbox}`;
//! the evaluator reads the rules at every cycle, so a change applies from the next
//! cycle without a restart.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Client, Json, Path, Query};
use super::state::ApiState;
use crate::alerting::rule::RuleSpec;
use crate::db::alerts::{self, AlertFilter, AlertRow};
use crate::db::audit::{self, Entry, Outcome};
use crate::db::maintenance::{self, StoredWindow, WindowError, WindowSpec};
use crate::db::outbox::{self, Delivery};
use crate::db::rules::{self, RuleError, StoredRule};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(get_rule, replace_rule, delete_rule))
        .routes(routes!(set_rule_enabled))
        .routes(routes!(current_alerts))
        .routes(routes!(alert_history))
        .routes(routes!(get_alert))
        .routes(routes!(list_windows, create_window))
        .routes(routes!(get_window, replace_window, delete_window))
}

/// Longest text accepted in any string of a rule or window body.
const MAX_TEXT: usize = 4096;

/// Refuses texts PostgreSQL cannot store (NUL) and overlong ones, anywhere in a
/// body, naming the field.
fn check_texts(value: &serde_json::Value, path: &str) -> Result<(), ApiError> {
    match value {
        serde_json::Value::String(s) => {
            if s.contains('\0') {
                return Err(ApiError::bad(format!(
                    "{path}: contains a NUL character; remove it"
                )));
            }
            if s.chars().count() > MAX_TEXT {
                return Err(ApiError::bad(format!(
                    "{path}: longer than {MAX_TEXT} characters"
                )));
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check_texts(v, &format!("{path}[{i}]"))?;
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let at = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                check_texts(&serde_json::Value::String(k.clone()), &at)?;
                check_texts(v, &at)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn check_body<T: Serialize>(body: &T) -> Result<(), ApiError> {
    let v = serde_json::to_value(body).map_err(ApiError::internal)?;
    check_texts(&v, "")
}

impl From<RuleError> for ApiError {
    fn from(e: RuleError) -> Self {
        match e {
            RuleError::Invalid(_) => ApiError::bad(e.to_string()),
            RuleError::NotFound(_) => ApiError::not_found(e.to_string()),
            RuleError::NameTaken(_) | RuleError::FromFile { .. } => {
                ApiError::conflict(e.to_string())
            }
            RuleError::Database(d) => d.into(),
        }
    }
}

impl From<WindowError> for ApiError {
    fn from(e: WindowError) -> Self {
        match e {
            WindowError::Invalid(_) => ApiError::bad(e.to_string()),
            WindowError::NotFound(_) => ApiError::not_found(e.to_string()),
            WindowError::Database(d) => d.into(),
        }
    }
}

/// What a change is audited as.
struct Change {
    action: &'static str,
    kind: &'static str,
    id: i64,
}

/// Appends the audit entry of a successful change (`before` and `after` as JSON)
/// and commits it with the change.
async fn commit_audited(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    caller: &Caller,
    client: &Client,
    change: Change,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> Result<(), ApiError> {
    let entry = Entry::new(change.action, Outcome::Success)
        .actor(caller.actor())
        .resource(change.kind, change.id)
        .change(before, after);
    audit::append(&mut tx, &client.0, &entry).await?;
    tx.commit().await?;
    Ok(())
}

fn json<T: Serialize>(v: &T) -> Option<serde_json::Value> {
    serde_json::to_value(v).ok()
}

fn no_rule(id: i64) -> ApiError {
    ApiError::not_found(format!("no rule with id {id}"))
}

fn no_window(id: i64) -> ApiError {
    ApiError::not_found(format!("no maintenance window with id {id}"))
}

// ---------------------------------------------------------------------------------
// Rules.

/// Every alert rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleList {
    pub items: Vec<StoredRule>,
}

/// Every alert rule, by name: the built-in pack and other rule files
/// (`origin` = `file:<path>`) and those added through the API.
#[utoipa::path(get, path = "/rules", tag = "alerting", security(("bearer" = [])),
    responses((status = 200, body = RuleList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_rules(State(state): State<ApiState>) -> Result<Json<RuleList>, ApiError> {
    let items = rules::list(&state.pool).await?;
    Ok(Json(RuleList { items }))
}

/// Adds a rule (docs/alerting.md, "Rules"). A rule with problems is refused with
/// each problem's field, position and fix, and never stored. It is evaluated
/// from the next cycle.
#[utoipa::path(post, path = "/rules", tag = "alerting", request_body = RuleSpec, security(("bearer" = [])),
    responses((status = 201, body = StoredRule), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "A rule of that name exists", body = ErrorBody)))]
async fn create_rule(
    State(state): State<ApiState>,
    caller: Caller,
    client: Client,
    Json(spec): Json<RuleSpec>,
) -> Result<(StatusCode, Json<StoredRule>), ApiError> {
    check_body(&spec)?;
    let mut tx = state.pool.begin().await?;
    let rule = rules::create(&mut tx, &spec, "api", Some(caller.user_id)).await?;
    commit_audited(
        tx,
        &caller,
        &client,
        Change {
            action: "rule.create",
            kind: "rule",
            id: rule.id,
        },
        None,
        json(&rule),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

async fn find_rule(state: &ApiState, id: i64) -> Result<StoredRule, ApiError> {
    rules::get(&state.pool, id)
        .await?
        .ok_or_else(|| no_rule(id))
}

/// One rule.
#[utoipa::path(get, path = "/rules/{id}", tag = "alerting", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = [])),
    responses((status = 200, body = StoredRule), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_rule(
    State(state): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<StoredRule>, ApiError> {
    find_rule(&state, id).await.map(Json)
}

/// Replaces a rule added through the API (its revision grows). Rules from rule
/// files are changed in their file; they can only be enabled or disabled here.
#[utoipa::path(put, path = "/rules/{id}", tag = "alerting", params(("id" = i64, Path, minimum = 1)),
    request_body = RuleSpec, security(("bearer" = [])),
    responses((status = 200, body = StoredRule), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The rule comes from a file, or another rule has that name", body = ErrorBody)))]
async fn replace_rule(
    State(state): State<ApiState>,
    caller: Caller,
    client: Client,
    Path(id): Path<i64>,
    Json(spec): Json<RuleSpec>,
) -> Result<Json<StoredRule>, ApiError> {
    check_body(&spec)?;
    let mut tx = state.pool.begin().await?;
    let before = rules::get(&mut *tx, id).await?.ok_or_else(|| no_rule(id))?;
    let after = rules::update(&mut tx, id, &spec).await?;
    commit_audited(
        tx,
        &caller,
        &client,
        Change {
            action: "rule.update",
            kind: "rule",
            id,
        },
        json(&before),
        json(&after),
    )
    .await?;
    Ok(Json(after))
}

/// Deletes a rule added through the API, with its alerts. Rules from rule files
/// are removed from their file, or disabled.
#[utoipa::path(delete, path = "/rules/{id}", tag = "alerting", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The rule comes from a file", body = ErrorBody)))]
async fn delete_rule(
    State(state): State<ApiState>,
    caller: Caller,
    client: Client,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.pool.begin().await?;
    let before = rules::delete(&mut tx, id).await?;
    commit_audited(
        tx,
        &caller,
        &client,
        Change {
            action: "rule.delete",
            kind: "rule",
            id,
        },
        json(&before),
        None,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether a rule is evaluated.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleEnabled {
    pub enabled: bool,
}

/// Enables or disables any rule, a rule file's too (kept across reloads of the
/// file). A disabled rule's open alerts resolve at the next cycle.
#[utoipa::path(put, path = "/rules/{id}/enabled", tag = "alerting", params(("id" = i64, Path, minimum = 1)),
    request_body = RuleEnabled, security(("bearer" = [])),
    responses((status = 200, body = StoredRule), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn set_rule_enabled(
    State(state): State<ApiState>,
    caller: Caller,
    client: Client,
    Path(id): Path<i64>,
    Json(req): Json<RuleEnabled>,
) -> Result<Json<StoredRule>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let before = rules::get(&mut *tx, id).await?.ok_or_else(|| no_rule(id))?;
    let after = rules::set_enabled(&mut tx, id, req.enabled).await?;
    let action = if req.enabled {
        "rule.enable"
    } else {
        "rule.disable"
    };
    commit_audited(
        tx,
        &caller,
        &client,
        Change {
            action,
            kind: "rule",
            id,
        },
        Some(serde_json::json!({"enabled": before.spec.enabled})),
        Some(serde_json::json!({"enabled": after.spec.enabled})),
    )
    .await?;
    Ok(Json(after))
}

// ---------------------------------------------------------------------------------
// Alerts.

/// Latest time accepted in a filter or window: 9999-12-31T23:59:59.999Z.
const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// The states of alerts open now.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OpenState {
    Pending,
    Firing,
}

/// The states of alerts that fired.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FiredState {
    Firing,
    Resolved,
}

/// Filter of current alerts.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CurrentFilter {
    /// `pending` or `firing`.
    #[param(inline)]
    pub state: Option<OpenState>,
    /// Rule name.
    #[param(max_length = 128)]
    pub rule: Option<String>,
    /// Agent name.
    #[param(max_length = 128)]
    pub agent: Option<String>,
    /// Only late alerts (found after a backfill), or only others.
    pub late: Option<bool>,
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

/// Filter of the alert history.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryFilter {
    /// `firing` or `resolved`.
    #[param(inline)]
    pub state: Option<FiredState>,
    #[param(max_length = 128)]
    pub rule: Option<String>,
    #[param(max_length = 128)]
    pub agent: Option<String>,
    pub late: Option<bool>,
    /// Alerts still open at or after this time (ms since the Unix epoch).
    #[param(minimum = 0, maximum = 253_402_300_799_999_i64)]
    pub since_ms: Option<i64>,
    /// Alerts that fired at or before this time.
    #[param(minimum = 0, maximum = 253_402_300_799_999_i64)]
    pub until_ms: Option<i64>,
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

/// A list of alerts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    pub items: Vec<AlertRow>,
}

fn check_time(what: &str, v: Option<i64>) -> Result<(), ApiError> {
    match v {
        Some(t) if !(0..=MAX_TIME_MS).contains(&t) => Err(ApiError::bad(format!(
            "{what} = {t}: give milliseconds since the Unix epoch, 0 to {MAX_TIME_MS}"
        ))),
        _ => Ok(()),
    }
}

/// The database filter of an alert list, its texts, times and limit checked.
fn alert_filter(
    state: Option<&str>,
    rule: Option<String>,
    agent: Option<String>,
    late: Option<bool>,
    (since_ms, until_ms): (Option<i64>, Option<i64>),
    limit: Option<i64>,
) -> Result<AlertFilter, ApiError> {
    super::at_most_chars("rule", rule.as_deref(), 128)?;
    super::at_most_chars("agent", agent.as_deref(), 128)?;
    check_time("since_ms", since_ms)?;
    check_time("until_ms", until_ms)?;
    Ok(AlertFilter {
        state: state.map(str::to_owned),
        rule,
        agent,
        late,
        since_ms,
        until_ms,
        limit: Some(super::page_limit(limit)?),
    })
}

/// Alerts pending or firing now, most severe and oldest first. Held alerts
/// (their agent is unreachable) and muted ones say so.
#[utoipa::path(get, path = "/alerts", tag = "alerting", params(CurrentFilter), security(("bearer" = [])),
    responses((status = 200, body = AlertList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn current_alerts(
    State(state): State<ApiState>,
    Query(f): Query<CurrentFilter>,
) -> Result<Json<AlertList>, ApiError> {
    let wanted = f.state.map(|s| match s {
        OpenState::Pending => "pending",
        OpenState::Firing => "firing",
    });
    let filter = alert_filter(wanted, f.rule, f.agent, f.late, (None, None), f.limit)?;
    let items = alerts::list_current(&state.pool, &filter).await?;
    Ok(Json(AlertList { items }))
}

/// Alerts that fired, late ones included, newest first: those open at some time
/// between `since_ms` and `until_ms`.
#[utoipa::path(get, path = "/alerts/history", tag = "alerting", params(HistoryFilter), security(("bearer" = [])),
    responses((status = 200, body = AlertList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn alert_history(
    State(state): State<ApiState>,
    Query(f): Query<HistoryFilter>,
) -> Result<Json<AlertList>, ApiError> {
    let wanted = f.state.map(|s| match s {
        FiredState::Firing => "firing",
        FiredState::Resolved => "resolved",
    });
    let window = (f.since_ms, f.until_ms);
    let filter = alert_filter(wanted, f.rule, f.agent, f.late, window, f.limit)?;
    let items = alerts::history(&state.pool, &filter).await?;
    Ok(Json(AlertList { items }))
}

/// One alert and what each receiver did with its notifications.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertDetail {
    pub alert: AlertRow,
    /// Oldest first.
    pub deliveries: Vec<Delivery>,
}

/// One alert, with its notifications.
#[utoipa::path(get, path = "/alerts/{id}", tag = "alerting", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = [])),
    responses((status = 200, body = AlertDetail), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_alert(
    State(state): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<AlertDetail>, ApiError> {
    let alert = alerts::get(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no alert with id {id}")))?;
    let deliveries = outbox::deliveries_of(&state.pool, id).await?;
    Ok(Json(AlertDetail { alert, deliveries }))
}

// ---------------------------------------------------------------------------------
// Maintenance windows.

/// Which windows to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WindowFilter {
    /// Also the windows that are over.
    pub include_past: Option<bool>,
}

/// Maintenance windows, soonest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct WindowList {
    pub items: Vec<StoredWindow>,
}

fn check_window(spec: &WindowSpec) -> Result<(), ApiError> {
    check_body(spec)?;
    check_time("starts_at_ms", Some(spec.starts_at_ms))?;
    check_time("ends_at_ms", Some(spec.ends_at_ms))?;
    if spec.matchers.len() > 32 {
        return Err(ApiError::bad("matchers: at most 32"));
    }
    Ok(())
}

/// Maintenance windows not yet over (or all of them with `include_past`).
#[utoipa::path(get, path = "/maintenance-windows", tag = "alerting", params(WindowFilter), security(("bearer" = [])),
    responses((status = 200, body = WindowList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_windows(
    State(state): State<ApiState>,
    Query(f): Query<WindowFilter>,
) -> Result<Json<WindowList>, ApiError> {
    let items = maintenance::list(&state.pool, f.include_past.unwrap_or(false)).await?;
    Ok(Json(WindowList { items }))
}

/// Adds a maintenance window: while it is active, the notifications of the alerts
/// its matchers select are recorded as muted and not delivered; an alert still
/// firing when it ends is notified then.
#[utoipa::path(post, path = "/maintenance-windows", tag = "alerting", request_body = WindowSpec, security(("bearer" = [])),
    responses((status = 201, body = StoredWindow), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_window(
    State(state): State<ApiState>,
    caller: Caller,
    client: Client,
    Json(spec): Json<WindowSpec>,
) -> Result<(StatusCode, Json<StoredWindow>), ApiError> {
    check_window(&spec)?;
    let mut tx = state.pool.begin().await?;
    let w = maintenance::create(&mut tx, &spec, Some(caller.user_id)).await?;
    commit_audited(
        tx,
        &caller,
        &client,
        Change {
            action: "maintenance.create",
            kind: "maintenance_window",
            id: w.id,
        },
        None,
        json(&w),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(w)))
}

/// One maintenance window.
#[utoipa::path(get, path = "/maintenance-windows/{id}", tag = "alerting", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = [])),
    responses((status = 200, body = StoredWindow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_window(
    State(state): State<ApiState>,
    Path(id): Path<i64>,
) -> Result<Json<StoredWindow>, ApiError> {
    maintenance::get(&state.pool, id)
        .await?
        .map(Json)
        .ok_or_else(|| no_window(id))
}

/// Replaces a maintenance window; to end one early, set `ends_at_ms` to now.
#[utoipa::path(put, path = "/maintenance-windows/{id}", tag = "alerting", params(("id" = i64, Path, minimum = 1)),
    request_body = WindowSpec, security(("bearer" = [])),
    responses((status = 200, body = StoredWindow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn replace_window(
    State(state): State<ApiState>,
    caller: Caller,
    client: Client,
    Path(id): Path<i64>,
    Json(spec): Json<WindowSpec>,
) -> Result<Json<StoredWindow>, ApiError> {
    check_window(&spec)?;
    let mut tx = state.pool.begin().await?;
    let before = maintenance::get(&mut *tx, id)
        .await?
        .ok_or_else(|| no_window(id))?;
    let after = maintenance::update(&mut tx, id, &spec).await?;
    commit_audited(
        tx,
        &caller,
        &client,
        Change {
            action: "maintenance.update",
            kind: "maintenance_window",
            id,
        },
        json(&before),
        json(&after),
    )
    .await?;
    Ok(Json(after))
}

/// Deletes a maintenance window; the notifications it muted stay recorded.
#[utoipa::path(delete, path = "/maintenance-windows/{id}", tag = "alerting", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_window(
    State(state): State<ApiState>,
    caller: Caller,
    client: Client,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.pool.begin().await?;
    let before = maintenance::delete(&mut tx, id).await?;
    commit_audited(
        tx,
        &caller,
        &client,
        Change {
            action: "maintenance.delete",
            kind: "maintenance_window",
            id,
        },
        json(&before),
        None,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_and_overlong_texts_are_refused_with_their_field() {
        let ok = serde_json::json!({"name": "a", "labels": {"team": "db"}});
        assert!(check_texts(&ok, "").is_ok());
        let nul = serde_json::json!({"annotations": {"summary": "a\u{0}b"}});
        let e = check_texts(&nul, "").unwrap_err().to_string();
        assert!(
            e.contains("annotations.summary") && e.contains("NUL"),
            "{e}"
        );
        let long = serde_json::json!({"matchers": [{"value": "x".repeat(MAX_TEXT + 1)}]});
        let e = check_texts(&long, "").unwrap_err().to_string();
        assert!(e.contains("matchers[0].value"), "{e}");
    }
}
