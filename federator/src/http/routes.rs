//! The route table: every route of the API with the one permission it declares.
//!
//! The authorization layer ([`super::authorize`]) enforces it for every request;
//! a route missing here is refused with a 500 before its handler runs, and the
//! tests check that this table and the served OpenAPI document list the same
//! routes. `docs/api.md`'s table of routes × roles is generated from it
//! ([`markdown_table`]; a test keeps the page in step).

use crate::auth::{Access, Credential, Role, Scope, allows};

/// One route and what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: &'static str,
    /// The path template as axum and OpenAPI write it.
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
}

const fn r(
    method: &'static str,
    path: &'static str,
    access: Access,
    summary: &'static str,
) -> RouteSpec {
    RouteSpec {
        method,
        path,
        access,
        summary,
    }
}

/// Every route of the API.
pub const ROUTES: &[RouteSpec] = &[
    r(
        "GET",
        "/api/v1/openapi.json",
        Access::Public,
        "this API's OpenAPI 3.1 document",
    ),
    r(
        "POST",
        "/api/v1/auth/login",
        Access::Public,
        "sign in: access and refresh token",
    ),
    r(
        "POST",
        "/api/v1/auth/refresh",
        Access::Public,
        "rotate a refresh token for new tokens",
    ),
    r(
        "POST",
        "/api/v1/auth/logout",
        Access::Public,
        "revoke a sign-in's refresh tokens",
    ),
    r("GET", "/api/v1/me", Access::Read, "the signed-in user"),
    r(
        "PUT",
        "/api/v1/me/password",
        Access::Session,
        "change one's own password",
    ),
    r(
        "GET",
        "/api/v1/me/tokens",
        Access::Read,
        "one's own API tokens",
    ),
    r(
        "POST",
        "/api/v1/me/tokens",
        Access::Session,
        "create an API token (shown once)",
    ),
    r(
        "DELETE",
        "/api/v1/me/tokens/{id}",
        Access::Read,
        "revoke one of one's own API tokens",
    ),
    r("GET", "/api/v1/tokens", Access::Admin, "every API token"),
    r(
        "DELETE",
        "/api/v1/tokens/{id}",
        Access::Admin,
        "revoke any API token",
    ),
    r("GET", "/api/v1/users", Access::Admin, "list users"),
    r("POST", "/api/v1/users", Access::Admin, "create a user"),
    r("GET", "/api/v1/users/{id}", Access::Admin, "one user"),
    r(
        "PATCH",
        "/api/v1/users/{id}",
        Access::Admin,
        "change a user's role, state, e-mail or name",
    ),
    r(
        "DELETE",
        "/api/v1/users/{id}",
        Access::Admin,
        "delete a user",
    ),
    r(
        "PUT",
        "/api/v1/users/{id}/password",
        Access::Admin,
        "set a user's password",
    ),
    r(
        "GET",
        "/api/v1/agents",
        Access::Read,
        "list agents with their pull status",
    ),
    r(
        "POST",
        "/api/v1/agents",
        Access::Write,
        "add an agent (pulled without a restart)",
    ),
    r("GET", "/api/v1/agents/{name}", Access::Read, "one agent"),
    r(
        "PATCH",
        "/api/v1/agents/{name}",
        Access::Write,
        "change an API agent's URL, labels, schedule, enabled",
    ),
    r(
        "DELETE",
        "/api/v1/agents/{name}",
        Access::Write,
        "remove an API agent (its data stays)",
    ),
    r(
        "GET",
        "/api/v1/agents/{name}/status",
        Access::Read,
        "where an agent's pulls stand",
    ),
    r("GET", "/api/v1/gaps", Access::Read, "recorded gaps"),
    r(
        "GET",
        "/api/v1/servers",
        Access::Read,
        "servers from the inventory",
    ),
    r(
        "GET",
        "/api/v1/instances",
        Access::Read,
        "PostgreSQL instances from the inventory",
    ),
    r(
        "GET",
        "/api/v1/databases",
        Access::Read,
        "databases from the inventory",
    ),
    r(
        "GET",
        "/api/v1/series",
        Access::Read,
        "search series by metric and labels",
    ),
    r(
        "GET",
        "/api/v1/query",
        Access::Read,
        "one selector over a time range and step",
    ),
    r("GET", "/api/v1/rules", Access::Read, "every alert rule"),
    r("POST", "/api/v1/rules", Access::Write, "add an alert rule"),
    r("GET", "/api/v1/rules/{id}", Access::Read, "one alert rule"),
    r(
        "PUT",
        "/api/v1/rules/{id}",
        Access::Write,
        "replace an API alert rule",
    ),
    r(
        "DELETE",
        "/api/v1/rules/{id}",
        Access::Write,
        "delete an API alert rule and its alerts",
    ),
    r(
        "PUT",
        "/api/v1/rules/{id}/enabled",
        Access::Write,
        "enable or disable any alert rule",
    ),
    r(
        "GET",
        "/api/v1/alerts",
        Access::Read,
        "alerts pending or firing now",
    ),
    r(
        "GET",
        "/api/v1/alerts/history",
        Access::Read,
        "alerts that fired, late ones included",
    ),
    r(
        "GET",
        "/api/v1/alerts/{id}",
        Access::Read,
        "one alert with its notifications",
    ),
    r(
        "GET",
        "/api/v1/maintenance-windows",
        Access::Read,
        "maintenance windows",
    ),
    r(
        "POST",
        "/api/v1/maintenance-windows",
        Access::Write,
        "add a maintenance window",
    ),
    r(
        "GET",
        "/api/v1/maintenance-windows/{id}",
        Access::Read,
        "one maintenance window",
    ),
    r(
        "PUT",
        "/api/v1/maintenance-windows/{id}",
        Access::Write,
        "replace a maintenance window",
    ),
    r(
        "DELETE",
        "/api/v1/maintenance-windows/{id}",
        Access::Write,
        "delete a maintenance window",
    ),
    r("GET", "/api/v1/audit", Access::Admin, "the audit log"),
];

