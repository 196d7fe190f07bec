//! The role matrix: every route of the route table × {anonymous, viewer, user,
//! admin, read-scoped token} gets the expected status. The test is driven by
//! `pga_federator::http::routes::ROUTES`: a route without an example request here
//! fails it, so no route is added without its row.

use pga_federator::auth::Role;
use pga_federator::http::routes::{ROUTES, RouteSpec, Who};
use serde_json::{Value, json};

use crate::support::api::{PASSWORD, TestApi, sql};

/// Who calls, and the session of the user behind the credential.
struct Callers {
    viewer: String,
    user: String,
    admin: String,
    read_token: String,
    viewer_id: i64,
}

impl Callers {
    fn credential(&self, who: Who) -> Option<&str> {
        match who {
            Who::Anonymous => None,
            Who::Viewer => Some(&self.viewer),
            Who::User => Some(&self.user),
            Who::Admin => Some(&self.admin),
            Who::ReadToken => Some(&self.read_token),
        }
    }

    /// The JWT of the person behind `who` (the read token is the admin's).
    fn session(&self, who: Who) -> &str {
        match who {
            Who::Viewer => &self.viewer,
            Who::User => &self.user,
            _ => &self.admin,
        }
    }
}

fn rule_body(tag: &str) -> Value {
    json!({"name": format!("Rule{tag}"), "query": "last(pg_up[1m])", "comparison": "==",
           "threshold": 0, "severity": "critical"})
}

fn window_body() -> Value {
    json!({"matchers": [{"name": "agent", "op": "=", "value": "db1"}],
           "starts_at_ms": 1_767_225_600_000_i64, "ends_at_ms": 1_767_232_800_000_i64})
}

