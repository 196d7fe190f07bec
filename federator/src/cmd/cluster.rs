//! `pga-federator cluster status`: the replicas sharing the central database, their
//! leases, and who holds each agent (the `cluster_replicas` and
//! `cluster_assignments` views).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use crate::cluster::lease::{self, AssignmentStatus, ReplicaStatus};
use crate::config;
use crate::db::{rfc3339, rfc3339_opt};

/// The status as `--json` prints it.
pub fn to_json(replicas: &[ReplicaStatus], leases: &[AssignmentStatus]) -> serde_json::Value {
    json!({
        "replicas": replicas.iter().map(|r| json!({
            "replica_id": r.replica_id,
            "name": r.name,
            "host": r.host,
            "pid": r.pid,
            "version": r.version,
            "live": r.live,
            "started_at": rfc3339(r.started_at),
            "renewed_at": rfc3339(r.renewed_at),
            "valid_until": rfc3339(r.valid_until),
            "stopped_at": rfc3339_opt(r.stopped_at),
            "agents_owned": r.agents_owned,
            "leader": r.leader,
        })).collect::<Vec<_>>(),
        "leases": leases.iter().map(|l| json!({
            "kind": l.kind,
            "name": l.name,
            "replica_id": l.replica_id,
            "replica": l.replica,
            "epoch": l.epoch,
            "valid": l.valid,
            "acquired_at": rfc3339(l.acquired_at),
            "takeovers": l.takeovers,
        })).collect::<Vec<_>>(),
    })
}

/// The status as a table: the replicas, then each lease.
pub fn to_table(replicas: &[ReplicaStatus], leases: &[AssignmentStatus]) -> String {
    let mut out = String::new();
    let live = replicas.iter().filter(|r| r.live).count();
    out.push_str(&format!(
        "replicas: {live} live, {} recorded\n",
        replicas.len()
    ));
    out.push_str(&format!(
        "{:<36}  {:<16}  {:<16}  {:>7}  {:<5}  {:>6}  {:<6}  valid until\n",
        "replica", "name", "host", "pid", "live", "agents", "leader"
    ));
    for r in replicas {
        out.push_str(&format!(
            "{:<36}  {:<16}  {:<16}  {:>7}  {:<5}  {:>6}  {:<6}  {}{}\n",
            r.replica_id,
            r.name,
            r.host,
            r.pid,
            if r.live { "yes" } else { "no" },
            r.agents_owned,
            if r.leader { "yes" } else { "" },
            rfc3339(r.valid_until),
            if r.stopped_at.is_some() {
                " (stopped)"
            } else {
                ""
            }
        ));
    }
    let unheld = leases.iter().filter(|l| !l.valid).count();
    out.push_str(&format!(
        "\nleases: {} ({} not held by a live replica)\n",
        leases.len(),
        unheld
    ));
    out.push_str(&format!(
        "{:<7}  {:<32}  {:<36}  {:>8}  {:<5}  {:>9}\n",
        "kind", "name", "replica", "epoch", "valid", "takeovers"
    ));
    for l in leases {
        out.push_str(&format!(
            "{:<7}  {:<32}  {:<36}  {:>8}  {:<5}  {:>9}\n",
            l.kind,
            l.name,
            l.replica_id.as_deref().unwrap_or("-"),
            l.epoch,
            if l.valid { "yes" } else { "no" },
            l.takeovers
        ));
    }
    out
}

pub(super) fn main(json: bool, path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let loaded = config::load(path)?;
    let (replicas, leases) = super::runtime()?.block_on(async {
        let pool = super::admin_pool(&loaded.config).await?;
        lease::status(&pool).await.context(
            "reading cluster_replicas and cluster_assignments (run `pga-federator migrate` if \
             they are missing)",
        )
    })?;
    let text = if json {
        let mut t = serde_json::to_string_pretty(&to_json(&replicas, &leases))?;
        t.push('\n');
        t
    } else {
        to_table(&replicas, &leases)
    };
    super::print(&text)?;
    Ok(ExitCode::SUCCESS)
}
