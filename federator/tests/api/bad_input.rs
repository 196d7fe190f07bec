//! Bad input: oversized or malformed JSON, unknown fields, wrong types, injection
//! attempts in every string parameter, huge page sizes, unknown routes and
//! methods. Each gets a 4xx with a message and no stack trace or SQL; nothing
//! stored changes.

use pga_federator::auth::Role;
use serde_json::json;

use crate::support::api::{TestApi, request, sql};

const INJECTION: &str = "x'; DROP TABLE users; --";

fn snapshot(api: &TestApi) -> String {
    sql(
        &api.db,
        "SELECT (SELECT string_agg(to_jsonb(u)::text, ',' ORDER BY id) FROM users u) || \
                (SELECT coalesce(string_agg(to_jsonb(a)::text, ',' ORDER BY id), '') FROM agents a) || \
                (SELECT count(*) FROM api_tokens)::text",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_4xx_with_a_message_and_change_nothing() {
    let api = TestApi::start().await;
    let (admin_id, admin) = api.session("admin", Role::Admin).await;
    api.add_agent(&admin, "db1", "http://127.0.0.1:9").await;
    let before = snapshot(&api);
    let bearer = vec![
        ("authorization".to_owned(), format!("Bearer {admin}")),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    let huge = format!(
        "{{\"name\": \"db2\", \"url\": \"{}\"}}",
        "a".repeat(100 << 10)
    );
    let cases: Vec<(&str, String, Vec<u8>, u16)> = vec![
        ("POST", "/api/v1/agents".into(), huge.into_bytes(), 413),
        ("POST", "/api/v1/agents".into(), b"{\"name\": ".to_vec(), 400),
        ("POST", "/api/v1/agents".into(), b"[1, 2".to_vec(), 400),
        ("POST", "/api/v1/agents".into(), json!({"name": "db2", "url": "http://127.0.0.1:9", "owner": "me"}).to_string().into_bytes(), 400),
        ("POST", "/api/v1/agents".into(), json!({"name": 5, "url": "http://127.0.0.1:9"}).to_string().into_bytes(), 400),
        ("POST", "/api/v1/agents".into(), json!({"name": INJECTION, "url": "http://127.0.0.1:9"}).to_string().into_bytes(), 400),
        ("POST", "/api/v1/agents".into(), json!({"name": "db2", "url": INJECTION}).to_string().into_bytes(), 400),
        ("POST", "/api/v1/agents".into(), json!({"name": "db2", "url": "http://127.0.0.1:9", "labels": {INJECTION: "x"}}).to_string().into_bytes(), 400),
        ("POST", "/api/v1/agents".into(), json!({"name": "db2", "url": "http://127.0.0.1:9", "schedule": INJECTION}).to_string().into_bytes(), 400),
        ("POST", "/api/v1/agents".into(), json!({"name": "db1", "url": "http://127.0.0.1:9"}).to_string().into_bytes(), 409),
        ("PATCH", "/api/v1/agents/db1".into(), json!({"enabled": "yes"}).to_string().into_bytes(), 400),
        ("PATCH", "/api/v1/agents/db1".into(), json!({"url": "ftp://x"}).to_string().into_bytes(), 400),
        ("PATCH", format!("/api/v1/agents/{}", "x%27%3B%20DROP%20TABLE%20users%3B%20--"), json!({"enabled": false}).to_string().into_bytes(), 404),
        ("POST", "/api/v1/users".into(), json!({"username": INJECTION, "role": "viewer"}).to_string().into_bytes(), 400),
        ("POST", "/api/v1/users".into(), json!({"username": "carol", "role": "superuser"}).to_string().into_bytes(), 400),
        ("POST", "/api/v1/users".into(), json!({"username": "carol", "role": "viewer", "password": "short"}).to_string().into_bytes(), 400),
        ("PATCH", format!("/api/v1/users/{admin_id}"), json!({"role": "viewer"}).to_string().into_bytes(), 409),
        ("PATCH", format!("/api/v1/users/{admin_id}"), json!({"is_active": false}).to_string().into_bytes(), 409),
        ("DELETE", format!("/api/v1/users/{admin_id}"), vec![], 409),
        ("GET", "/api/v1/users/abc".into(), vec![], 400),
        ("GET", "/api/v1/users/99999999999999999999999".into(), vec![], 400),
        ("GET", "/api/v1/users?limit=-1".into(), vec![], 400),
        ("GET", "/api/v1/users?limit=ten".into(), vec![], 400),
        ("GET", "/api/v1/users?unknown=1".into(), vec![], 400),
        ("GET", "/api/v1/query?selector=up%7Ba%3D%22%27%3B%20DROP%20TABLE%20series%3B%20--%22%7D&step=oops".into(), vec![], 400),
        ("GET", "/api/v1/query?selector=%7B".into(), vec![], 400),
        ("GET", "/api/v1/query?selector=up&start=yesterday".into(), vec![], 400),
        ("GET", "/api/v1/query?selector=up&start=0&end=4000000000&step=1s".into(), vec![], 400),
        ("GET", "/api/v1/query?selector=up&fn=median".into(), vec![], 400),
        ("GET", "/api/v1/series".into(), vec![], 400),
        ("GET", "/api/v1/nope".into(), vec![], 404),
        ("GET", "/nope".into(), vec![], 404),
        ("PUT", "/api/v1/agents".into(), vec![], 405),
        ("DELETE", "/api/v1/me".into(), vec![], 405),
        ("POST", "/api/v1/me/tokens".into(), json!({"name": "t", "scopes": ["root"]}).to_string().into_bytes(), 400),
        ("POST", "/api/v1/me/tokens".into(), json!({"name": "t", "scopes": ["read"], "expires_in_days": 0}).to_string().into_bytes(), 400),
    ];
    for (method, path, body, want) in cases {
        let r = request(&api.base, method, &path, &bearer, body).await;
        assert_eq!(r.status, want, "{method} {path}: {}", r.text);
        let message = r.json["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty(),
            "{method} {path}: a message: {}",
            r.text
        );
        assert!(r.json["error"]["request_id"].is_string(), "{method} {path}");
        for leak in ["SELECT", "INSERT", "sqlx", "panicked", "backtrace", ".rs:"] {
            assert!(
                !r.text.contains(leak),
                "{method} {path} shows {leak}: {}",
                r.text
            );
        }
        assert!(
            r.text.len() < 2000,
            "{method} {path}: the answer does not echo huge input"
        );
    }
    // Injection attempts where they are valid input: bound, found nothing.
    for path in [
        "/api/v1/series?match=up%7Ba%3D%22%27%3B%20DROP%20TABLE%20series%3B%20--%22%7D",
        "/api/v1/gaps?agent=x%27%3B%20DROP%20TABLE%20gaps%3B%20--",
        "/api/v1/audit?action=x%27%3B%20DROP%20TABLE%20audit_log%3B%20--",
        "/api/v1/agents?after=x%27%3B%20DROP%20TABLE%20agents%3B%20--",
    ] {
        let r = request(&api.base, "GET", path, &bearer, vec![]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
    }
    // A huge page size is capped.
    for i in 0..3 {
        api.user(&format!("u{i}"), Role::Viewer).await;
    }
    let r = request(
        &api.base,
        "GET",
        "/api/v1/users?limit=100000000",
        &bearer,
        vec![],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["items"].as_array().unwrap().len(), 4);
    sql(&api.db, "DELETE FROM users WHERE username LIKE 'u_'");
    assert_eq!(snapshot(&api), before, "nothing stored changed");
}
