//! The lease tables (migrations/0050_cluster.sql): the statements a replica runs to
//! register, renew, claim, release and leave, and the status read by `pga-federator
//! cluster status`. Every time is the database's (`now()`), never this host's.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A lease's kind and name: `("agent", agents.name)` or `("leader", "alerting")`.
pub type Key = (String, String);

/// The kind of the agents' leases.
pub const AGENT: &str = "agent";
/// The kind of the leader leases.
pub const LEADER: &str = "leader";
/// The alerting evaluator's leader lease.
pub const ALERTING: &str = "alerting";

/// Who this replica is, as its row says.
#[derive(Debug, Clone)]
pub struct Replica {
    pub name: String,
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub ttl_ms: i32,
}

type Scalar<'q, O> = sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>;

impl Replica {
    /// Binds the row's name, host, pid, version and lease length, in that order.
    fn bind<'q, O>(&'q self, q: Scalar<'q, O>) -> Scalar<'q, O> {
        q.bind(&self.name)
            .bind(&self.host)
            .bind(self.pid)
            .bind(&self.version)
            .bind(self.ttl_ms)
    }
}

/// Registers a new replica with a lease of `ttl_ms` from now; its id.
pub async fn register(pool: &PgPool, r: &Replica) -> Result<String, sqlx::Error> {
    let q = sqlx::query_scalar(
        "INSERT INTO cluster_replica_leases (name, host, pid, version, ttl_ms, valid_until) \
         VALUES ($1, $2, $3, $4, $5, now() + $5 * interval '1 millisecond') \
         RETURNING replica_id::text",
    );
    r.bind(q).fetch_one(pool).await
}

/// Live replicas on `host` other than `me`: `(id, pid)`.
pub async fn live_on_host(
    pool: &PgPool,
    host: &str,
    me: &str,
) -> Result<Vec<(String, i32)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT replica_id::text, pid FROM cluster_replica_leases \
         WHERE host = $1 AND replica_id::text <> $2 AND valid_until > now()",
    )
    .bind(host)
    .bind(me)
    .fetch_all(pool)
    .await
}

/// Ends the lease of replica `id` now and releases what it holds (a clean stop, or
/// a predecessor on this host whose process is gone).
pub async fn end(pool: &PgPool, id: &str) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let released = sqlx::query(
        "UPDATE cluster_leases SET owner = NULL, previous_owner = owner WHERE owner = $1::uuid",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(
        "UPDATE cluster_replica_leases \
         SET valid_until = least(valid_until, now()), stopped_at = coalesce(stopped_at, now()) \
         WHERE replica_id = $1::uuid",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(released)
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewed {
    /// The lease was valid and runs `ttl_ms` from now again.
    Valid,
    /// The lease had run out (the replica was frozen, cut off or too slow): it is
    /// valid again, but what others took over meanwhile is theirs.
    Expired,
    /// The row was gone (deleted by hand): it is written again.
    Missing,
}

/// Renews replica `id`'s lease for `r.ttl_ms` from now (the database's clock).
pub async fn renew(pool: &PgPool, id: &str, r: &Replica) -> Result<Renewed, sqlx::Error> {
    let q = sqlx::query_scalar(
        "WITH old AS (SELECT valid_until > now() AS valid FROM cluster_replica_leases \
                      WHERE replica_id = $1::uuid) \
         INSERT INTO cluster_replica_leases (replica_id, name, host, pid, version, ttl_ms, valid_until) \
         VALUES ($1::uuid, $2, $3, $4, $5, $6, now() + $6 * interval '1 millisecond') \
         ON CONFLICT (replica_id) DO UPDATE SET renewed_at = now(), \
             valid_until = EXCLUDED.valid_until, ttl_ms = EXCLUDED.ttl_ms, stopped_at = NULL \
         RETURNING (SELECT valid FROM old)",
    )
    .bind(id);
    let before: Option<bool> = r.bind(q).fetch_one(pool).await?;
    Ok(match before {
        Some(true) => Renewed::Valid,
        Some(false) => Renewed::Expired,
        None => Renewed::Missing,
    })
}

/// The live replicas' ids and the milliseconds left on each lease.
pub async fn live(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT replica_id::text, \
                (extract(epoch FROM valid_until - now()) * 1000)::bigint \
         FROM cluster_replica_leases WHERE valid_until > now() ORDER BY replica_id",
    )
    .fetch_all(pool)
    .await
}

fn split(keys: &[Key]) -> (Vec<&str>, Vec<&str>) {
    keys.iter().map(|(k, n)| (k.as_str(), n.as_str())).unzip()
}

/// Releases what `me` holds outside `keep` (a lease whose row is locked by a
/// write in flight is released at a later renewal): the keys released.
pub async fn release_others(
    pool: &PgPool,
    me: &str,
    keep: &[Key],
) -> Result<Vec<Key>, sqlx::Error> {
    let (kinds, names) = split(keep);
    sqlx::query_as(
        "WITH r AS ( \
             SELECT kind, name FROM cluster_leases \
             WHERE owner = $1::uuid \
               AND (kind, name) NOT IN (SELECT k, n FROM unnest($2::text[], $3::text[]) AS w(k, n)) \
             FOR UPDATE SKIP LOCKED) \
         UPDATE cluster_leases l SET owner = NULL, previous_owner = l.owner \
         FROM r WHERE (l.kind, l.name) = (r.kind, r.name) \
         RETURNING l.kind, l.name",
    )
    .bind(me)
    .bind(&kinds)
    .bind(&names)
    .fetch_all(pool)
    .await
}

/// A lease granted by [`claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub key: Key,
    pub epoch: i64,
    /// The replica whose lease had run out, for a takeover.
    pub taken_from: Option<String>,
}

