//! The token attack matrix: every forged, stale or misused credential is refused
//! with 401, and every refusal is in the audit log.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::Utc;
use pga_federator::auth::Role;
use pga_federator::auth::jwt::{ACCESS_TYP, Claims, JwtKeys, REFRESH_TYP};
use pga_federator::config::read_jwt_key;
use serde_json::json;

use crate::support::api::TestApi;

fn keys(api: &TestApi) -> JwtKeys {
    let key = read_jwt_key(api.config.api.jwt_key_file.as_ref().unwrap()).unwrap();
    JwtKeys::new(&key, "pga-federator", "pga-api").unwrap()
}

/// A change made to a token's claims before signing it.
type ChangeClaims = fn(&mut Claims);

fn claims(sub: i64) -> Claims {
    let now = Utc::now().timestamp();
    Claims {
        iss: "pga-federator".into(),
        aud: "pga-api".into(),
        sub: sub.to_string(),
        iat: now,
        nbf: now,
        exp: now + 900,
        jti: "forged".into(),
        fam: None,
    }
}

/// A token with any header, the payload `claims`, signed with HMAC-SHA256 under
/// `key` (or unsigned).
fn raw_token(header: serde_json::Value, claims: &Claims, key: Option<&[u8]>) -> String {
    let head = B64.encode(header.to_string());
    let body = B64.encode(serde_json::to_string(claims).unwrap());
    let signing_input = format!("{head}.{body}");
    let sig = match key {
        None => String::new(),
        Some(k) => jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(k),
            jsonwebtoken::Algorithm::HS256,
        )
        .unwrap(),
    };
    format!("{signing_input}.{sig}")
}

/// The status of a read route (the agent list) called with `token`.
async fn reads(api: &TestApi, token: &str) -> u16 {
    api.call("GET", "/api/v1/agents", Some(token), None)
        .await
        .status
}

