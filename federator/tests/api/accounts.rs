//! Accounts: a hash made with weaker parameters is replaced at sign-in; password
//! changes; the last admin cannot be removed; sign-ins wait for a hashing slot.

use pga_federator::auth::Role;
use pga_federator::auth::password::{HashParams, Hasher};
use serde_json::json;

use crate::support::api::{PASSWORD, TestApi, sql};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weaker_hash_is_replaced_at_sign_in() {
    let api = TestApi::start_with(|c| c.api.argon2_iterations = 3).await;
    let id = api.user("old", Role::Viewer).await;
    let weak = Hasher::new(HashParams::default())
        .unwrap()
        .hash(PASSWORD)
        .unwrap();
    sql(
        &api.db,
        &format!("UPDATE users SET password_hash = '{weak}' WHERE id = {id}"),
    );
    api.login("old").await;
    let stored = sql(
        &api.db,
        &format!("SELECT password_hash FROM users WHERE id = {id}"),
    );
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=3,p=1$"),
        "{stored}"
    );
    let detail = sql(
        &api.db,
        "SELECT detail FROM audit_log WHERE action = 'auth.login' AND result = 'success'",
    );
    assert!(detail.contains("rehashed"), "{detail}");
    // And the new hash works.
    api.login("old").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_change_and_the_last_admin_stays() {
    let api = TestApi::start().await;
    let (admin_id, admin) = api.session("admin", Role::Admin).await;
    let (_, refresh) = api.login("admin").await;
    let r = api
        .call(
            "PUT",
            "/api/v1/me/password",
            Some(&admin),
            Some(json!({"current_password": "wrong", "new_password": "a brand new password"})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    // A wrong current password is throttled like a failed sign-in.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = api
        .call(
            "PUT",
            "/api/v1/me/password",
            Some(&admin),
            Some(json!({"current_password": PASSWORD, "new_password": "a brand new password"})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    // Sessions' refresh tokens are revoked; the new password signs in.
    let r = api.refresh(&refresh).await;
    assert_eq!(r.status, 401);
    let r = api
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "admin", "password": "a brand new password"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let audit = api.audit("user.change_password");
    assert_eq!(audit.len(), 2);
    assert!(
        audit[0].starts_with("failure|bad_current_password|admin"),
        "{audit:?}"
    );
    assert!(audit[1].starts_with("success||admin"), "{audit:?}");
    // The last active admin cannot be deleted (nor demoted or disabled, by itself or
    // another admin).
    let other = api.user("other", Role::Admin).await;
    let r = api.patch_user(&admin, other, json!({"role": "user"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/users/{admin_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(
        sql(
            &api.db,
            "SELECT count(*) FROM users WHERE role = 'admin' AND is_active"
        ),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_wait_for_a_hashing_slot() {
    let api = TestApi::start_with(|c| {
        c.api.hash_concurrency = 1;
        c.api.hash_wait_ms = 100;
    })
    .await;
    api.user("u", Role::Viewer).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let (base, body) = (
            api.base.clone(),
            json!({"username": "u", "password": PASSWORD}).to_string(),
        );
        tasks.spawn(async move {
            crate::support::api::request(
                &base,
                "POST",
                "/api/v1/auth/login",
                &[("content-type".into(), "application/json".into())],
                body.into_bytes(),
            )
            .await
        });
    }
    let mut statuses = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        if r.status == 503 {
            assert!(r.headers.contains_key("retry-after"));
            assert_eq!(r.json["error"]["code"], "unavailable");
        }
        statuses.push(r.status);
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let busy = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(ok + busy, 24, "{statuses:?}");
    assert!(
        ok >= 1 && busy >= 1,
        "one slot: some wait too long ({statuses:?})"
    );
}
