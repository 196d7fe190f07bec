//! Agents through the API: added, they are pulled within one schedule period with
//! no restart; removed, they are no longer pulled and their data stays.
//! Configuration agents are listed read-only.

use std::time::{Duration, Instant};

use pga_federator::auth::Role;
use serde_json::json;

use crate::support::api::{TestApi, pull_settings, start_pulling, stored_samples};
use crate::support::pull::{SimOptions, StoreAgent, certs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_added_through_the_api_is_pulled_without_a_restart_and_stops_when_removed() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let agent = tokio::task::block_in_place(|| {
        StoreAgent::start(&dir.path().join("a1"), &tls, SimOptions::default())
    });
    let configured = tokio::task::block_in_place(|| {
        StoreAgent::start(&dir.path().join("a2"), &tls, SimOptions::default())
    });
    let api = TestApi::start_with(|c| {
        pull_settings(c, &tls);
        c.agents = vec![pga_federator::config::AgentEntry {
            name: "from-config".into(),
            url: configured.url(),
            ..Default::default()
        }];
    })
    .await;
    let (_, ops) = api.session("ops", Role::User).await;
    let _pulling = start_pulling(&api).await;

    // The configuration's agent is listed, read-only, and cannot be changed here.
    let r = api
        .call("GET", "/api/v1/agents/from-config", Some(&ops), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.json["source"].as_str(), r.json["read_only"].as_bool()),
        (Some("config"), Some(true))
    );
    for (m, body) in [("PATCH", Some(json!({"enabled": false}))), ("DELETE", None)] {
        let r = api
            .call(m, "/api/v1/agents/from-config", Some(&ops), body)
            .await;
        assert_eq!(r.status, 409, "{m}: {}", r.text);
        assert!(r.text.contains("configuration file"), "{}", r.text);
    }

    // Added with a 5-second schedule: pulled within one period.
    let added = Instant::now();
    let r = api
        .call(
            "POST",
            "/api/v1/agents",
            Some(&ops),
            Some(json!({"name": "sim", "url": agent.url(), "schedule": "*/5 * * * * *", "labels": {"env": "test"}})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["read_only"], false);
    while stored_samples(&api.db, "sim") == 0 {
        assert!(
            added.elapsed() < Duration::from_secs(5 + 5),
            "not pulled within one period (5 s) and a margin"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "first samples of the added agent after {:?}",
        added.elapsed()
    );
    let r = api
        .call("GET", "/api/v1/agents/sim/status", Some(&ops), None)
        .await;
    assert!(
        r.json["last_sequence"].is_i64() || r.json["series"].as_i64() > Some(0),
        "{}",
        r.text
    );

    // A change (schedule every second) applies without a restart too.
    let r = api
        .call(
            "PATCH",
            "/api/v1/agents/sim",
            Some(&ops),
            Some(json!({"schedule": "* * * * * *"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let before = stored_samples(&api.db, "sim");
    let t = Instant::now();
    while stored_samples(&api.db, "sim") == before {
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "pulls go on after the change"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Removed: no more pulls; the data stays.
    let r = api
        .call("DELETE", "/api/v1/agents/sim", Some(&ops), None)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let kept = stored_samples(&api.db, "sim");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        stored_samples(&api.db, "sim"),
        kept,
        "a removed agent is not pulled"
    );
    assert!(kept > 0, "its data stays");
    assert_eq!(
        api.call("GET", "/api/v1/agents/sim", Some(&ops), None)
            .await
            .status,
        404
    );
    let listed = api.call("GET", "/api/v1/agents", Some(&ops), None).await;
    let names: Vec<&str> = listed.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["from-config"]);

    // The configured agent was pulled all along.
    assert!(stored_samples(&api.db, "from-config") > 0);
    // Added again, it comes back with its history.
    let r = api.add_agent(&ops, "sim", &agent.url()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(
        r.json["status"]["series"].as_i64().unwrap() > 0,
        "{}",
        r.text
    );
    drop(agent);
    drop(configured);
}
