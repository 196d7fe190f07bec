//! The federator's HTTP API (`[api]`): accounts, tokens, the fleet, the inventory,
//! series and queries, alert rules, alerts and maintenance windows, the audit log, under `/api/v1`, described by the OpenAPI
//! 3.1 document at `/api/v1/openapi.json`.
//!
//! - [`app`] merges the per-area routers (one file per area, thin handlers over
//!   `crate::db`) and wraps them in the layers every request passes: a request id
//!   (`X-Request-Id`, in every answer and every log line and audit entry about
//!   it), self-metrics, a body limit, and the authorization layer.
//! - Authorization: [`routes::ROUTES`] declares one [`crate::auth::Access`] per
//!   route; [`authorize`] resolves the caller ([`extract::resolve`]: JWT access
//!   token or API token, checked against the database on every request) and
//!   refuses with 401 or 403 before the handler runs.
//! - Errors: one [`error::ApiError`].
//! - [`server`] serves it over HTTPS (rustls, certificate reload) or, on loopback
//!   only, plain HTTP.

mod agents;
mod alerting;
mod audit;
mod auth;
pub mod error;
pub mod extract;
mod inventory;
mod me;
pub mod metrics;
mod openapi;
mod query;
pub mod routes;
pub mod server;
pub mod state;
mod tokens;
mod users;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;

use crate::auth::{Access, allows};
use crate::db::audit::{Entry, Outcome};
use error::{ApiError, REQUEST_ID};
pub use state::{ApiSettings, ApiState, Inner};

/// Largest request body accepted (JSON); a larger one is answered 413.
pub const MAX_BODY_BYTES: usize = 64 << 10;
/// Default and largest page of a list route.
pub const DEFAULT_PAGE: i64 = 100;
pub const MAX_PAGE: i64 = 1000;

/// The page size asked for: default [`DEFAULT_PAGE`], at least 1, capped at
/// [`MAX_PAGE`].
pub fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if n < 1 => Err(ApiError::bad(format!(
            "limit = {n}: give a page size of at least 1 (at most {MAX_PAGE} are returned)"
        ))),
        Some(n) => Ok(n.min(MAX_PAGE)),
    }
}

/// Refuses an id parameter below 1.
pub fn at_least_one(what: &str, v: Option<i64>) -> Result<(), ApiError> {
    match v {
        Some(n) if n < 1 => Err(ApiError::bad(format!("{what} = {n}: ids start at 1"))),
        _ => Ok(()),
    }
}

/// Refuses a text parameter longer than `max` characters.
pub fn at_most_chars(what: &str, v: Option<&str>, max: usize) -> Result<(), ApiError> {
    match v {
        Some(s) if s.chars().count() > max => Err(ApiError::bad(format!(
            "{what} is longer than {max} characters"
        ))),
        _ => Ok(()),
    }
}

/// The API's routes with their OpenAPI document.
pub fn app(state: ApiState) -> (Router, utoipa::openapi::OpenApi) {
    let v1 = OpenApiRouter::new()
        .merge(openapi::router())
        .merge(auth::router())
        .merge(me::router())
        .merge(tokens::router())
        .merge(users::router())
        .merge(agents::router())
        .merge(alerting::router())
        .merge(inventory::router())
        .merge(query::router())
        .merge(audit::router());
    let (router, doc) = OpenApiRouter::with_openapi(openapi::base())
        .nest("/api/v1", v1)
        .split_for_parts();
    let doc = openapi::complete(doc);
    let json = openapi::OpenApiJson(Arc::new(
        serde_json::to_string(&doc).unwrap_or_else(|_| "{}".to_owned()),
    ));
    let router = router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::Extension(json))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state);
    (router, doc)
}

/// Outermost layer: request id, `Cache-Control: no-store`, self-metrics.
async fn observe(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().clone();
    let id = new_request_id();
    let mut resp = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert("x-request-id", v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    state.metrics.request(
        &route,
        method.as_str(),
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

/// 16 random bytes, hex.
fn new_request_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::getrandom(&mut b).is_err() {
        // The OS random source failing is not a reason to refuse a request; a
        // time-based id still tells requests apart in the logs.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = t.to_le_bytes();
    }
    crate::db::audit::hex(&b)
}

/// Enforces each route's declared [`Access`].
async fn authorize(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let Some(path) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
    else {
        // Unknown route: the fallback answers 404.
        return next.run(req).await;
    };
    let method = if req.method() == Method::HEAD {
        "GET".to_owned()
    } else {
        req.method().as_str().to_owned()
    };
    let Some(spec) = routes::lookup(&method, &path) else {
        if routes::ROUTES.iter().any(|r| r.path == path) {
            // A known path with another method: the router answers 405.
            return next.run(req).await;
        }
        return ApiError::internal(format!("route {method} {path} declares no permission"))
            .into_response();
    };
    if spec.access == Access::Public {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let caller = match extract::resolve(&state, &parts).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return ApiError::Unauthorized(
                "sign in first: send `Authorization: Bearer TOKEN` (an access token from \
                 /api/v1/auth/login, or an API token)"
                    .to_owned(),
            )
            .into_response();
        }
        Err(e) => return e.into_response(),
    };
    if !allows(spec.access, caller.role, caller.credential) {
        let entry = Entry::new("auth.denied", Outcome::Denied)
            .actor(caller.actor())
            .resource("route", format!("{} {}", spec.method, spec.path));
        let client = extract::Client::from_parts(&parts);
        if let Err(e) = crate::db::audit::append_alone(&state.pool, &client.0, &entry).await {
            return ApiError::from(e).into_response();
        }
        return ApiError::Forbidden(format!(
            "{} {} needs {}; you are {}{}",
            spec.method,
            spec.path,
            spec.access.describe(),
            caller.role,
            match caller.credential {
                crate::auth::Credential::ApiToken { scope, .. } =>
                    format!(" with an API token of scope {scope}"),
                crate::auth::Credential::Session => String::new(),
            }
        ))
        .into_response();
    }
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}
