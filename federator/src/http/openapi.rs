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

/// Adds the answers every operation of a kind can give: 413 and 415 where a JSON
/// body is read, 503 everywhere (the database unavailable, a request too slow).
pub fn complete(mut doc: OpenApi) -> OpenApi {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |what: &str| {
        ResponseBuilder::new()
            .description(what)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in ops.into_iter().flatten() {
            let r = &mut op.responses.responses;
            if op.request_body.is_some() {
                r.entry("413".to_owned())
                    .or_insert_with(|| error("The body is larger than 64 KiB").into());
                r.entry("415".to_owned())
                    .or_insert_with(|| error("The body is not sent as application/json").into());
            }
            r.entry("503".to_owned()).or_insert_with(|| {
                error("The central database is unavailable, or the answer took too long; retry")
                    .into()
            });
        }
    }
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
