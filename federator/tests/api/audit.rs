//! The audit log: a scripted session of changes leaves one entry per change with
//! the right before/after; `pga-federator audit verify` passes, and names the first
//! entry a superuser altered, deleted or reordered; the run-time role cannot
//! change or remove entries.

use std::process::Command;

use pga_federator::auth::Role;
use serde_json::{Value, json};

use crate::support::api::{TestApi, cluster, sql};

fn verify(api: &TestApi) -> (bool, String) {
    let cfg = api.dir.path().join("federator.toml");
    std::fs::write(
        &cfg,
        format!("[database]\nurl = \"{}\"\n", api.config.database.url),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pga-federator"))
        .args(["audit", "verify", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// (action, resource_type, resource_id, before, after) of the successful changes.
fn changes(api: &TestApi) -> Vec<(String, String, String, Value, Value)> {
    sql(
        &api.db,
        "SELECT json_build_array(action, resource_type, resource_id, before, after, actor_username, request_id IS NOT NULL) \
         FROM audit_log WHERE result = 'success' AND action NOT LIKE 'auth.%' ORDER BY seq",
    )
    .lines()
    .map(|l| {
        let v: Value = serde_json::from_str(l).unwrap();
        // The first admin comes from `users add` on the command line.
        if v[5].as_str().is_some_and(|a| !a.starts_with("cli:")) {
            assert_eq!(v[5], "admin", "{l}");
            assert_eq!(v[6], true, "request id recorded: {l}");
        }
        (
            v[0].as_str().unwrap().to_owned(),
            v[1].as_str().unwrap_or("").to_owned(),
            v[2].as_str().unwrap_or("").to_owned(),
            v[3].clone(),
            v[4].clone(),
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_audited_and_tampering_is_found() {
    let api = TestApi::start().await;
    let (_, admin) = api.session("admin", Role::Admin).await;
    // The scripted session.
    let r = api
        .call(
            "POST",
            "/api/v1/users",
            Some(&admin),
            Some(json!({"username": "bob", "role": "viewer", "email": "bob@example.com"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let bob = r.json["user"]["id"].as_i64().unwrap();
    assert!(r.json["generated_password"].as_str().unwrap().len() >= 20);
    api.patch_user(&admin, bob, json!({"role": "user"})).await;
    api.add_agent(&admin, "db1", "http://127.0.0.1:9").await;
    api.call(
        "PATCH",
        "/api/v1/agents/db1",
        Some(&admin),
        Some(json!({"labels": {"env": "prod"}, "enabled": false})),
    )
    .await;
    let (tid, secret) = api.api_token(&admin, "ci", &["read"], None).await;
    api.call(
        "DELETE",
        &format!("/api/v1/me/tokens/{tid}"),
        Some(&admin),
        None,
    )
    .await;
    api.call("DELETE", "/api/v1/agents/db1", Some(&admin), None)
        .await;
    api.call(
        "DELETE",
        &format!("/api/v1/users/{bob}"),
        Some(&admin),
        None,
    )
    .await;
    // A refused change leaves no entry and changes nothing.
    let r = api
        .call(
            "PATCH",
            "/api/v1/agents/nope",
            Some(&admin),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(r.status, 404);

    let c = changes(&api);
    let actions: Vec<&str> = c.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        actions,
        [
            "user.create",
            "user.create",
            "user.update",
            "agent.create",
            "agent.update",
            "token.create",
            "token.revoke",
            "agent.remove",
            "user.delete"
        ],
        "{c:#?}"
    );
    // users add (the first admin) from the command line.
    assert_eq!(c[0].2, "1");
    // The user made through the API: no before, the fields after, never a hash.
    assert_eq!(
        (c[1].1.as_str(), c[1].2.as_str()),
        ("user", bob.to_string().as_str())
    );
    assert_eq!(c[1].3, Value::Null);
    assert_eq!(c[1].4["email"], "bob@example.com");
    assert_eq!(c[1].4["role"], "viewer");
    assert!(!c[1].4.to_string().contains("argon2"), "{}", c[1].4);
    assert_eq!(
        (c[2].3["role"].as_str(), c[2].4["role"].as_str()),
        (Some("viewer"), Some("user"))
    );
    assert_eq!(c[3].4["url"], "http://127.0.0.1:9");
    assert_eq!(
        (c[4].3["enabled"].as_bool(), c[4].4["enabled"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(
        (c[4].3["labels"].clone(), c[4].4["labels"]["env"].clone()),
        (json!({}), json!("prod"))
    );
    assert_eq!(c[5].4["scopes"], json!(["read"]));
    assert_eq!(
        (
            c[6].3["revoked_at"].is_null(),
            c[6].4["revoked_at"].is_string()
        ),
        (true, true)
    );
    assert_eq!(
        (c[7].3["name"].as_str(), c[7].4.is_null()),
        (Some("db1"), true)
    );
    assert_eq!(
        (c[8].3["username"].as_str(), c[8].4.is_null()),
        (Some("bob"), true)
    );
    let all = sql(
        &api.db,
        "SELECT string_agg(coalesce(before::text, '') || coalesce(after::text, ''), ' ') FROM audit_log",
    );
    assert!(
        !all.contains("argon2") && !all.contains(&secret[8..]),
        "no secret or hash in the log"
    );
    // The sign-in is there too, with source address and user agent.
    let login = sql(
        &api.db,
        "SELECT host(source_addr) || ' ' || user_agent FROM audit_log WHERE action = 'auth.login' AND result = 'success'",
    );
    assert_eq!(login, "127.0.0.1 pga-api-tests");

    let (ok, out) = verify(&api);
    assert!(ok && out.contains("audit log OK"), "{out}");

    // Tampering by a superuser, each undone afterwards from a copy.
    sql(
        &api.db,
        "CREATE TABLE saved_audit AS SELECT * FROM audit_log",
    );
    let restore = "SET session_replication_role = replica; DELETE FROM audit_log; \
                   INSERT INTO audit_log OVERRIDING SYSTEM VALUE SELECT * FROM saved_audit; \
                   SET session_replication_role = origin;";
    let seq3 = sql(&api.db, "SELECT id FROM audit_log WHERE seq = 3");

    sql(
        &api.db,
        "SET session_replication_role = replica; UPDATE audit_log SET after = '{\"role\": \"admin\"}' WHERE seq = 3",
    );
    let (ok, out) = verify(&api);
    assert!(
        !ok && out.contains(&format!("entry seq 3 (id {seq3}) was altered")),
        "{out}"
    );
    sql(&api.db, restore);
    assert!(verify(&api).0);

    sql(
        &api.db,
        "SET session_replication_role = replica; DELETE FROM audit_log WHERE seq = 3",
    );
    let (ok, out) = verify(&api);
    assert!(
        !ok && out.contains("entries deleted: seq 3 to 3 are missing before seq 4"),
        "{out}"
    );
    sql(&api.db, restore);
    assert!(verify(&api).0);

    sql(
        &api.db,
        "SET session_replication_role = replica; UPDATE audit_log SET seq = -seq WHERE seq IN (3, 4); \
                  UPDATE audit_log SET seq = 7 + seq WHERE seq IN (-3, -4)",
    );
    let (ok, out) = verify(&api);
    assert!(
        !ok && out.contains("entry seq 3 (id") && out.contains("altered or moved"),
        "{out}"
    );
    sql(&api.db, restore);
    assert!(verify(&api).0);

    // Even the owner is refused by the trigger.
    let err = cluster()
        .psql(&api.db, "UPDATE audit_log SET detail = 'x' WHERE seq = 1")
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = cluster().psql(&api.db, "TRUNCATE audit_log").unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_role_may_append_but_not_change_or_remove() {
    let api = TestApi::start().await;
    api.user("admin", Role::Admin).await;
    let role = format!("rt_{}", api.db);
    sql(
        &api.db,
        &format!("CREATE ROLE {role} LOGIN IN ROLE pga_writer"),
    );
    let url = format!(
        "postgres://{role}@127.0.0.1:{}/{}",
        cluster().port(),
        api.db
    );
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let origin = pga_federator::db::audit::Origin::default();
    let entry = pga_federator::db::audit::Entry::new(
        "test.append",
        pga_federator::db::audit::Outcome::Success,
    );
    pga_federator::db::audit::append_alone(&pool, &origin, &entry)
        .await
        .expect("the writer appends");
    for stmt in [
        "UPDATE audit_log SET detail = 'x'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let e = sqlx::query(stmt).execute(&pool).await.unwrap_err();
        let code = e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("42501"), "{stmt}: {e}");
    }
    assert_eq!(sql(&api.db, "SELECT count(*) FROM audit_log"), "2");
    pool.close().await;
    assert!(verify(&api).0);
}
