//! Extractors: the caller ([`Caller`], resolved once per request from a JWT access
//! token or an API token by [`resolve`]), where the request comes from
//! ([`Client`]), and JSON, query and path extractors whose rejections are
//! [`ApiError`]s.

mod caller;

pub use caller::{Caller, resolve};

use std::net::SocketAddr;

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;

use super::error::{ApiError, current_request_id};
use crate::db::audit::Origin;

/// A JSON body; unknown fields, wrong types, bad syntax and oversized bodies are
/// refused with a 4xx that says which.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// Query parameters.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Path parameters.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Deserializes an optional integer that JSON may write as `30` or `30.0` (both
/// are integers to JSON Schema).
pub fn integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::Deserialize;
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
        _ => Err(D::Error::custom(format!(
            "{n} is not a whole number in range"
        ))),
    }
}

/// The TCP peer of the connection (set by the server for each connection).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Where the request comes from, for the audit log.
#[derive(Debug, Clone)]
pub struct Client(pub Origin);

impl Client {
    pub fn from_parts(parts: &Parts) -> Client {
        let source = parts.extensions.get::<Peer>().map(|p| p.0.ip());
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(super::error::clip);
        Client(Origin {
            source,
            user_agent,
            request_id: Some(current_request_id()),
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Client::from_parts(parts))
    }
}
