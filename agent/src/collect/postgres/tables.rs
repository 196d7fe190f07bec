//! Tables and indexes of every covered database: `pg_stat_user_tables`,
//! `pg_stat_user_indexes`, `pg_statio_user_tables` and `pg_statio_user_indexes`. Slow
//! group, on each database's own connection. At most `relations_top_n` relations per
//! database and family (the busiest first) keep the series count bounded. These
//! views read statistics and the catalog only: no lock on any user table is taken.

use super::catalog::{Family, Reader, Scope, between, counter, gauge, since};
use crate::collect::Group;

const TABLE_LABELS: &[&str] = &["schemaname", "relname"];
const INDEX_LABELS: &[&str] = &["schemaname", "relname", "indexrelname"];

/// `pg_stat_user_tables` with the relation's frozen XID age, the busiest first;
/// `$newer` adds the columns of later versions after `n_tup_hot_upd`.
macro_rules! user_tables {
    ($newer:literal) => {
        concat!(
            "SELECT s.schemaname::text AS schemaname, s.relname::text AS relname,
                    s.seq_scan::float8 AS seq_scan, s.seq_tup_read::float8 AS seq_tup_read,
                    s.idx_scan::float8 AS idx_scan, s.idx_tup_fetch::float8 AS idx_tup_fetch,
                    s.n_tup_ins::float8 AS n_tup_ins, s.n_tup_upd::float8 AS n_tup_upd, s.n_tup_del::float8 AS n_tup_del,
                    s.n_tup_hot_upd::float8 AS n_tup_hot_upd",
            $newer,
            ",
                    s.n_live_tup::float8 AS n_live_tup, s.n_dead_tup::float8 AS n_dead_tup,
                    s.n_mod_since_analyze::float8 AS n_mod_since_analyze, s.n_ins_since_vacuum::float8 AS n_ins_since_vacuum,
                    s.vacuum_count::float8 AS vacuum_count, s.autovacuum_count::float8 AS autovacuum_count,
                    s.analyze_count::float8 AS analyze_count, s.autoanalyze_count::float8 AS autoanalyze_count,
                    extract(epoch FROM s.last_vacuum)::float8 AS last_vacuum, extract(epoch FROM s.last_autovacuum)::float8 AS last_autovacuum,
                    extract(epoch FROM s.last_analyze)::float8 AS last_analyze, extract(epoch FROM s.last_autoanalyze)::float8 AS last_autoanalyze,
                    age(c.relfrozenxid)::float8 AS frozen_xid_age
               FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
              ORDER BY coalesce(s.seq_tup_read, 0) + coalesce(s.idx_tup_fetch, 0) + s.n_tup_ins + s.n_tup_upd + s.n_tup_del + s.n_live_tup DESC
              LIMIT $1"
        )
    };
}

pub static TABLES: Family = Family {
    name: "tables",
    group: Group::Slow,
    scope: Scope::EachDatabase,
    reader: Reader::Columns,
    labels: TABLE_LABELS,
    metrics: &[
        counter(
            "seq_scan",
            "pg_stat_user_tables_seq_scan_total",
            "",
            "Sequential scans of the table.",
        ),
        counter(
            "seq_tup_read",
            "pg_stat_user_tables_seq_tup_read_total",
            "",
            "Rows read by sequential scans.",
        ),
        counter(
            "idx_scan",
            "pg_stat_user_tables_idx_scan_total",
            "",
            "Index scans on the table.",
        ),
        counter(
            "idx_tup_fetch",
            "pg_stat_user_tables_idx_tup_fetch_total",
            "",
            "Rows fetched by index scans.",
        ),
        counter(
            "n_tup_ins",
            "pg_stat_user_tables_n_tup_ins_total",
            "",
            "Rows inserted.",
        ),
        counter(
            "n_tup_upd",
            "pg_stat_user_tables_n_tup_upd_total",
            "",
            "Rows updated.",
        ),
        counter(
            "n_tup_del",
            "pg_stat_user_tables_n_tup_del_total",
            "",
            "Rows deleted.",
        ),
        counter(
            "n_tup_hot_upd",
            "pg_stat_user_tables_n_tup_hot_upd_total",
            "",
            "Rows HOT-updated (no index change).",
        ),
        counter(
            "n_tup_newpage_upd",
            "pg_stat_user_tables_n_tup_newpage_upd_total",
            "",
            "Rows updated onto a new heap page (16 on).",
        ),
        gauge(
            "n_live_tup",
            "pg_stat_user_tables_n_live_tup",
            "",
            "Estimated live rows.",
        ),
        gauge(
            "n_dead_tup",
            "pg_stat_user_tables_n_dead_tup",
            "",
            "Estimated dead rows.",
        ),
        gauge(
            "n_mod_since_analyze",
            "pg_stat_user_tables_n_mod_since_analyze",
            "",
            "Rows changed since the last analyze.",
        ),
        gauge(
            "n_ins_since_vacuum",
            "pg_stat_user_tables_n_ins_since_vacuum",
            "",
            "Rows inserted since the last vacuum.",
        ),
        counter(
            "vacuum_count",
            "pg_stat_user_tables_vacuum_total",
            "",
            "Manual vacuums.",
        ),
        counter(
            "autovacuum_count",
            "pg_stat_user_tables_autovacuum_total",
            "",
            "Autovacuums.",
        ),
        counter(
            "analyze_count",
            "pg_stat_user_tables_analyze_total",
            "",
            "Manual analyzes.",
        ),
        counter(
            "autoanalyze_count",
            "pg_stat_user_tables_autoanalyze_total",
            "",
            "Autoanalyzes.",
        ),
        gauge(
            "last_vacuum",
            "pg_stat_user_tables_last_vacuum_timestamp_seconds",
            "seconds",
            "When the table was last vacuumed by hand (seconds since the epoch).",
        ),
        gauge(
            "last_autovacuum",
            "pg_stat_user_tables_last_autovacuum_timestamp_seconds",
            "seconds",
            "When autovacuum last processed the table.",
        ),
        gauge(
            "last_analyze",
            "pg_stat_user_tables_last_analyze_timestamp_seconds",
            "seconds",
            "When the table was last analyzed by hand.",
        ),
        gauge(
            "last_autoanalyze",
            "pg_stat_user_tables_last_autoanalyze_timestamp_seconds",
            "seconds",
            "When autovacuum last analyzed the table.",
        ),
        gauge(
            "frozen_xid_age",
            "pg_stat_user_tables_frozen_xid_age",
            "",
            "Transactions since the table's oldest unfrozen XID.",
        ),
    ],
    queries: &[
        between(140000, 160000, user_tables!("")),
        since(
            160000,
            user_tables!(", s.n_tup_newpage_upd::float8 AS n_tup_newpage_upd"),
        ),
    ],
    takes_limit: true,
    ..Family::USUAL
};

