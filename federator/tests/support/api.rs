//! Shared by the API tests: one throwaway cluster per test binary, a fresh
//! database per test, the API served on loopback, and a small HTTP client.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

pub use super::cluster;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use pga_federator::app::api::Api;
use pga_federator::auth::Role;
use pga_federator::config::FederatorConfig;
use pga_federator::db::sink::{Sink, SinkOptions};
use pga_federator::http::ApiState;
use pga_federator::http::metrics::ApiMetrics;
use serde_json::Value;
use tokio::sync::{Notify, watch};

pub const PASSWORD: &str = "correct horse battery staple";

/// A fresh, migrated database on the shared cluster.
pub async fn database() -> (String, Sink) {
    let name = super::fresh_database("api");
    let pg = cluster();
    let sink = Sink::connect(
        &pg.url(&name),
        SinkOptions {
            max_connections: 4,
            acquire_timeout: Duration::from_secs(5),
            ..SinkOptions::default()
        },
    )
    .await
    .expect("connect");
    sink.migrate().await.expect("migrate");
    (name, sink)
}

pub fn sql(db: &str, query: &str) -> String {
    cluster().psql(db, query).expect("psql")
}

/// An API on a fresh database, served on 127.0.0.1 over plain HTTP.
pub struct TestApi {
    pub db: String,
    pub base: String,
    pub config: FederatorConfig,
    pub state: ApiState,
    pub sink: Arc<Sink>,
    pub fleet_changed: Arc<Notify>,
    pub dir: tempfile::TempDir,
    stop: watch::Sender<bool>,
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// The configuration of a test API; `tweak` adjusts it.
pub fn config(
    db: &str,
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut FederatorConfig),
) -> FederatorConfig {
    let key = dir.join("jwt.key");
    pga_federator::cmd::keygen::keygen(&key, true).expect("keygen");
    let mut c = FederatorConfig::default();
    c.database.url = cluster().url(db);
    c.api.listen = "127.0.0.1:0".to_owned();
    c.api.insecure_plaintext = true;
    c.api.jwt_key_file = Some(key);
    c.api.hash_concurrency = 2;
    tweak(&mut c);
    c
}

