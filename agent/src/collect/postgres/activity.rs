//! Sessions and what they wait for: `pg_stat_activity` by state and wait event, the
//! oldest transaction and query, locks by mode, blocked sessions and the longest
//! blocking chain, and the progress of vacuum, analyze and index builds. Fast group,
//! once per instance. The agent's own session is left out.

use super::catalog::{Family, Reader, Scope, between, gauge, since};
use crate::collect::Group;

pub static ACTIVITY: Family = Family {
    name: "activity",
    group: Group::Fast,
    scope: Scope::Instance,
    reader: Reader::Columns,
    labels: &["datname", "state", "wait_event_type", "wait_event", "backend_type"],
    metrics: &[gauge(
        "sessions",
        "pg_stat_activity_sessions",
        "",
        "Server processes by database, state, wait event and backend type.",
    )],
    queries: &[since(
        140000,
        "SELECT coalesce(datname::text, '') AS datname, coalesce(state, '') AS state,
                coalesce(wait_event_type, '') AS wait_event_type, coalesce(wait_event, '') AS wait_event,
                coalesce(backend_type, '') AS backend_type, count(*)::float8 AS sessions
           FROM pg_stat_activity
          WHERE pid <> pg_backend_pid()
          GROUP BY 1, 2, 3, 4, 5",
    )],
    ..Family::USUAL
};

pub static OLDEST: Family = Family {
    name: "oldest",
    group: Group::Fast,
    scope: Scope::Instance,
    reader: Reader::Columns,
    labels: &[],
    metrics: &[
        gauge(
            "xact_seconds",
            "pg_oldest_xact_age_seconds",
            "seconds",
            "Age of the oldest open transaction of a client session (0: none).",
        ),
        gauge(
            "query_seconds",
            "pg_oldest_query_age_seconds",
            "seconds",
            "Age of the oldest running query (0: none).",
        ),
        gauge(
            "idle_in_xact_seconds",
            "pg_oldest_idle_in_transaction_age_seconds",
            "seconds",
            "Longest time a session has been idle inside a transaction (0: none).",
        ),
        gauge(
            "xmin_age",
            "pg_oldest_backend_xmin_age",
            "",
            "Transactions since the oldest snapshot a session holds (holds back vacuum).",
        ),
        gauge(
            "prepared_seconds",
            "pg_oldest_prepared_xact_age_seconds",
            "seconds",
            "Age of the oldest prepared transaction (0: none).",
        ),
    ],
    queries: &[since(
        140000,
        "SELECT coalesce(max(extract(epoch FROM now() - xact_start)) FILTER (WHERE backend_type = 'client backend'), 0)::float8 AS xact_seconds,
                coalesce(max(extract(epoch FROM now() - query_start)) FILTER (WHERE state = 'active' AND backend_type = 'client backend'), 0)::float8 AS query_seconds,
                coalesce(max(extract(epoch FROM now() - state_change)) FILTER (WHERE state LIKE 'idle in transaction%'), 0)::float8 AS idle_in_xact_seconds,
                coalesce(max(age(backend_xmin)), 0)::float8 AS xmin_age,
                (SELECT coalesce(max(extract(epoch FROM now() - prepared)), 0) FROM pg_prepared_xacts)::float8 AS prepared_seconds
           FROM pg_stat_activity
          WHERE pid <> pg_backend_pid()",
    )],
    ..Family::USUAL
};

pub static LOCKS: Family = Family {
    name: "locks",
    group: Group::Fast,
    scope: Scope::Instance,
    reader: Reader::Columns,
    labels: &["mode", "granted"],
    metrics: &[gauge(
        "locks",
        "pg_locks_count",
        "",
        "Locks held (granted=true) or awaited (granted=false), by mode.",
    )],
    queries: &[since(
        140000,
        "SELECT mode, granted::text AS granted, count(*)::float8 AS locks
           FROM pg_locks
          WHERE pid IS DISTINCT FROM pg_backend_pid()
          GROUP BY 1, 2",
    )],
    ..Family::USUAL
};

pub static BLOCKING: Family = Family {
    name: "blocking",
    group: Group::Fast,
    scope: Scope::Instance,
    reader: Reader::Columns,
    labels: &[],
    metrics: &[
        gauge(
            "blocked",
            "pg_blocked_sessions",
            "",
            "Sessions waiting for a lock another session holds.",
        ),
        gauge(
            "chain",
            "pg_blocking_chain_max_length",
            "",
            "Sessions in the longest chain of lock waits, the blocker at its head included (0: nobody waits).",
        ),
        gauge(
            "wait_seconds",
            "pg_lock_wait_max_seconds",
            "seconds",
            "Longest time a lock has been awaited (0: none).",
        ),
    ],
    queries: &[since(
        140000,
        "WITH RECURSIVE w AS (
                SELECT pid, blockers FROM (
                    SELECT pid, pg_blocking_pids(pid) AS blockers FROM pg_stat_activity
                     WHERE wait_event_type = 'Lock') s
                 WHERE cardinality(blockers) > 0),
              up(pid, depth, path) AS (
                SELECT pid, 1, ARRAY[pid] FROM w
                UNION ALL
                SELECT b, up.depth + 1, up.path || b
                  FROM up JOIN w ON w.pid = up.pid, unnest(w.blockers) AS b
                 WHERE b <> ALL (up.path) AND up.depth < 64)
         SELECT (SELECT count(*) FROM w)::float8 AS blocked,
                coalesce((SELECT max(depth) FROM up WHERE depth > 1), 0)::float8 AS chain,
                (SELECT coalesce(max(extract(epoch FROM now() - waitstart)), 0) FROM pg_locks WHERE NOT granted)::float8 AS wait_seconds",
    )],
    ..Family::USUAL
};