/// Asserts `token` is refused on a read route and that the refusal was audited
/// with `reason`.
async fn refused(api: &TestApi, what: &str, token: &str, reason: &str) {
    let before = api.audit("auth.token_refused").len();
    let r = api.call("GET", "/api/v1/agents", Some(token), None).await;
    assert_eq!(r.status, 401, "{what}: {}", r.text);
    assert_eq!(r.json["error"]["code"], "unauthorized", "{what}");
    assert!(r.headers.contains_key("www-authenticate"), "{what}");
    let after = api.audit("auth.token_refused");
    assert_eq!(after.len(), before + 1, "{what}: one audit entry");
    let last = after.last().unwrap();
    assert!(
        last.starts_with(&format!("failure|{reason}|")),
        "{what}: audited as {last}, expected {reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_misused_tokens_are_refused_and_audited() {
    let api = TestApi::start().await;
    let (admin_id, _) = api.session("admin", Role::Admin).await;
    let (viewer_id, viewer) = api.session("viewer", Role::Viewer).await;
    let k = keys(&api);
    let secret = read_jwt_key(api.config.api.jwt_key_file.as_ref().unwrap()).unwrap();

    // The genuine token works.
    let r = api.call("GET", "/api/v1/agents", Some(&viewer), None).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // alg: none (with and without a signature part).
    let none = raw_token(
        json!({"alg": "none", "typ": ACCESS_TYP}),
        &claims(admin_id),
        None,
    );
    refused(&api, "alg none", &none, "malformed").await;

    // HS256 under the wrong key.
    let wrong = JwtKeys::new(&[9u8; 32], "pga-federator", "pga-api").unwrap();
    let t = wrong.sign(ACCESS_TYP, &claims(admin_id)).unwrap();
    refused(&api, "wrong key", &t, "bad_signature").await;

    // RS/HS confusion: an RS256 header over an HMAC signature; HS512 is not the
    // algorithm either.
    for alg in ["RS256", "HS512"] {
        let t = raw_token(
            json!({"alg": alg, "typ": ACCESS_TYP}),
            &claims(admin_id),
            Some(&secret),
        );
        refused(&api, &format!("{alg} header"), &t, "wrong_algorithm").await;
    }

    // Expired, not valid yet (both well past the leeway), wrong audience, wrong
    // issuer.
    let stale_or_foreign: [(&str, ChangeClaims, &str); 4] = [
        (
            "expired",
            |c| {
                c.exp = Utc::now().timestamp() - 120;
                c.nbf = c.exp - 900;
                c.iat = c.nbf;
            },
            "expired",
        ),
        (
            "nbf in the future",
            |c| c.nbf = Utc::now().timestamp() + 600,
            "not_yet_valid",
        ),
        (
            "wrong aud",
            |c| c.aud = "another-service".into(),
            "wrong_audience_or_issuer",
        ),
        (
            "wrong iss",
            |c| c.iss = "someone-else".into(),
            "wrong_audience_or_issuer",
        ),
    ];
    for (what, change, reason) in stale_or_foreign {
        let mut c = claims(viewer_id);
        change(&mut c);
        refused(&api, what, &k.sign(ACCESS_TYP, &c).unwrap(), reason).await;
    }

    // A tampered payload: the viewer's token claims to be the admin.
    let mut parts: Vec<String> = viewer.split('.').map(str::to_owned).collect();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&B64.decode(&parts[1]).unwrap()).unwrap();
    payload["sub"] = admin_id.to_string().into();
    parts[1] = B64.encode(payload.to_string());
    refused(&api, "tampered payload", &parts.join("."), "bad_signature").await;

    // A refresh token as an access token; an access token as a refresh token.
    let (_, refresh) = api.login("viewer").await;
    refused(&api, "refresh as access", &refresh, "wrong_type").await;
    let r = api.refresh(&viewer).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(
        api.audit("auth.refresh")
            .last()
            .unwrap()
            .starts_with("failure|wrong_type|")
    );
    // A token without typ is not an access token either.
    let t = raw_token(json!({"alg": "HS256"}), &claims(viewer_id), Some(&secret));
    refused(&api, "no typ", &t, "wrong_type").await;
    let t = k.sign(REFRESH_TYP, &claims(viewer_id)).unwrap();
    refused(&api, "refresh typ", &t, "wrong_type").await;

    // Garbage and an unknown scheme.
    refused(&api, "garbage", "not.a.jwt", "malformed").await;
    let before = api.audit("auth.token_refused").len();
    let r = crate::support::api::request(
        &api.base,
        "GET",
        "/api/v1/agents",
        &[(
            "authorization".into(),
            format!("Basic {}", B64.encode("admin:x")),
        )],
        vec![],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(api.audit("auth.token_refused").len(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_refresh_token_revokes_its_family() {
    let api = TestApi::start().await;
    api.user("ops", Role::User).await;
    let (_, first) = api.login("ops").await;
    let r = api.refresh(&first).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let second = r.json["refresh_token"].as_str().unwrap().to_owned();
    let access = r.json["access_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second, "rotated");
    assert_eq!(
        api.call("GET", "/api/v1/me", Some(&access), None)
            .await
            .status,
        200
    );

    // The first token again: refused, and the whole family is revoked.
    let r = api.refresh(&first).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used")
    );
    let reuse = api.audit("auth.refresh_reuse");
    assert_eq!(reuse.len(), 1);
    assert!(
        reuse[0].starts_with("failure|refresh token reused; family revoked"),
        "{reuse:?}"
    );
    let r = api.refresh(&second).await;
    assert_eq!(r.status, 401, "the descendant is revoked too: {}", r.text);
    assert!(
        api.audit("auth.refresh")
            .last()
            .unwrap()
            .starts_with("failure|revoked_refresh_token|")
    );

    // Another sign-in of the same user is a different family and still works.
    let (_, other) = api.login("ops").await;
    let r = api.refresh(&other).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Sign-out revokes that family.
    let newest = r.json["refresh_token"].as_str().unwrap().to_owned();
    let r = api
        .call(
            "POST",
            "/api/v1/auth/logout",
            None,
            Some(json!({"refresh_token": newest.clone()})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = api.refresh(&newest).await;
    assert_eq!(r.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_revoked_expired_or_mistyped_and_disabled_users_stop_at_once() {
    let api = TestApi::start().await;
    let (_, admin) = api.session("admin", Role::Admin).await;
    let (ops_id, ops) = api.session("ops", Role::User).await;
    let (tid, token) = api.api_token(&ops, "ci", &["write"], Some(30)).await;
    assert!(token.starts_with("pga_") && token.len() == 42, "{token}");
    // Only a hash is stored.
    let stored = crate::support::api::sql(
        &api.db,
        "SELECT encode(token_hash, 'hex') || ' ' || prefix FROM api_tokens",
    );
    assert!(!stored.contains(&token[4..]), "{stored}");
    assert!(stored.ends_with(&token[..8]), "{stored}");

    let agent = json!({"name": "db1", "url": "http://127.0.0.1:9", "labels": {"env": "test"}});
    let r = api
        .call("POST", "/api/v1/agents", Some(&token), Some(agent))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let used = crate::support::api::sql(
        &api.db,
        &format!("SELECT last_used_at IS NOT NULL FROM api_tokens WHERE id = {tid}"),
    );
    assert_eq!(used, "t");

    // A bad checksum: one character changed.
    let mut bad = token.clone().into_bytes();
    bad[12] = if bad[12] == b'A' { b'B' } else { b'A' };
    refused(
        &api,
        "bad checksum",
        &String::from_utf8(bad).unwrap(),
        "bad_checksum",
    )
    .await;
    // A well-formed token nobody issued.
    let made_up = pga_federator::auth::token::generate().unwrap();
    refused(&api, "unknown token", &made_up, "unknown_api_token").await;

    // A lowered role takes effect on the next request, for the session and the token.
    let r = api
        .patch_user(&admin, ops_id, json!({"role": "viewer"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let agent2 = json!({"name": "db2", "url": "http://127.0.0.1:9"});
    assert_eq!(
        api.call("POST", "/api/v1/agents", Some(&token), Some(agent2.clone()))
            .await
            .status,
        403
    );
    assert_eq!(
        api.call("POST", "/api/v1/agents", Some(&ops), Some(agent2.clone()))
            .await
            .status,
        403
    );
    assert_eq!(reads(&api, &token).await, 200);
    api.patch_user(&admin, ops_id, json!({"role": "user"}))
        .await;

    // Disabled: both stop at once, and sign-in is refused.
    let r = api
        .patch_user(&admin, ops_id, json!({"is_active": false}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    refused(&api, "disabled user's JWT", &ops, "user_disabled").await;
    refused(&api, "disabled user's API token", &token, "user_disabled").await;
    let r = api
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "ops", "password": crate::support::api::PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 401);
    api.patch_user(&admin, ops_id, json!({"is_active": true}))
        .await;
    assert_eq!(reads(&api, &token).await, 200);

    // Revoked by id, by an admin who never saw the token.
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/tokens/{tid}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    refused(&api, "revoked token", &token, "revoked_api_token").await;

    // Expired.
    let (tid2, token2) = api.api_token(&ops, "short", &["read"], Some(1)).await;
    assert_eq!(reads(&api, &token2).await, 200);
    crate::support::api::sql(
        &api.db,
        &format!("UPDATE api_tokens SET expires_at = now() - interval '1 s' WHERE id = {tid2}"),
    );
    refused(&api, "expired token", &token2, "expired_api_token").await;

    // An API token cannot mint tokens or change passwords (sessions only).
    let (_, read) = api.api_token(&ops, "reader", &["read"], None).await;
    let r = api
        .call(
            "POST",
            "/api/v1/me/tokens",
            Some(&read),
            Some(json!({"name": "x", "scopes": ["read"]})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    // A user cannot mint an admin-scoped token.
    let r = api
        .call(
            "POST",
            "/api/v1/me/tokens",
            Some(&ops),
            Some(json!({"name": "x", "scopes": ["admin"]})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
}
