//! Instance-wide writers and I/O: WAL generation (`pg_stat_wal`), the background
//! writer and the checkpointer (one view before 17, two from 17 on; the metric names
//! stay the same), `pg_stat_io` (16 on) and the archiver.

use super::catalog::{Family, Reader, Scope, between, counter, gauge, since};
use crate::collect::Group;

pub static WAL: Family = Family {
    name: "wal",
    group: Group::Fast,
    scope: Scope::Instance,
    reader: Reader::Columns,
    labels: &[],
    metrics: &[
        counter("wal_records", "pg_stat_wal_records_total", "", "WAL records generated."),
        counter("wal_fpi", "pg_stat_wal_full_page_images_total", "", "Full-page images written to WAL."),
        counter("wal_bytes", "pg_stat_wal_bytes_total", "bytes", "WAL generated."),
        counter("wal_buffers_full", "pg_stat_wal_buffers_full_total", "", "Times WAL was written because the WAL buffers were full."),
        counter("wal_write", "pg_stat_wal_write_total", "", "WAL buffer writes to disk."),
        counter("wal_sync", "pg_stat_wal_sync_total", "", "WAL file syncs to disk."),
        counter("wal_write_seconds", "pg_stat_wal_write_time_seconds_total", "seconds", "Time writing WAL (with track_wal_io_timing)."),
        counter("wal_sync_seconds", "pg_stat_wal_sync_time_seconds_total", "seconds", "Time syncing WAL (with track_wal_io_timing)."),
        counter("position_bytes", "pg_wal_position_bytes_total", "bytes", "Current WAL position (insert on a primary, replay on a standby) as bytes since 0/0."),
    ],
    queries: &[since(
        140000,
        "SELECT wal_records::float8 AS wal_records, wal_fpi::float8 AS wal_fpi, wal_bytes::float8 AS wal_bytes,
                wal_buffers_full::float8 AS wal_buffers_full, wal_write::float8 AS wal_write, wal_sync::float8 AS wal_sync,
                (wal_write_time / 1000)::float8 AS wal_write_seconds, (wal_sync_time / 1000)::float8 AS wal_sync_seconds,
                pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, '0/0')::float8 AS position_bytes
           FROM pg_stat_wal",
    )],
    ..Family::USUAL
};

pub static BGWRITER: Family = Family {
    name: "bgwriter",
    group: Group::Slow,
    scope: Scope::Instance,
    reader: Reader::Columns,
    labels: &[],
    metrics: &[
        counter("buffers_clean", "pg_stat_bgwriter_buffers_clean_total", "", "Buffers written by the background writer."),
        counter("maxwritten_clean", "pg_stat_bgwriter_maxwritten_clean_total", "", "Times the background writer stopped a round for writing too many buffers."),
        counter("buffers_alloc", "pg_stat_bgwriter_buffers_alloc_total", "", "Buffers allocated."),
        counter("buffers_backend", "pg_stat_bgwriter_buffers_backend_total", "", "Buffers written directly by backends (before 17; see pg_stat_io from 16)."),
        counter("buffers_backend_fsync", "pg_stat_bgwriter_buffers_backend_fsync_total", "", "Times a backend had to fsync itself (before 17)."),
    ],
    queries: &[
        between(
            140000,
            170000,
            "SELECT buffers_clean::float8 AS buffers_clean, maxwritten_clean::float8 AS maxwritten_clean,
                    buffers_alloc::float8 AS buffers_alloc, buffers_backend::float8 AS buffers_backend,
                    buffers_backend_fsync::float8 AS buffers_backend_fsync
               FROM pg_stat_bgwriter",
        ),
        since(
            170000,
            "SELECT buffers_clean::float8 AS buffers_clean, maxwritten_clean::float8 AS maxwritten_clean,
                    buffers_alloc::float8 AS buffers_alloc
               FROM pg_stat_bgwriter",
        ),
    ],
    ..Family::USUAL
};

