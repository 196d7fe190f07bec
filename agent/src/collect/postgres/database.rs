//! Per-database statistics read once per instance: `pg_stat_database`, recovery
//! conflicts, and transaction-ID and multixact wraparound age. `pg_stat_database`
//! (commits, rollbacks, deadlocks, conflicts, temp bytes: what a DBA graphs first) is
//! in the fast group, read at every pass as exporters read it at every scrape; the
//! other two in the slow group. The first two cover the databases
//! `databases_include`/`_exclude` select; wraparound covers every database, since a
//! frozen-xid horizon anywhere stops the whole cluster.

use super::catalog::{Family, Reader, Scope, between, counter, gauge, since};
use crate::collect::Group;

pub static DATABASE: Family = Family {
    name: "database",
    group: Group::Fast,
    scope: Scope::Instance,
    reader: Reader::Columns,
    labels: &["datname"],
    metrics: &[
        gauge("numbackends", "pg_stat_database_numbackends", "", "Sessions connected to the database."),
        counter("xact_commit", "pg_stat_database_xact_commit_total", "", "Transactions committed."),
        counter("xact_rollback", "pg_stat_database_xact_rollback_total", "", "Transactions rolled back."),
        counter("blks_read", "pg_stat_database_blks_read_total", "", "Blocks read from disk (or the OS cache)."),
        counter("blks_hit", "pg_stat_database_blks_hit_total", "", "Blocks found in shared buffers."),
        counter("tup_returned", "pg_stat_database_tup_returned_total", "", "Rows returned by scans."),
        counter("tup_fetched", "pg_stat_database_tup_fetched_total", "", "Rows fetched by index scans."),
        counter("tup_inserted", "pg_stat_database_tup_inserted_total", "", "Rows inserted."),
        counter("tup_updated", "pg_stat_database_tup_updated_total", "", "Rows updated."),
        counter("tup_deleted", "pg_stat_database_tup_deleted_total", "", "Rows deleted."),
        counter("conflicts", "pg_stat_database_conflicts_total", "", "Queries cancelled by recovery conflicts (standby)."),
        counter("temp_files", "pg_stat_database_temp_files_total", "", "Temporary files created."),
        counter("temp_bytes", "pg_stat_database_temp_bytes_total", "bytes", "Data written to temporary files."),
        counter("deadlocks", "pg_stat_database_deadlocks_total", "", "Deadlocks detected."),
        counter("checksum_failures", "pg_stat_database_checksum_failures_total", "", "Data page checksum failures (with data checksums on)."),
        counter("blk_read_seconds", "pg_stat_database_blk_read_time_seconds_total", "seconds", "Time reading blocks (with track_io_timing)."),
        counter("blk_write_seconds", "pg_stat_database_blk_write_time_seconds_total", "seconds", "Time writing blocks (with track_io_timing)."),
        counter("session_seconds", "pg_stat_database_session_time_seconds_total", "seconds", "Time sessions spent connected."),
        counter("active_seconds", "pg_stat_database_active_time_seconds_total", "seconds", "Time sessions spent running statements."),
        counter("idle_in_xact_seconds", "pg_stat_database_idle_in_transaction_time_seconds_total", "seconds", "Time sessions spent idle in a transaction."),
        counter("sessions", "pg_stat_database_sessions_total", "", "Sessions established."),
        counter("sessions_abandoned", "pg_stat_database_sessions_abandoned_total", "", "Sessions ended by the client disconnecting without a goodbye."),
        counter("sessions_fatal", "pg_stat_database_sessions_fatal_total", "", "Sessions ended by fatal errors."),
        counter("sessions_killed", "pg_stat_database_sessions_killed_total", "", "Sessions terminated by an operator."),
        gauge("stats_reset", "pg_stat_database_stats_reset_timestamp_seconds", "seconds", "When these statistics were last reset (seconds since the epoch)."),
    ],
    queries: &[since(
        140000,
        "SELECT datname::text AS datname, numbackends::float8 AS numbackends,
                xact_commit::float8 AS xact_commit, xact_rollback::float8 AS xact_rollback,
                blks_read::float8 AS blks_read, blks_hit::float8 AS blks_hit,
                tup_returned::float8 AS tup_returned, tup_fetched::float8 AS tup_fetched,
                tup_inserted::float8 AS tup_inserted, tup_updated::float8 AS tup_updated, tup_deleted::float8 AS tup_deleted,
                conflicts::float8 AS conflicts, temp_files::float8 AS temp_files, temp_bytes::float8 AS temp_bytes,
                deadlocks::float8 AS deadlocks, coalesce(checksum_failures, 0)::float8 AS checksum_failures,
                (blk_read_time / 1000)::float8 AS blk_read_seconds, (blk_write_time / 1000)::float8 AS blk_write_seconds,
                (session_time / 1000)::float8 AS session_seconds, (active_time / 1000)::float8 AS active_seconds,
                (idle_in_transaction_time / 1000)::float8 AS idle_in_xact_seconds,
                sessions::float8 AS sessions, sessions_abandoned::float8 AS sessions_abandoned,
                sessions_fatal::float8 AS sessions_fatal, sessions_killed::float8 AS sessions_killed,
                extract(epoch FROM stats_reset)::float8 AS stats_reset
           FROM pg_stat_database
          WHERE datname IS NOT NULL",
    )],
    filter_datname: true,
    ..Family::USUAL
};

