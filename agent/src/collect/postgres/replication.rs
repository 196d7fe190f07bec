//! Replication: each standby as its primary (or cascading standby) sees it, with lag
//! in bytes and seconds; on a standby, its WAL receiver and how far replay is behind;
//! replication slots and the WAL each one retains. Fast group, once per instance.
//!
//! Positions are measured against `pg_current_wal_lsn()` on a primary and against
//! `pg_last_wal_receive_lsn()` on a standby (where the former raises an error).

use super::catalog::{Family, Reader, Scope, between, gauge, since};
use crate::collect::Group;

/// The server's current WAL position, on a primary or a standby.
macro_rules! here_lsn {
    () => {
        "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END"
    };
}

/// `pg_replication_slots` with the WAL each slot retains; `$newer` adds the columns
/// of later versions.
macro_rules! slots {
    ($newer:literal) => {
        concat!(
            "SELECT slot_name::text AS slot_name, slot_type, coalesce(database::text, '') AS database,
                        active::int::float8 AS active,
                        pg_wal_lsn_diff(",
            here_lsn!(),
            ", restart_lsn)::float8 AS retained_bytes,
                        safe_wal_size::float8 AS safe_wal_size,
                        (wal_status = 'lost')::int::float8 AS lost",
            $newer,
            "
                   FROM pg_replication_slots"
        )
    };
}

pub static REPLICATION: Family = Family {
    name: "replication",
    group: Group::Fast,
    scope: Scope::Instance,
    reader: Reader::Columns,
    labels: &["application_name", "client_addr", "state", "sync_state"],
    metrics: &[
        gauge(
            "sent_lag_bytes",
            "pg_stat_replication_sent_lag_bytes",
            "bytes",
            "WAL not yet sent to this standby.",
        ),
        gauge(
            "write_lag_bytes",
            "pg_stat_replication_write_lag_bytes",
            "bytes",
            "WAL the standby has not yet written.",
        ),
        gauge(
            "flush_lag_bytes",
            "pg_stat_replication_flush_lag_bytes",
            "bytes",
            "WAL the standby has not yet flushed.",
        ),
        gauge(
            "replay_lag_bytes",
            "pg_stat_replication_replay_lag_bytes",
            "bytes",
            "WAL the standby has not yet replayed.",
        ),
        gauge(
            "write_lag_seconds",
            "pg_stat_replication_write_lag_seconds",
            "seconds",
            "Time until recent WAL was written on the standby (0 when caught up).",
        ),
        gauge(
            "flush_lag_seconds",
            "pg_stat_replication_flush_lag_seconds",
            "seconds",
            "Time until recent WAL was flushed on the standby (0 when caught up).",
        ),
        gauge(
            "replay_lag_seconds",
            "pg_stat_replication_replay_lag_seconds",
            "seconds",
            "Time until recent WAL was replayed on the standby (0 when caught up).",
        ),
    ],
    queries: &[since(
        140000,
        concat!(
            "SELECT coalesce(application_name, '') AS application_name,
                    coalesce(host(client_addr), 'local') AS client_addr,
                    coalesce(state, '') AS state, coalesce(sync_state, '') AS sync_state,
                    pg_wal_lsn_diff(",
            here_lsn!(),
            ", sent_lsn)::float8 AS sent_lag_bytes,
                    pg_wal_lsn_diff(",
            here_lsn!(),
            ", write_lsn)::float8 AS write_lag_bytes,
                    pg_wal_lsn_diff(",
            here_lsn!(),
            ", flush_lsn)::float8 AS flush_lag_bytes,
                    pg_wal_lsn_diff(",
            here_lsn!(),
            ", replay_lsn)::float8 AS replay_lag_bytes,
                    coalesce(extract(epoch FROM write_lag), 0)::float8 AS write_lag_seconds,
                    coalesce(extract(epoch FROM flush_lag), 0)::float8 AS flush_lag_seconds,
                    coalesce(extract(epoch FROM replay_lag), 0)::float8 AS replay_lag_seconds
               FROM pg_stat_replication"
        ),
    )],
    fix: "GRANT pg_monitor TO the monitoring role (without it, other roles' WAL senders show no positions)",
    ..Family::USUAL
};

pub static STANDBY: Family = Family {
    name: "standby",
    group: Group::Fast,
    scope: Scope::Instance,
    reader: Reader::Columns,
    labels: &[],
    metrics: &[
        gauge("replay_lag_bytes", "pg_standby_replay_lag_bytes", "bytes", "WAL received but not yet replayed on this standby."),
        gauge("replay_lag_seconds", "pg_standby_replay_lag_seconds", "seconds", "Age of the last replayed transaction while WAL waits to be replayed (0 when caught up)."),
        gauge("receiver_streaming", "pg_standby_wal_receiver_streaming", "", "Whether the WAL receiver is streaming (1) or not (0)."),
        gauge("receiver_message_age", "pg_standby_wal_receiver_last_message_age_seconds", "seconds", "Time since the last message from the primary."),
    ],
    queries: &[since(
        140000,
        "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8 AS replay_lag_bytes,
                (CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
                      ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END)::float8 AS replay_lag_seconds,
                (SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming')::float8 AS receiver_streaming,
                (SELECT extract(epoch FROM now() - last_msg_receipt_time) FROM pg_stat_wal_receiver)::float8 AS receiver_message_age
          WHERE pg_is_in_recovery()",
    )],
    ..Family::USUAL
};

pub static SLOTS: Family = Family {
    name: "slots",
    group: Group::Fast,
    scope: Scope::Instance,
    reader: Reader::Columns,
    labels: &["slot_name", "slot_type", "database"],
    metrics: &[
        gauge(
            "active",
            "pg_replication_slot_active",
            "",
            "Whether a consumer is connected to the slot (1) or not (0).",
        ),
        gauge(
            "retained_bytes",
            "pg_replication_slot_retained_wal_bytes",
            "bytes",
            "WAL kept on disk for this slot (from its restart_lsn).",
        ),
        gauge(
            "safe_wal_size",
            "pg_replication_slot_safe_wal_bytes",
            "bytes",
            "WAL that can still be written before this slot loses what it needs (with max_slot_wal_keep_size).",
        ),
        gauge(
            "lost",
            "pg_replication_slot_lost",
            "",
            "Whether the slot lost WAL it needed (1) or not (0).",
        ),
        gauge(
            "conflicting",
            "pg_replication_slot_conflicting",
            "",
            "Whether a logical slot was invalidated by a recovery conflict (16 on).",
        ),
    ],
    queries: &[
        between(140000, 160000, slots!("")),
        since(
            160000,
            slots!(
                ",
                        conflicting::int::float8 AS conflicting"
            ),
        ),
    ],
    ..Family::USUAL
};
