//! Brute force: 1,000 wrong passwords against one account. The delays double from
//! the initial one up to the cap (here 10 ms → 640 ms, the same code as the
//! defaults' 1 s → 15 min, which `auth::throttle`'s unit test walks through), a
//! throttled answer is the same for an unknown user, the right password works once
//! the lockout ends, and ingest keeps its schedule throughout.

use std::time::{Duration, Instant};

use pga_federator::auth::Role;
use serde_json::json;

use crate::support::api::{PASSWORD, TestApi, pull_settings, sql, start_pulling, stored_samples};
use crate::support::pull::{SimOptions, StoreAgent, certs};

const INITIAL_MS: u64 = 10;
const MAX_MS: u64 = 640;

fn delay_ms(failures: u32) -> u64 {
    (INITIAL_MS << (failures - 1).min(20)).min(MAX_MS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_wrong_passwords_are_slowed_down_and_ingest_keeps_its_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let agent = tokio::task::block_in_place(|| {
        StoreAgent::start(&dir.path().join("a"), &tls, SimOptions::default())
    });
    let api = TestApi::start_with(|c| {
        pull_settings(c, &tls);
        c.api.login_backoff_initial_ms = INITIAL_MS;
        c.agents = vec![pga_federator::config::AgentEntry {
            name: "ingest".into(),
            url: agent.url(),
            ..Default::default()
        }];
    })
    .await;
    // A cap of 640 ms: 10 ms doubled six times.
    {
        let mut t = api.state.throttle.lock().unwrap();
        *t = pga_federator::auth::throttle::Throttle::new(
            Duration::from_millis(INITIAL_MS),
            Duration::from_millis(MAX_MS),
            1000,
        );
    }
    api.user("admin", Role::Admin).await;
    let _pulling = start_pulling(&api).await;
    // Ingest is running before the attack starts.
    let t = Instant::now();
    while stored_samples(&api.db, "ingest") == 0 {
        assert!(t.elapsed() < Duration::from_secs(15), "ingest starts");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Watch ingest during the attack: the cursor's commit times.
    let db = api.db.clone();
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let w = watching.clone();
    let watcher = tokio::task::spawn_blocking(move || {
        let mut commits = Vec::new();
        while w.load(std::sync::atomic::Ordering::SeqCst) {
            let at = sql(
                &db,
                "SELECT extract(epoch FROM updated_at) FROM agent_cursors",
            );
            if commits.last() != Some(&at) {
                commits.push(at);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        commits
    });

    let wrong = json!({"username": "admin", "password": "not the password"});
    let mut attempts = Vec::new(); // (sent, answered, status, retry-after)
    let started = Instant::now();
    for _ in 0..1000 {
        let sent = started.elapsed();
        let r = api
            .call("POST", "/api/v1/auth/login", None, Some(wrong.clone()))
            .await;
        let retry = r
            .headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        assert!(matches!(r.status, 401 | 429), "{} {}", r.status, r.text);
        attempts.push((sent, started.elapsed(), r.status, retry));
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    let attack = started.elapsed();
    watching.store(false, std::sync::atomic::Ordering::SeqCst);
    let commits = watcher.await.unwrap();

    // The password was checked only when allowed; each check waited out the delay
    // of the failures before it. The server recorded failure n after the client sent
    // it and checked n + 1 before the client had its answer, so the answer to n + 1
    // comes at least the delay after the sending of n.
    let checked: Vec<(Duration, Duration)> = attempts
        .iter()
        .filter(|a| a.2 == 401)
        .map(|a| (a.0, a.1))
        .collect();
    let throttled = attempts.iter().filter(|a| a.2 == 429).count();
    assert!(throttled > 900, "{throttled} of 1000 throttled");
    for (n, pair) in checked.windows(2).enumerate() {
        let gap = pair[1].1 - pair[0].0;
        let want = Duration::from_millis(delay_ms(n as u32 + 1));
        assert!(
            gap >= want,
            "check {} came {gap:?} after the previous, before its delay {want:?}",
            n + 2
        );
    }
    assert!(
        checked.len() >= 8,
        "the cap was reached: {} checks",
        checked.len()
    );
    assert!(
        attempts
            .iter()
            .all(|a| a.2 != 429 || a.3.is_some_and(|s| s >= 1)),
        "429 carries Retry-After"
    );
    eprintln!(
        "1000 attempts in {attack:?}: {} password checks, {throttled} throttled; ingest commits seen: {}",
        checked.len(),
        commits.len()
    );

    // Same answer for a user that does not exist (apart from the request id). The
    // lock is at most MAX_MS long, which a loaded machine can let pass between two
    // requests: ask again (a failure locks anew) until both answers fall inside one.
    let mut pair = None;
    let mut extra_attempts = 0;
    for _ in 0..20 {
        extra_attempts += 1;
        let known = api
            .call("POST", "/api/v1/auth/login", None, Some(wrong.clone()))
            .await;
        if known.status != 429 {
            assert_eq!(known.status, 401, "{}", known.text);
            continue;
        }
        extra_attempts += 1;
        let unknown = api
            .call(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(json!({"username": "nobody", "password": "x"})),
            )
            .await;
        if unknown.status == 429 {
            pair = Some((known, unknown));
            break;
        }
    }
    let (known, unknown) = pair.expect("a known and an unknown user both throttled");
    assert_eq!(
        known.json["error"]["message"]
            .as_str()
            .map(|m| m.split(" in ").next().unwrap().to_owned()),
        unknown.json["error"]["message"].as_str().map(|m| m
            .split(" in ")
            .next()
            .unwrap()
            .to_owned())
    );
    assert_eq!(known.json["error"]["code"], unknown.json["error"]["code"]);

    // After the lockout, the right password works.
    tokio::time::sleep(Duration::from_millis(MAX_MS + 50)).await;
    let r = api
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "admin", "password": PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Ingest kept its schedule (every second): no stretch of more than a few periods
    // without a commit (the margin is for a machine shared with other work).
    let times: Vec<f64> = commits.iter().filter_map(|c| c.parse().ok()).collect();
    let longest = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(
        times.len() as f64 >= attack.as_secs_f64() / 5.0,
        "{} commits in {attack:?}",
        times.len()
    );
    assert!(
        longest <= 5.0,
        "ingest stalled for {longest:.1} s during the attack"
    );

    // Every attempt is audited.
    let audited: usize = sql(
        &api.db,
        "SELECT count(*) FROM audit_log WHERE action = 'auth.login' AND result = 'failure'",
    )
    .parse()
    .unwrap();
    // The attack, then the known and unknown user's attempts above.
    assert_eq!(audited, 1000 + extra_attempts);
    let m = api
        .call(
            "GET",
            "/api/v1/me",
            Some(r.json["access_token"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(m.status, 200);
    drop(agent);
}