pub static CHECKPOINTER: Family = Family {
    name: "checkpointer",
    group: Group::Slow,
    scope: Scope::Instance,
    reader: Reader::Columns,
    labels: &[],
    metrics: &[
        counter("timed", "pg_checkpoints_timed_total", "", "Checkpoints started by checkpoint_timeout."),
        counter("requested", "pg_checkpoints_requested_total", "", "Checkpoints requested (WAL volume, CHECKPOINT, backups)."),
        counter("write_seconds", "pg_checkpoint_write_time_seconds_total", "seconds", "Time spent writing checkpoint files."),
        counter("sync_seconds", "pg_checkpoint_sync_time_seconds_total", "seconds", "Time spent syncing checkpoint files."),
        counter("buffers", "pg_checkpoint_buffers_written_total", "", "Buffers written by checkpoints."),
        counter("restartpoints_done", "pg_checkpoint_restartpoints_done_total", "", "Restartpoints completed on a standby (17 on)."),
    ],
    queries: &[
        between(
            140000,
            170000,
            "SELECT checkpoints_timed::float8 AS timed, checkpoints_req::float8 AS requested,
                    (checkpoint_write_time / 1000)::float8 AS write_seconds,
                    (checkpoint_sync_time / 1000)::float8 AS sync_seconds,
                    buffers_checkpoint::float8 AS buffers
               FROM pg_stat_bgwriter",
        ),
        since(
            170000,
            "SELECT num_timed::float8 AS timed, num_requested::float8 AS requested,
                    (write_time / 1000)::float8 AS write_seconds, (sync_time / 1000)::float8 AS sync_seconds,
                    buffers_written::float8 AS buffers, restartpoints_done::float8 AS restartpoints_done
               FROM pg_stat_checkpointer",
        ),
    ],
    ..Family::USUAL
};

pub static IO: Family = Family {
    name: "io",
    group: Group::Slow,
    scope: Scope::Instance,
    reader: Reader::Columns,
    labels: &["backend_type", "object", "context"],
    metrics: &[
        counter("reads", "pg_stat_io_reads_total", "", "Read operations."),
        counter(
            "read_seconds",
            "pg_stat_io_read_time_seconds_total",
            "seconds",
            "Time in reads (with track_io_timing).",
        ),
        counter("writes", "pg_stat_io_writes_total", "", "Write operations."),
        counter(
            "write_seconds",
            "pg_stat_io_write_time_seconds_total",
            "seconds",
            "Time in writes (with track_io_timing).",
        ),
        counter(
            "writebacks",
            "pg_stat_io_writebacks_total",
            "",
            "Writeback requests to the kernel.",
        ),
        counter(
            "extends",
            "pg_stat_io_extends_total",
            "",
            "Relation extend operations.",
        ),
        counter("hits", "pg_stat_io_hits_total", "", "Shared buffer hits."),
        counter(
            "evictions",
            "pg_stat_io_evictions_total",
            "",
            "Buffers evicted to make room.",
        ),
        counter(
            "reuses",
            "pg_stat_io_reuses_total",
            "",
            "Ring buffers reused (bulk operations).",
        ),
        counter("fsyncs", "pg_stat_io_fsyncs_total", "", "fsync calls."),
        gauge(
            "op_bytes",
            "pg_stat_io_op_bytes",
            "bytes",
            "Bytes per read, write or extend operation.",
        ),
    ],
    queries: &[since(
        160000,
        "SELECT backend_type, object, context,
                reads::float8 AS reads, (read_time / 1000)::float8 AS read_seconds,
                writes::float8 AS writes, (write_time / 1000)::float8 AS write_seconds,
                writebacks::float8 AS writebacks, extends::float8 AS extends, hits::float8 AS hits,
                evictions::float8 AS evictions, reuses::float8 AS reuses, fsyncs::float8 AS fsyncs,
                op_bytes::float8 AS op_bytes
           FROM pg_stat_io",
    )],
    missing: "pg_stat_io exists from PostgreSQL 16",
    ..Family::USUAL
};

pub static ARCHIVER: Family = Family {
    name: "archiver",
    group: Group::Slow,
    scope: Scope::Instance,
    reader: Reader::Columns,
    labels: &[],
    metrics: &[
        counter(
            "archived",
            "pg_stat_archiver_archived_total",
            "",
            "WAL files archived.",
        ),
        counter(
            "failed",
            "pg_stat_archiver_failed_total",
            "",
            "Failed attempts to archive a WAL file.",
        ),
        gauge(
            "last_archived",
            "pg_stat_archiver_last_archived_timestamp_seconds",
            "seconds",
            "When the last WAL file was archived (seconds since the epoch).",
        ),
        gauge(
            "last_failed",
            "pg_stat_archiver_last_failed_timestamp_seconds",
            "seconds",
            "When archiving last failed (seconds since the epoch).",
        ),
    ],
    queries: &[since(
        140000,
        "SELECT archived_count::float8 AS archived, failed_count::float8 AS failed,
                extract(epoch FROM last_archived_time)::float8 AS last_archived,
                extract(epoch FROM last_failed_time)::float8 AS last_failed
           FROM pg_stat_archiver",
    )],
    ..Family::USUAL
};