pub static INDEXES: Family = Family {
    name: "indexes",
    group: Group::Slow,
    scope: Scope::EachDatabase,
    reader: Reader::Columns,
    labels: INDEX_LABELS,
    metrics: &[
        counter("idx_scan", "pg_stat_user_indexes_idx_scan_total", "", "Scans of the index."),
        counter("idx_tup_read", "pg_stat_user_indexes_idx_tup_read_total", "", "Index entries returned by scans."),
        counter("idx_tup_fetch", "pg_stat_user_indexes_idx_tup_fetch_total", "", "Live rows fetched by simple index scans."),
    ],
    queries: &[since(
        140000,
        "SELECT schemaname::text AS schemaname, relname::text AS relname, indexrelname::text AS indexrelname,
                idx_scan::float8 AS idx_scan, idx_tup_read::float8 AS idx_tup_read, idx_tup_fetch::float8 AS idx_tup_fetch
           FROM pg_stat_user_indexes
          ORDER BY idx_scan + idx_tup_read DESC
          LIMIT $1",
    )],
    takes_limit: true,
    ..Family::USUAL
};

pub static STATIO_TABLES: Family = Family {
    name: "statio_tables",
    group: Group::Slow,
    scope: Scope::EachDatabase,
    reader: Reader::Columns,
    labels: TABLE_LABELS,
    metrics: &[
        counter(
            "heap_blks_read",
            "pg_statio_user_tables_heap_blks_read_total",
            "",
            "Heap blocks read from disk (or the OS cache).",
        ),
        counter(
            "heap_blks_hit",
            "pg_statio_user_tables_heap_blks_hit_total",
            "",
            "Heap blocks found in shared buffers.",
        ),
        counter(
            "idx_blks_read",
            "pg_statio_user_tables_idx_blks_read_total",
            "",
            "Index blocks read, all indexes of the table.",
        ),
        counter(
            "idx_blks_hit",
            "pg_statio_user_tables_idx_blks_hit_total",
            "",
            "Index blocks found in shared buffers.",
        ),
        counter(
            "toast_blks_read",
            "pg_statio_user_tables_toast_blks_read_total",
            "",
            "TOAST blocks read.",
        ),
        counter(
            "toast_blks_hit",
            "pg_statio_user_tables_toast_blks_hit_total",
            "",
            "TOAST blocks found in shared buffers.",
        ),
    ],
    queries: &[since(
        140000,
        "SELECT schemaname::text AS schemaname, relname::text AS relname,
                heap_blks_read::float8 AS heap_blks_read, heap_blks_hit::float8 AS heap_blks_hit,
                idx_blks_read::float8 AS idx_blks_read, idx_blks_hit::float8 AS idx_blks_hit,
                toast_blks_read::float8 AS toast_blks_read, toast_blks_hit::float8 AS toast_blks_hit
           FROM pg_statio_user_tables
          ORDER BY coalesce(heap_blks_read, 0) + coalesce(heap_blks_hit, 0) DESC
          LIMIT $1",
    )],
    takes_limit: true,
    ..Family::USUAL
};

pub static STATIO_INDEXES: Family = Family {
    name: "statio_indexes",
    group: Group::Slow,
    scope: Scope::EachDatabase,
    reader: Reader::Columns,
    labels: INDEX_LABELS,
    metrics: &[
        counter("idx_blks_read", "pg_statio_user_indexes_idx_blks_read_total", "", "Index blocks read from disk (or the OS cache)."),
        counter("idx_blks_hit", "pg_statio_user_indexes_idx_blks_hit_total", "", "Index blocks found in shared buffers."),
    ],
    queries: &[since(
        140000,
        "SELECT schemaname::text AS schemaname, relname::text AS relname, indexrelname::text AS indexrelname,
                idx_blks_read::float8 AS idx_blks_read, idx_blks_hit::float8 AS idx_blks_hit
           FROM pg_statio_user_indexes
          ORDER BY coalesce(idx_blks_read, 0) + coalesce(idx_blks_hit, 0) DESC
          LIMIT $1",
    )],
    takes_limit: true,
    ..Family::USUAL
};