pub static CONFLICTS: Family = Family {
    name: "conflicts",
    group: Group::Slow,
    scope: Scope::Instance,
    reader: Reader::Columns,
    labels: &["datname"],
    metrics: &[
        counter("confl_tablespace", "pg_stat_database_conflicts_tablespace_total", "", "Queries cancelled on a standby: dropped tablespaces."),
        counter("confl_lock", "pg_stat_database_conflicts_lock_total", "", "Queries cancelled on a standby: lock timeouts."),
        counter("confl_snapshot", "pg_stat_database_conflicts_snapshot_total", "", "Queries cancelled on a standby: old snapshots."),
        counter("confl_bufferpin", "pg_stat_database_conflicts_bufferpin_total", "", "Queries cancelled on a standby: pinned buffers."),
        counter("confl_deadlock", "pg_stat_database_conflicts_deadlock_total", "", "Queries cancelled on a standby: deadlocks."),
        counter("confl_active_logicalslot", "pg_stat_database_conflicts_logicalslot_total", "", "Uses of logical slots cancelled on a standby (16 on)."),
    ],
    queries: &[
        between(
            140000,
            160000,
            "SELECT datname::text AS datname, confl_tablespace::float8 AS confl_tablespace,
                    confl_lock::float8 AS confl_lock, confl_snapshot::float8 AS confl_snapshot,
                    confl_bufferpin::float8 AS confl_bufferpin, confl_deadlock::float8 AS confl_deadlock
               FROM pg_stat_database_conflicts",
        ),
        since(
            160000,
            "SELECT datname::text AS datname, confl_tablespace::float8 AS confl_tablespace,
                    confl_lock::float8 AS confl_lock, confl_snapshot::float8 AS confl_snapshot,
                    confl_bufferpin::float8 AS confl_bufferpin, confl_deadlock::float8 AS confl_deadlock,
                    confl_active_logicalslot::float8 AS confl_active_logicalslot
               FROM pg_stat_database_conflicts",
        ),
    ],
    filter_datname: true,
    ..Family::USUAL
};

pub static WRAPAROUND: Family = Family {
    name: "wraparound",
    group: Group::Slow,
    scope: Scope::Instance,
    reader: Reader::Columns,
    labels: &["datname"],
    metrics: &[
        gauge("xid_age", "pg_database_frozen_xid_age", "", "Transactions since the database's oldest unfrozen XID (wraparound at 2^31)."),
        gauge("mxid_age", "pg_database_min_mxid_age", "", "Multixacts since the database's oldest multixact (wraparound at 2^31)."),
    ],
    queries: &[since(
        140000,
        "SELECT datname::text AS datname, age(datfrozenxid)::float8 AS xid_age, mxid_age(datminmxid)::float8 AS mxid_age
           FROM pg_database",
    )],
    fix: "",
    ..Family::USUAL
};
