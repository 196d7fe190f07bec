//! Alerting through the API: rules are added, read, replaced, enabled, disabled
//! and deleted, each change audited; a bad rule is refused with its field and fix
//! and never stored; a rule file's rule is read-only but can be disabled; alerts
//! are listed current and in history, one alert with its deliveries; maintenance
//! windows are managed; a viewer reads but cannot change.

use pga_federator::auth::Role;
use serde_json::json;

use crate::support::api::{TestApi, sql};

fn rule(name: &str, threshold: f64) -> serde_json::Value {
    json!({
        "name": name,
        "query": "max(pg_oldest_xact_age_seconds[5m])",
        "comparison": ">",
        "threshold": threshold,
        "for_secs": 60,
        "severity": "warning",
        "labels": {"team": "db"},
        "annotations": {"summary": "longest transaction {{ $value }} s on {{ $labels.agent }}"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_alerts_and_maintenance_windows_are_managed_and_audited() {
    let api = TestApi::start().await;
    let (_, ops) = api.session("ops", Role::User).await;
    let (_, viewer) = api.session("watcher", Role::Viewer).await;

    // Added, then read back as stored.
    let r = api
        .call(
            "POST",
            "/api/v1/rules",
            Some(&ops),
            Some(rule("LongTx", 3600.0)),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["id"].as_i64().unwrap();
    assert_eq!(r.json["origin"], "api");
    assert_eq!(r.json["spec"]["threshold"], 3600.0);
    let r = api
        .call("GET", &format!("/api/v1/rules/{id}"), Some(&viewer), None)
        .await;
    assert_eq!(
        (r.status, r.json["spec"]["name"].as_str()),
        (200, Some("LongTx")),
        "{}",
        r.text
    );
    let r = api.call("GET", "/api/v1/rules", Some(&viewer), None).await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 1, "{}", r.text);

    // The same name again: 409, nothing stored.
    let r = api
        .call(
            "POST",
            "/api/v1/rules",
            Some(&ops),
            Some(rule("LongTx", 10.0)),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);

    // A bad rule: every problem named with its field and fix, nothing stored.
    let mut bad = rule("Broken", 1.0);
    bad["query"] = json!("avg(pg_up[5m]");
    bad["severity"] = json!("loud");
    let r = api
        .call("POST", "/api/v1/rules", Some(&ops), Some(bad))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let msg = r.json["error"]["message"].as_str().unwrap();
    assert!(msg.contains("query") && msg.contains("severity"), "{msg}");
    assert!(msg.contains("info, warning or critical"), "{msg}");
    // A text PostgreSQL cannot store is refused by field, not a server error.
    let mut nul = rule("Nul", 1.0);
    nul["annotations"]["summary"] = json!("a\u{0}b");
    let r = api
        .call("POST", "/api/v1/rules", Some(&ops), Some(nul))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("annotations.summary"), "{}", r.text);
    assert_eq!(sql(&api.db, "SELECT count(*) FROM alert_rules"), "1");

    // A viewer may read but not change.
    let r = api
        .call(
            "POST",
            "/api/v1/rules",
            Some(&viewer),
            Some(rule("Other", 1.0)),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);

    // Replaced: the revision grows. Disabled and enabled again.
    let r = api
        .call(
            "PUT",
            &format!("/api/v1/rules/{id}"),
            Some(&ops),
            Some(rule("LongTx", 1800.0)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (
            r.json["revision"].as_i64(),
            r.json["spec"]["threshold"].as_f64()
        ),
        (Some(2), Some(1800.0))
    );
    let r = api
        .call(
            "PUT",
            &format!("/api/v1/rules/{id}/enabled"),
            Some(&ops),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(
        (r.status, r.json["spec"]["enabled"].as_bool()),
        (200, Some(false)),
        "{}",
        r.text
    );
    assert_eq!(
        sql(
            &api.db,
            &format!("SELECT enabled FROM alert_rules WHERE id = {id}")
        ),
        "f"
    );
    api.call(
        "PUT",
        &format!("/api/v1/rules/{id}/enabled"),
        Some(&ops),
        Some(json!({"enabled": true})),
    )
    .await;

    // A rule file's rule: read-only here, but it can be disabled.
    sql(
        &api.db,
        "INSERT INTO alert_rules (name, query, comparison, threshold, severity, origin) \
         VALUES ('PgDown', 'last(pg_up[1m])', '==', 0, 'critical', 'file:/etc/pga/rules/availability.toml')",
    );
    let file_id: i64 = sql(&api.db, "SELECT id FROM alert_rules WHERE name = 'PgDown'")
        .parse()
        .unwrap();
    let r = api
        .call(
            "PUT",
            &format!("/api/v1/rules/{file_id}"),
            Some(&ops),
            Some(rule("PgDown", 1.0)),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("availability.toml"), "{}", r.text);
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/rules/{file_id}"),
            Some(&ops),
            None,
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    let r = api
        .call(
            "PUT",
            &format!("/api/v1/rules/{file_id}/enabled"),
            Some(&ops),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Alerts: one firing and one resolved late alert, as the evaluator writes them.
    sql(
        &api.db,
        &format!(
            "INSERT INTO alerts (rule_id, labels, state, value, started_at, fired_at, fingerprint) \
             VALUES ({id}, '{{\"alertname\": \"LongTx\", \"agent\": \"db1\"}}', 'firing', 4000, \
                     now() - interval '2 hours', now() - interval '1 hour', 'f1'); \
             INSERT INTO alerts (rule_id, labels, state, value, started_at, fired_at, resolved_at, \
                                 resolved_reason, late, fingerprint) \
             VALUES ({id}, '{{\"alertname\": \"LongTx\", \"agent\": \"db2\"}}', 'resolved', 2000, \
                     now() - interval '5 hours', now() - interval '4 hours', now() - interval '3 hours', \
                     'cleared', true, 'f2')"
        ),
    );
    let r = api.call("GET", "/api/v1/alerts", Some(&viewer), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let items = r.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", r.text);
    assert_eq!(
        (items[0]["state"].as_str(), items[0]["rule"].as_str()),
        (Some("firing"), Some("LongTx"))
    );
    let alert_id = items[0]["id"].as_i64().unwrap();
    let r = api
        .call(
            "GET",
            "/api/v1/alerts/history?late=true",
            Some(&viewer),
            None,
        )
        .await;
    let items = r.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", r.text);
    assert_eq!(
        (
            items[0]["late"].as_bool(),
            items[0]["resolved_reason"].as_str()
        ),
        (Some(true), Some("cleared"))
    );
    let r = api
        .call("GET", "/api/v1/alerts/history", Some(&viewer), None)
        .await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 2, "{}", r.text);
    let r = api
        .call("GET", "/api/v1/alerts?state=resolved", Some(&viewer), None)
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = api
        .call(
            "GET",
            "/api/v1/alerts/history?since_ms=99999999999999999",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = api
        .call(
            "GET",
            &format!("/api/v1/alerts/{alert_id}"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["alert"]["labels"]["agent"], "db1");
    assert!(r.json["deliveries"].as_array().unwrap().is_empty());
    let r = api
        .call("GET", "/api/v1/alerts/999999", Some(&viewer), None)
        .await;
    assert_eq!(r.status, 404, "{}", r.text);

    // Maintenance windows.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let window = json!({
        "matchers": [{"name": "agent", "op": "=", "value": "db1"}],
        "starts_at_ms": now_ms,
        "ends_at_ms": now_ms + 3_600_000,
        "comment": "kernel upgrade"
    });
    let r = api
        .call(
            "POST",
            "/api/v1/maintenance-windows",
            Some(&ops),
            Some(window.clone()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let wid = r.json["id"].as_i64().unwrap();
    let r = api
        .call("GET", "/api/v1/maintenance-windows", Some(&viewer), None)
        .await;
    assert_eq!(r.json["items"].as_array().unwrap().len(), 1, "{}", r.text);
    let mut ended = window.clone();
    ended["ends_at_ms"] = json!(now_ms + 1);
    let r = api
        .call(
            "PUT",
            &format!("/api/v1/maintenance-windows/{wid}"),
            Some(&ops),
            Some(ended),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut bad = window.clone();
    bad["matchers"] = json!([]);
    bad["ends_at_ms"] = json!(now_ms - 1);
    let r = api
        .call("POST", "/api/v1/maintenance-windows", Some(&ops), Some(bad))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("matchers") && r.text.contains("ends_at_ms"),
        "{}",
        r.text
    );
    let r = api
        .call(
            "DELETE",
            &format!("/api/v1/maintenance-windows/{wid}"),
            Some(&ops),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = api
        .call(
            "GET",
            &format!("/api/v1/maintenance-windows/{wid}"),
            Some(&ops),
            None,
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);

    // Deleted: its alerts go with it.
    let r = api
        .call("DELETE", &format!("/api/v1/rules/{id}"), Some(&ops), None)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(sql(&api.db, "SELECT count(*) FROM alerts"), "0");

    // One audit entry per change, with the caller.
    for action in [
        "rule.create",
        "rule.update",
        "rule.delete",
        "maintenance.create",
        "maintenance.update",
        "maintenance.delete",
    ] {
        let entries = api.audit(action);
        assert_eq!(entries.len(), 1, "{action}: {entries:?}");
        assert!(
            entries[0].starts_with("success||ops|"),
            "{action}: {entries:?}"
        );
    }
    assert_eq!(api.audit("rule.disable").len(), 2);
    assert_eq!(api.audit("rule.enable").len(), 1);
}