/// The declared route for `method` and the matched path template.
pub fn lookup(method: &str, path: &str) -> Option<&'static RouteSpec> {
    ROUTES
        .iter()
        .find(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
}

/// Who is asked about in the role table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Anonymous,
    Viewer,
    User,
    Admin,
    /// An admin's API token with scope `read`.
    ReadToken,
}

impl Who {
    pub const ALL: [Who; 5] = [
        Who::Anonymous,
        Who::Viewer,
        Who::User,
        Who::Admin,
        Who::ReadToken,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Who::Anonymous => "anonymous",
            Who::Viewer => "viewer",
            Who::User => "user",
            Who::Admin => "admin",
            Who::ReadToken => "read token",
        }
    }

    /// Whether this caller may use a route requiring `access`; `None` for
    /// anonymous on a non-public route (answered 401 rather than 403).
    pub fn may(self, access: Access) -> Option<bool> {
        let (role, cred) = match self {
            Who::Anonymous => return (access == Access::Public).then_some(true),
            Who::Viewer => (Role::Viewer, Credential::Session),
            Who::User => (Role::User, Credential::Session),
            Who::Admin => (Role::Admin, Credential::Session),
            Who::ReadToken => (
                Role::Admin,
                Credential::ApiToken {
                    id: 0,
                    scope: Scope::Read,
                },
            ),
        };
        Some(allows(access, role, cred))
    }
}

/// The routes × roles table of docs/api.md.
pub fn markdown_table() -> String {
    let mut out = String::from("| method | route | needs |");
    for w in Who::ALL {
        out.push_str(&format!(" {} |", w.label()));
    }
    out.push_str("\n| --- | --- | --- |");
    for _ in Who::ALL {
        out.push_str(" --- |");
    }
    out.push('\n');
    for r in ROUTES {
        out.push_str(&format!(
            "| {} | `{}` | {} |",
            r.method,
            r.path,
            r.access.describe()
        ));
        for w in Who::ALL {
            out.push_str(match w.may(r.access) {
                None => " 401 |",
                Some(true) => " yes |",
                Some(false) => " 403 |",
            });
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_declared_once() {
        let mut seen = std::collections::BTreeSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.method, r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
            assert!(r.path.starts_with("/api/v1/"), "{}", r.path);
        }
        assert_eq!(
            lookup("get", "/api/v1/agents").unwrap().access,
            Access::Read
        );
        assert!(lookup("PUT", "/api/v1/agents").is_none());
    }

    #[test]
    fn the_table_has_a_row_per_route() {
        let t = markdown_table();
        assert_eq!(t.lines().count(), ROUTES.len() + 2);
        assert!(
            t.contains(
                "| GET | `/api/v1/audit` | admin; token scope admin | 401 | 403 | 403 | yes | 403 |"
            ),
            "{t}"
        );
    }
}