/// One example request for a route: the path (parameters filled), the body, and
/// the status a caller who may use the route gets.
async fn example(
    api: &TestApi,
    c: &Callers,
    r: &RouteSpec,
    who: Who,
    n: usize,
) -> (String, Option<Value>, u16) {
    let tag = format!("{}{n}", who.label().replace(' ', ""));
    match (r.method, r.path) {
        ("GET", "/api/v1/openapi.json") => (r.path.into(), None, 200),
        ("POST", "/api/v1/auth/login") => (
            r.path.into(),
            Some(json!({"username": "viewer", "password": PASSWORD})),
            200,
        ),
        ("POST", "/api/v1/auth/refresh") | ("POST", "/api/v1/auth/logout") => {
            let (_, refresh) = api.login("viewer").await;
            let ok = if r.path.ends_with("refresh") {
                200
            } else {
                204
            };
            (r.path.into(), Some(json!({"refresh_token": refresh})), ok)
        }
        ("GET", "/api/v1/me") | ("GET", "/api/v1/me/tokens") => (r.path.into(), None, 200),
        ("PUT", "/api/v1/me/password") => (
            r.path.into(),
            Some(json!({"current_password": PASSWORD, "new_password": PASSWORD})),
            204,
        ),
        ("POST", "/api/v1/me/tokens") => (
            r.path.into(),
            Some(json!({"name": tag, "scopes": ["read"]})),
            201,
        ),
        ("DELETE", "/api/v1/me/tokens/{id}") => {
            let (id, _) = api.api_token(c.session(who), &tag, &["read"], None).await;
            (format!("/api/v1/me/tokens/{id}"), None, 204)
        }
        ("GET", "/api/v1/tokens") | ("GET", "/api/v1/users") => (r.path.into(), None, 200),
        ("DELETE", "/api/v1/tokens/{id}") => {
            let (id, _) = api.api_token(&c.admin, &tag, &["read"], None).await;
            (format!("/api/v1/tokens/{id}"), None, 204)
        }
        ("POST", "/api/v1/users") => (
            r.path.into(),
            Some(json!({"username": tag, "role": "viewer", "password": PASSWORD})),
            201,
        ),
        ("GET", "/api/v1/users/{id}") => (format!("/api/v1/users/{}", c.viewer_id), None, 200),
        ("PATCH", "/api/v1/users/{id}") => {
            let id = api.user(&tag, Role::Viewer).await;
            (
                format!("/api/v1/users/{id}"),
                Some(json!({"full_name": "Changed"})),
                200,
            )
        }
        ("DELETE", "/api/v1/users/{id}") => {
            let id = api.user(&tag, Role::Viewer).await;
            (format!("/api/v1/users/{id}"), None, 204)
        }
        ("PUT", "/api/v1/users/{id}/password") => {
            let id = api.user(&tag, Role::Viewer).await;
            (
                format!("/api/v1/users/{id}/password"),
                Some(json!({"password": "another long password"})),
                204,
            )
        }
        ("GET", "/api/v1/agents") => (r.path.into(), None, 200),
        ("POST", "/api/v1/agents") => (
            r.path.into(),
            Some(json!({"name": tag, "url": "http://127.0.0.1:9"})),
            201,
        ),
        ("GET", "/api/v1/agents/{name}") => ("/api/v1/agents/fixed".into(), None, 200),
        ("GET", "/api/v1/agents/{name}/status") => {
            ("/api/v1/agents/fixed/status".into(), None, 200)
        }
        ("PATCH", "/api/v1/agents/{name}") | ("DELETE", "/api/v1/agents/{name}") => {
            sql(
                &api.db,
                &format!("INSERT INTO agents (name, url) VALUES ('{tag}', 'http://127.0.0.1:9')"),
            );
            if r.method == "PATCH" {
                (
                    format!("/api/v1/agents/{tag}"),
                    Some(json!({"enabled": false})),
                    200,
                )
            } else {
                (format!("/api/v1/agents/{tag}"), None, 204)
            }
        }
        ("GET", "/api/v1/gaps")
        | ("GET", "/api/v1/servers")
        | ("GET", "/api/v1/instances")
        | ("GET", "/api/v1/databases")
        | ("GET", "/api/v1/audit") => (r.path.into(), None, 200),
        ("GET", "/api/v1/series") => ("/api/v1/series?match=up".into(), None, 200),
        ("GET", "/api/v1/query") => ("/api/v1/query?selector=up".into(), None, 200),
        ("GET", "/api/v1/rules")
        | ("GET", "/api/v1/alerts")
        | ("GET", "/api/v1/alerts/history")
        | ("GET", "/api/v1/maintenance-windows") => (r.path.into(), None, 200),
        ("POST", "/api/v1/rules") => (r.path.into(), Some(rule_body(&tag)), 201),
        ("GET", "/api/v1/rules/{id}")
        | ("PUT", "/api/v1/rules/{id}")
        | ("DELETE", "/api/v1/rules/{id}")
        | ("PUT", "/api/v1/rules/{id}/enabled") => {
            let id = sql(
                &api.db,
                &format!(
                    "INSERT INTO alert_rules (name, query, comparison, threshold, severity) \
                     VALUES ('R{tag}', 'last(pg_up[1m])', '==', 0, 'critical') RETURNING id"
                ),
            );
            let path = r.path.replace("{id}", &id);
            match r.method {
                "GET" => (path, None, 200),
                "DELETE" => (path, None, 204),
                _ if r.path.ends_with("enabled") => (path, Some(json!({"enabled": false})), 200),
                _ => (path, Some(rule_body(&tag)), 200),
            }
        }
        ("GET", "/api/v1/alerts/{id}") => {
            let id = sql(
                &api.db,
                &format!(
                    "WITH r AS (INSERT INTO alert_rules (name, query, comparison, threshold, severity) \
                                VALUES ('A{tag}', 'last(pg_up[1m])', '==', 0, 'critical') RETURNING id) \
                     INSERT INTO alerts (rule_id, state, started_at, fingerprint) \
                     SELECT id, 'pending', now(), 'f' FROM r RETURNING id"
                ),
            );
            (r.path.replace("{id}", &id), None, 200)
        }
        ("POST", "/api/v1/maintenance-windows") => (r.path.into(), Some(window_body()), 201),
        ("GET", "/api/v1/maintenance-windows/{id}")
        | ("PUT", "/api/v1/maintenance-windows/{id}")
        | ("DELETE", "/api/v1/maintenance-windows/{id}") => {
            let id = sql(
                &api.db,
                "INSERT INTO maintenance_windows (matchers, starts_at, ends_at) \
                 VALUES ('[{\"name\": \"agent\", \"op\": \"=\", \"value\": \"db1\"}]', now(), \
                         now() + interval '1 hour') RETURNING id",
            );
            let path = r.path.replace("{id}", &id);
            match r.method {
                "GET" => (path, None, 200),
                "DELETE" => (path, None, 204),
                _ => (path, Some(window_body()), 200),
            }
        }
        (m, p) => {
            panic!("no example request for {m} {p}: add its row to federator/tests/api/roles.rs")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_caller_as_its_permission_says() {
    let api = TestApi::start().await;
    let (viewer_id, viewer) = api.session("viewer", Role::Viewer).await;
    let (_, user) = api.session("user", Role::User).await;
    let (_, admin) = api.session("admin", Role::Admin).await;
    let (_, read_token) = api.api_token(&admin, "read-only", &["read"], None).await;
    sql(
        &api.db,
        "INSERT INTO agents (name, url) VALUES ('fixed', 'http://127.0.0.1:9')",
    );
    let c = Callers {
        viewer,
        user,
        admin,
        read_token,
        viewer_id,
    };
    let mut failures = Vec::new();
    let mut n = 0;
    for r in ROUTES {
        for who in Who::ALL {
            n += 1;
            let (path, body, ok) = example(&api, &c, r, who, n).await;
            let expected = match who.may(r.access) {
                None => 401,
                Some(false) => 403,
                Some(true) => ok,
            };
            let reply = api.call(r.method, &path, c.credential(who), body).await;
            if reply.status != expected {
                failures.push(format!(
                    "{} {} as {}: {} (expected {expected}): {}",
                    r.method,
                    path,
                    who.label(),
                    reply.status,
                    reply.text.chars().take(200).collect::<String>()
                ));
            }
            assert!(
                reply.headers.contains_key("x-request-id"),
                "{} {}",
                r.method,
                path
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} answers differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every 403 of a signed-in caller is in the audit log.
    let denied: usize = sql(
        &api.db,
        "SELECT count(*) FROM audit_log WHERE action = 'auth.denied'",
    )
    .parse()
    .unwrap();
    let expected_denied = ROUTES
        .iter()
        .map(|r| {
            Who::ALL
                .iter()
                .filter(|w| w.may(r.access) == Some(false))
                .count()
        })
        .sum::<usize>();
    assert_eq!(denied, expected_denied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_table_the_openapi_document_and_the_docs_agree() {
    let api = TestApi::start().await;
    let r = api.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["openapi"].as_str().unwrap(), "3.1.0");
    let mut served = std::collections::BTreeSet::new();
    for (path, item) in r.json["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                served.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let declared: std::collections::BTreeSet<_> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(served, declared, "OpenAPI paths vs the route table");

    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md")).unwrap();
    let table = pga_federator::http::routes::markdown_table();
    assert!(
        doc.contains(&table),
        "docs/api.md's route table is out of date; replace it with:\n{table}"
    );
}