/// Claims `keys` for `me` (while `me`'s own lease is valid): each key nobody holds,
/// or held by a replica whose lease ran out, is granted with a new epoch. A key a
/// live replica holds stays its own (it releases it when it sees the assignment),
/// and one whose row is locked (a write of its holder in flight, or a holder frozen
/// in the middle of one) is skipped until a later renewal: a claim never waits.
pub async fn claim(pool: &PgPool, me: &str, keys: &[Key]) -> Result<Vec<Grant>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let (kinds, names) = split(keys);
    let mut tx = pool.begin().await?;
    let mut rows: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(
        "INSERT INTO cluster_leases (kind, name, owner, epoch) \
         SELECT w.k, w.n, $1::uuid, nextval('cluster_epoch_seq') \
         FROM unnest($2::text[], $3::text[]) AS w(k, n) \
         WHERE EXISTS (SELECT FROM cluster_replica_leases \
                       WHERE replica_id = $1::uuid AND valid_until > now()) \
           AND NOT EXISTS (SELECT FROM cluster_leases l WHERE (l.kind, l.name) = (w.k, w.n)) \
         ON CONFLICT (kind, name) DO NOTHING \
         RETURNING kind, name, epoch, NULL::text",
    )
    .bind(me)
    .bind(&kinds)
    .bind(&names)
    .fetch_all(&mut *tx)
    .await?;
    let taken: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(
        "WITH c AS ( \
             SELECT l.kind, l.name, l.owner FROM cluster_leases l \
             JOIN unnest($2::text[], $3::text[]) AS w(k, n) ON (w.k, w.n) = (l.kind, l.name) \
             WHERE l.owner IS DISTINCT FROM $1::uuid \
               AND (l.owner IS NULL OR NOT EXISTS ( \
                    SELECT FROM cluster_replica_leases r \
                    WHERE r.replica_id = l.owner AND r.valid_until > now())) \
             FOR UPDATE OF l SKIP LOCKED) \
         UPDATE cluster_leases l \
         SET owner = $1::uuid, epoch = nextval('cluster_epoch_seq'), acquired_at = now(), \
             previous_owner = coalesce(c.owner, l.previous_owner), \
             takeovers = l.takeovers + (c.owner IS NOT NULL)::int \
         FROM c \
         WHERE (l.kind, l.name) = (c.kind, c.name) \
           AND EXISTS (SELECT FROM cluster_replica_leases \
                       WHERE replica_id = $1::uuid AND valid_until > now()) \
         RETURNING l.kind, l.name, l.epoch, c.owner::text",
    )
    .bind(me)
    .bind(&kinds)
    .bind(&names)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.extend(taken);
    Ok(rows
        .into_iter()
        .map(|(kind, name, epoch, taken_from)| Grant {
            key: (kind, name),
            epoch,
            taken_from,
        })
        .collect())
}

/// What `me` holds, with the epochs.
pub async fn held(pool: &PgPool, me: &str) -> Result<Vec<(Key, i64)>, sqlx::Error> {
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT kind, name, epoch FROM cluster_leases WHERE owner = $1::uuid")
            .bind(me)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|(k, n, e)| ((k, n), e)).collect())
}

/// One replica as `cluster status` shows it (the `cluster_replicas` view).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReplicaStatus {
    pub replica_id: String,
    pub name: String,
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub renewed_at: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub live: bool,
    pub agents_owned: i64,
    pub leader: bool,
}

/// One lease as `cluster status` shows it (the `cluster_assignments` view).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AssignmentStatus {
    pub kind: String,
    pub name: String,
    pub replica: Option<String>,
    pub replica_id: Option<String>,
    pub epoch: i64,
    pub acquired_at: DateTime<Utc>,
    pub takeovers: i64,
    pub valid: bool,
}

/// The replicas (live first, newest first) and every lease.
pub async fn status(
    pool: &PgPool,
) -> Result<(Vec<ReplicaStatus>, Vec<AssignmentStatus>), sqlx::Error> {
    let replicas = sqlx::query_as(
        "SELECT replica_id::text AS replica_id, name, host, pid, version, started_at, renewed_at, \
                valid_until, stopped_at, live, agents_owned, leader \
         FROM cluster_replicas ORDER BY live DESC, started_at DESC",
    )
    .fetch_all(pool)
    .await?;
    let leases = sqlx::query_as(
        "SELECT kind, name, replica, replica_id::text AS replica_id, epoch, acquired_at, \
                takeovers, valid \
         FROM cluster_assignments ORDER BY kind DESC, name",
    )
    .fetch_all(pool)
    .await?;
    Ok((replicas, leases))
}