const PROGRESS_LABELS: &[&str] = &["datname", "pid", "relid", "phase"];

pub static PROGRESS_VACUUM: Family = Family {
    name: "progress_vacuum",
    group: Group::Fast,
    scope: Scope::Instance,
    reader: Reader::Columns,
    labels: PROGRESS_LABELS,
    metrics: &[
        gauge("heap_blks_total", "pg_progress_vacuum_heap_blocks", "", "Heap blocks of the table being vacuumed."),
        gauge("heap_blks_scanned", "pg_progress_vacuum_heap_blocks_scanned", "", "Heap blocks scanned so far."),
        gauge("heap_blks_vacuumed", "pg_progress_vacuum_heap_blocks_vacuumed", "", "Heap blocks vacuumed so far."),
        gauge("index_vacuum_count", "pg_progress_vacuum_index_passes", "", "Index vacuum cycles completed."),
        gauge("dead_tuples", "pg_progress_vacuum_dead_tuples", "", "Dead tuples collected since the last index cycle (before 17)."),
        gauge("dead_bytes", "pg_progress_vacuum_dead_tuple_bytes", "bytes", "Memory of the dead-tuple store (17 on)."),
    ],
    queries: &[
        between(
            140000,
            170000,
            "SELECT datname::text AS datname, pid::text AS pid, relid::text AS relid, phase,
                    heap_blks_total::float8 AS heap_blks_total, heap_blks_scanned::float8 AS heap_blks_scanned,
                    heap_blks_vacuumed::float8 AS heap_blks_vacuumed, index_vacuum_count::float8 AS index_vacuum_count,
                    num_dead_tuples::float8 AS dead_tuples
               FROM pg_stat_progress_vacuum",
        ),
        since(
            170000,
            "SELECT datname::text AS datname, pid::text AS pid, relid::text AS relid, phase,
                    heap_blks_total::float8 AS heap_blks_total, heap_blks_scanned::float8 AS heap_blks_scanned,
                    heap_blks_vacuumed::float8 AS heap_blks_vacuumed, index_vacuum_count::float8 AS index_vacuum_count,
                    dead_tuple_bytes::float8 AS dead_bytes
               FROM pg_stat_progress_vacuum",
        ),
    ],
    ..Family::USUAL
};

pub static PROGRESS_ANALYZE: Family = Family {
    name: "progress_analyze",
    group: Group::Fast,
    scope: Scope::Instance,
    reader: Reader::Columns,
    labels: PROGRESS_LABELS,
    metrics: &[
        gauge("sample_blks_total", "pg_progress_analyze_sample_blocks", "", "Heap blocks to sample."),
        gauge("sample_blks_scanned", "pg_progress_analyze_sample_blocks_scanned", "", "Heap blocks sampled so far."),
    ],
    queries: &[since(
        140000,
        "SELECT datname::text AS datname, pid::text AS pid, relid::text AS relid, phase,
                sample_blks_total::float8 AS sample_blks_total, sample_blks_scanned::float8 AS sample_blks_scanned
           FROM pg_stat_progress_analyze",
    )],
    ..Family::USUAL
};

pub static PROGRESS_CREATE_INDEX: Family = Family {
    name: "progress_create_index",
    group: Group::Fast,
    scope: Scope::Instance,
    reader: Reader::Columns,
    labels: PROGRESS_LABELS,
    metrics: &[
        gauge(
            "blocks_total",
            "pg_progress_create_index_blocks",
            "",
            "Blocks to process in the current phase.",
        ),
        gauge(
            "blocks_done",
            "pg_progress_create_index_blocks_done",
            "",
            "Blocks processed in the current phase.",
        ),
        gauge(
            "tuples_total",
            "pg_progress_create_index_tuples",
            "",
            "Tuples to process in the current phase.",
        ),
        gauge(
            "tuples_done",
            "pg_progress_create_index_tuples_done",
            "",
            "Tuples processed in the current phase.",
        ),
        gauge(
            "lockers_total",
            "pg_progress_create_index_lockers",
            "",
            "Lockers to wait for (CONCURRENTLY).",
        ),
        gauge(
            "lockers_done",
            "pg_progress_create_index_lockers_done",
            "",
            "Lockers already waited for.",
        ),
    ],
    queries: &[since(
        140000,
        "SELECT datname::text AS datname, pid::text AS pid, relid::text AS relid, phase,
                blocks_total::float8 AS blocks_total, blocks_done::float8 AS blocks_done,
                tuples_total::float8 AS tuples_total, tuples_done::float8 AS tuples_done,
                lockers_total::float8 AS lockers_total, lockers_done::float8 AS lockers_done
           FROM pg_stat_progress_create_index",
    )],
    ..Family::USUAL
};