impl TestApi {
    pub async fn start() -> TestApi {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut FederatorConfig)) -> TestApi {
        let (db, sink) = database().await;
        let dir = tempfile::tempdir().unwrap();
        let config = config(&db, dir.path(), tweak);
        let fleet_changed = Arc::new(Notify::new());
        let api = Api::bind(
            &config,
            Arc::new(ApiMetrics::default()),
            fleet_changed.clone(),
        )
        .await
        .expect("bind the API")
        .expect("the API is on");
        let addr = api.server.local_addr();
        let state = api.state.clone();
        let (stop, rx) = watch::channel(false);
        tokio::spawn(api.serve(rx));
        TestApi {
            db,
            base: format!("http://{addr}"),
            config,
            state,
            sink: Arc::new(sink),
            fleet_changed,
            dir,
            stop,
        }
    }

    /// Creates a user with [`PASSWORD`]; returns its id.
    pub async fn user(&self, name: &str, role: Role) -> i64 {
        let (u, _) = pga_federator::cmd::users::users_add(
            &self.config,
            name,
            role,
            None,
            None,
            Some(PASSWORD.to_owned()),
        )
        .await
        .expect("users add");
        u.id
    }

    /// Signs in; returns (access token, refresh token).
    pub async fn login(&self, name: &str) -> (String, String) {
        let r = self
            .call(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(serde_json::json!({"username": name, "password": PASSWORD})),
            )
            .await;
        assert_eq!(r.status, 200, "login of {name}: {}", r.text);
        (
            r.json["access_token"].as_str().unwrap().to_owned(),
            r.json["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    /// A user of `role` signed in: (user id, access token).
    pub async fn session(&self, name: &str, role: Role) -> (i64, String) {
        let id = self.user(name, role).await;
        let (access, _) = self.login(name).await;
        (id, access)
    }

    /// Creates an API token for the holder of `access`; returns (id, secret).
    pub async fn api_token(
        &self,
        access: &str,
        name: &str,
        scopes: &[&str],
        days: Option<i64>,
    ) -> (i64, String) {
        let mut body = serde_json::json!({"name": name, "scopes": scopes});
        if let Some(d) = days {
            body["expires_in_days"] = d.into();
        }
        let r = self
            .call("POST", "/api/v1/me/tokens", Some(access), Some(body))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        (
            r.json["token"]["id"].as_i64().unwrap(),
            r.json["secret"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut headers = vec![];
        if let Some(t) = token {
            headers.push(("authorization".to_owned(), format!("Bearer {t}")));
        }
        let body = body.map(|b| b.to_string());
        if body.is_some() {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
        }
        request(
            &self.base,
            method,
            path,
            &headers,
            body.unwrap_or_default().into_bytes(),
        )
        .await
    }

    /// `POST /api/v1/auth/refresh` with `refresh_token`.
    pub async fn refresh(&self, refresh_token: &str) -> Reply {
        let body = serde_json::json!({ "refresh_token": refresh_token });
        self.call("POST", "/api/v1/auth/refresh", None, Some(body))
            .await
    }

    /// `POST /api/v1/agents`: adds the agent `name` at `url`, as `token`.
    pub async fn add_agent(&self, token: &str, name: &str, url: &str) -> Reply {
        let body = serde_json::json!({ "name": name, "url": url });
        self.call("POST", "/api/v1/agents", Some(token), Some(body))
            .await
    }

    /// `PATCH /api/v1/users/{id}` with `body`, as `token`.
    pub async fn patch_user(&self, token: &str, id: i64, body: Value) -> Reply {
        let path = format!("/api/v1/users/{id}");
        self.call("PATCH", &path, Some(token), Some(body)).await
    }

    /// Audit entries of `action`, oldest first, straight from the table.
    pub fn audit(&self, action: &str) -> Vec<String> {
        let out = sql(
            &self.db,
            &format!(
                "SELECT result || '|' || coalesce(detail, '') || '|' || coalesce(actor_username, '') \
                 || '|' || coalesce(actor_token_id::text, '') FROM audit_log WHERE action = '{action}' ORDER BY seq"
            ),
        );
        out.lines().map(str::to_owned).collect()
    }
}

/// An answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub text: String,
    pub json: Value,
}

/// One request on a new connection.
pub async fn request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Reply {
    let authority = base.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("connect to the API");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", &authority)
        .header("user-agent", "pga-api-tests");
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        json,
    }
}

/// The scheduler pulling the fleet of a test API (configuration agents plus the
/// agents table), in this process, until dropped.
pub struct Pulling {
    stop: watch::Sender<bool>,
}

impl Drop for Pulling {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

pub async fn start_pulling(api: &TestApi) -> Pulling {
    use pga_federator::pull::fleet;
    let builder = pga_federator::app::job_builder(&api.config, false).expect("job builder");
    let config_jobs = fleet::config_jobs(&api.config, &builder).expect("config jobs");
    pga_federator::db::agents::sync_config(api.sink.pool(), &api.config.agents)
        .await
        .expect("sync the configured agents");
    let initial = fleet::load(api.sink.pool(), &config_jobs, &builder)
        .await
        .expect("load the fleet");
    let (tx, rx) = watch::channel(initial);
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(fleet::maintain(
        api.sink.pool().clone(),
        config_jobs,
        builder,
        api.fleet_changed.clone(),
        tx,
        Duration::from_secs(1),
        stop_rx.clone(),
    ));
    tokio::spawn(pga_federator::pull::scheduler::run_fleet(
        rx,
        api.sink.clone(),
        Arc::new(pga_federator::telemetry::Telemetry::new()),
        pga_federator::app::settings(&api.config),
        stop_rx,
    ));
    Pulling { stop }
}

/// Configures the federator's client certificate from a `certs` directory and
/// pulls every second without jitter.
pub fn pull_settings(c: &mut FederatorConfig, tls: &std::path::Path) {
    c.tls.cert_file = Some(tls.join("federator.crt"));
    c.tls.key_file = Some(tls.join("federator.key"));
    c.tls.ca_file = Some(tls.join("ca.crt"));
    c.scrape.schedule = "* * * * * *".to_owned();
    c.scrape.jitter_ms = 0;
    c.scrape.connect_timeout_secs = 2;
    c.scrape.request_timeout_secs = 3;
    c.scrape.backoff_initial_secs = 1;
    c.scrape.backoff_max_secs = 2;
}

/// Samples stored for `agent`.
pub fn stored_samples(db: &str, agent: &str) -> i64 {
    sql(
        db,
        &format!("SELECT count(*) FROM metric_samples WHERE agent = '{agent}'"),
    )
    .parse()
    .unwrap_or(0)
}
