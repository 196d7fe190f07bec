//! The OpenAPI 3.1 document, generated from the route definitions, and its route.

use std::sync::Arc;

use axum::Extension;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::state::ApiState;

/// The rendered document, shared by every request.
#[derive(Debug, Clone)]
pub struct OpenApiJson(pub Arc<String>);

/// The document's head: title, version, the bearer scheme.
pub fn base() -> OpenApi {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("pgAnalytics federator API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Accounts, tokens, the agent fleet, the inventory, series and queries, and \
                     the audit log of a pgAnalytics v3 federator. Authenticate with \
                     `Authorization: Bearer TOKEN`: an access token from /api/v1/auth/login or \
                     an API token (pga_…). Every answer carries X-Request-Id; errors are \
                     {\"error\": {\"code\", \"message\", \"request_id\"}}.",
                ))
                .build(),
        )
        .build();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "A JWT access token from /api/v1/auth/login, or an API token",
                ))
                .build(),
        ),
    );
    doc
}

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
async fn openapi_json(Extension(doc): Extension<OpenApiJson>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.as_str().to_owned(),
    )
}
