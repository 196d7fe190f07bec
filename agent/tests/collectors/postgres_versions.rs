//! Version awareness: for PostgreSQL 14, 15, 16 and 17, the query the catalogue
//! chooses for each family references only views and columns that exist in that
//! version, checked against the documented system views below (from the PostgreSQL
//! documentation, chapters "Monitoring Database Activity" and "System Views", and
//! the pg_stat_statements page, of each major version); and on the installed server
//! every chosen query runs and returns only columns the catalogue maps.

use std::collections::BTreeSet;

use pga_agent::collect::postgres::catalog::{FAMILIES, Reader};

use crate::support::postgres::statements_cluster;

const VERSIONS: [u32; 4] = [140000, 150000, 160000, 170000];

/// One relation's columns from version `from` up to, not including, `until`.
struct Doc {
    relation: &'static str,
    from: u32,
    until: u32,
    columns: &'static str,
}

const fn doc(relation: &'static str, from: u32, until: u32, columns: &'static str) -> Doc {
    Doc {
        relation,
        from,
        until,
        columns,
    }
}

const ALL: (u32, u32) = (140000, 180000);

/// The documented catalogs. Views whose columns differ between versions are listed
/// in full; the stable catalogs (`pg_class`, `pg_database`, …) list the columns
/// every version 14–17 has.
static DOCS: &[Doc] = &[
    doc(
        "pg_stat_activity",
        ALL.0,
        ALL.1,
        "datid datname pid leader_pid usesysid usename application_name client_addr client_hostname client_port backend_start xact_start query_start state_change wait_event_type wait_event state backend_xid backend_xmin query_id query backend_type",
    ),
    doc(
        "pg_locks",
        ALL.0,
        ALL.1,
        "locktype database relation page tuple virtualxid transactionid classid objid objsubid virtualtransaction pid mode granted fastpath waitstart",
    ),
    doc(
        "pg_prepared_xacts",
        ALL.0,
        ALL.1,
        "transaction gid prepared owner database",
    ),
    doc(
        "pg_stat_progress_vacuum",
        140000,
        170000,
        "pid datid datname relid phase heap_blks_total heap_blks_scanned heap_blks_vacuumed index_vacuum_count max_dead_tuples num_dead_tuples",
    ),
    doc(
        "pg_stat_progress_vacuum",
        170000,
        ALL.1,
        "pid datid datname relid phase heap_blks_total heap_blks_scanned heap_blks_vacuumed index_vacuum_count max_dead_tuple_bytes dead_tuple_bytes num_dead_item_ids indexes_total indexes_processed",
    ),
    doc(
        "pg_stat_progress_analyze",
        ALL.0,
        ALL.1,
        "pid datid datname relid phase sample_blks_total sample_blks_scanned ext_stats_total ext_stats_computed child_tables_total child_tables_done current_child_table_relid",
    ),
    doc(
        "pg_stat_progress_create_index",
        ALL.0,
        ALL.1,
        "pid datid datname relid index_relid command phase lockers_total lockers_done current_locker_pid blocks_total blocks_done tuples_total tuples_done partitions_total partitions_done",
    ),
    doc(
        "pg_stat_replication",
        ALL.0,
        ALL.1,
        "pid usesysid usename application_name client_addr client_hostname client_port backend_start backend_xmin state sent_lsn write_lsn flush_lsn replay_lsn write_lag flush_lag replay_lag sync_priority sync_state reply_time",
    ),
    doc(
        "pg_stat_wal_receiver",
        ALL.0,
        ALL.1,
        "pid status receive_start_lsn receive_start_tli written_lsn flushed_lsn received_tli last_msg_send_time last_msg_receipt_time latest_end_lsn latest_end_time slot_name sender_host sender_port conninfo",
    ),
    doc(
        "pg_replication_slots",
        140000,
        160000,
        "slot_name plugin slot_type datoid database temporary active active_pid xmin catalog_xmin restart_lsn confirmed_flush_lsn wal_status safe_wal_size two_phase",
    ),
    doc(
        "pg_replication_slots",
        160000,
        170000,
        "slot_name plugin slot_type datoid database temporary active active_pid xmin catalog_xmin restart_lsn confirmed_flush_lsn wal_status safe_wal_size two_phase conflicting",
    ),
    doc(
        "pg_replication_slots",
        170000,
        ALL.1,
        "slot_name plugin slot_type datoid database temporary active active_pid xmin catalog_xmin restart_lsn confirmed_flush_lsn wal_status safe_wal_size two_phase inactive_since conflicting invalidation_reason failover synced",
    ),
    doc(
        "pg_stat_wal",
        ALL.0,
        ALL.1,
        "wal_records wal_fpi wal_bytes wal_buffers_full wal_write wal_sync wal_write_time wal_sync_time stats_reset",
    ),
    doc(
        "pg_stat_database",
        ALL.0,
        ALL.1,
        "datid datname numbackends xact_commit xact_rollback blks_read blks_hit tup_returned tup_fetched tup_inserted tup_updated tup_deleted conflicts temp_files temp_bytes deadlocks checksum_failures checksum_last_failure blk_read_time blk_write_time session_time active_time idle_in_transaction_time sessions sessions_abandoned sessions_fatal sessions_killed stats_reset",
    ),
    doc(
        "pg_stat_database_conflicts",
        140000,
        160000,
        "datid datname confl_tablespace confl_lock confl_snapshot confl_bufferpin confl_deadlock",
    ),
    doc(
        "pg_stat_database_conflicts",
        160000,
        ALL.1,
        "datid datname confl_tablespace confl_lock confl_snapshot confl_bufferpin confl_deadlock confl_active_logicalslot",
    ),
    doc(
        "pg_stat_bgwriter",
        140000,
        170000,
        "checkpoints_timed checkpoints_req checkpoint_write_time checkpoint_sync_time buffers_checkpoint buffers_clean maxwritten_clean buffers_backend buffers_backend_fsync buffers_alloc stats_reset",
    ),
    doc(
        "pg_stat_bgwriter",
        170000,
        ALL.1,
        "buffers_clean maxwritten_clean buffers_alloc stats_reset",
    ),
    doc(
        "pg_stat_checkpointer",
        170000,
        ALL.1,
        "num_timed num_requested restartpoints_timed restartpoints_req restartpoints_done write_time sync_time buffers_written stats_reset",
    ),
    doc(
        "pg_stat_io",
        160000,
        ALL.1,
        "backend_type object context reads read_time writes write_time writebacks writeback_time extends extend_time op_bytes hits evictions reuses fsyncs fsync_time stats_reset",
    ),
    doc(
        "pg_stat_archiver",
        ALL.0,
        ALL.1,
        "archived_count last_archived_wal last_archived_time failed_count last_failed_wal last_failed_time stats_reset",
    ),
    doc(
        "pg_stat_statements",
        140000,
        150000,
        "userid dbid toplevel queryid query plans total_plan_time min_plan_time max_plan_time mean_plan_time stddev_plan_time calls total_exec_time min_exec_time max_exec_time mean_exec_time stddev_exec_time rows shared_blks_hit shared_blks_read shared_blks_dirtied shared_blks_written local_blks_hit local_blks_read local_blks_dirtied local_blks_written temp_blks_read temp_blks_written blk_read_time blk_write_time wal_records wal_fpi wal_bytes",
    ),
    doc(
        "pg_stat_statements",
        150000,
        170000,
        "userid dbid toplevel queryid query plans total_plan_time min_plan_time max_plan_time mean_plan_time stddev_plan_time calls total_exec_time min_exec_time max_exec_time mean_exec_time stddev_exec_time rows shared_blks_hit shared_blks_read shared_blks_dirtied shared_blks_written local_blks_hit local_blks_read local_blks_dirtied local_blks_written temp_blks_read temp_blks_written blk_read_time blk_write_time temp_blk_read_time temp_blk_write_time wal_records wal_fpi wal_bytes jit_functions jit_generation_time jit_inlining_count jit_inlining_time jit_optimization_count jit_optimization_time jit_emission_count jit_emission_time",
    ),
    doc(
        "pg_stat_statements",
        170000,
        ALL.1,
        "userid dbid toplevel queryid query plans total_plan_time min_plan_time max_plan_time mean_plan_time stddev_plan_time calls total_exec_time min_exec_time max_exec_time mean_exec_time stddev_exec_time rows shared_blks_hit shared_blks_read shared_blks_dirtied shared_blks_written local_blks_hit local_blks_read local_blks_dirtied local_blks_written temp_blks_read temp_blks_written shared_blk_read_time shared_blk_write_time local_blk_read_time local_blk_write_time temp_blk_read_time temp_blk_write_time wal_records wal_fpi wal_bytes jit_functions jit_generation_time jit_inlining_count jit_inlining_time jit_deform_count jit_deform_time jit_optimization_count jit_optimization_time jit_emission_count jit_emission_time stats_since minmax_stats_since",
    ),
    doc(
        "pg_stat_statements_info",
        ALL.0,
        ALL.1,
        "dealloc stats_reset",
    ),
    doc(
        "pg_stat_user_tables",
        140000,
        160000,
        "relid schemaname relname seq_scan seq_tup_read idx_scan idx_tup_fetch n_tup_ins n_tup_upd n_tup_del n_tup_hot_upd n_live_tup n_dead_tup n_mod_since_analyze n_ins_since_vacuum last_vacuum last_autovacuum last_analyze last_autoanalyze vacuum_count autovacuum_count analyze_count autoanalyze_count",
    ),
    doc(
        "pg_stat_user_tables",
        160000,
        ALL.1,
        "relid schemaname relname seq_scan last_seq_scan seq_tup_read idx_scan last_idx_scan idx_tup_fetch n_tup_ins n_tup_upd n_tup_del n_tup_hot_upd n_tup_newpage_upd n_live_tup n_dead_tup n_mod_since_analyze n_ins_since_vacuum last_vacuum last_autovacuum last_analyze last_autoanalyze vacuum_count autovacuum_count analyze_count autoanalyze_count",
    ),
    doc(
        "pg_stat_user_indexes",
        140000,
        160000,
        "relid indexrelid schemaname relname indexrelname idx_scan idx_tup_read idx_tup_fetch",
    ),
    doc(
        "pg_stat_user_indexes",
        160000,
        ALL.1,
        "relid indexrelid schemaname relname indexrelname idx_scan last_idx_scan idx_tup_read idx_tup_fetch",
    ),
    doc(
        "pg_statio_user_tables",
        ALL.0,
        ALL.1,
        "relid schemaname relname heap_blks_read heap_blks_hit idx_blks_read idx_blks_hit toast_blks_read toast_blks_hit tidx_blks_read tidx_blks_hit",
    ),
    doc(
        "pg_statio_user_indexes",
        ALL.0,
        ALL.1,
        "relid indexrelid schemaname relname indexrelname idx_blks_read idx_blks_hit",
    ),
    doc(
        "pg_settings",
        ALL.0,
        ALL.1,
        "name setting unit category short_desc extra_desc context vartype source min_val max_val enumvals boot_val reset_val sourcefile sourceline pending_restart",
    ),
    doc(
        "pg_roles",
        ALL.0,
        ALL.1,
        "rolname rolsuper rolinherit rolcreaterole rolcreatedb rolcanlogin rolreplication rolconnlimit rolpassword rolvaliduntil rolbypassrls rolconfig oid",
    ),
    doc(
        "pg_database",
        ALL.0,
        ALL.1,
        "oid datname datdba encoding datistemplate datallowconn datconnlimit datfrozenxid datminmxid dattablespace datacl",
    ),
    doc(
        "pg_class",
        ALL.0,
        ALL.1,
        "oid relname relnamespace reltype relowner relam relfilenode reltablespace relpages reltuples relallvisible reltoastrelid relhasindex relisshared relpersistence relkind relnatts relfrozenxid relminmxid",
    ),
    doc("pg_namespace", ALL.0, ALL.1, "oid nspname nspowner nspacl"),
    doc(
        "pg_index",
        ALL.0,
        ALL.1,
        "indexrelid indrelid indnatts indisunique indisprimary",
    ),
];

fn docs_of(relation: &str) -> impl Iterator<Item = &'static Doc> + '_ {
    DOCS.iter().filter(move |d| d.relation == relation)
}

/// Lower-case identifiers of `sql`, outside string literals, each with whether it
/// follows `AS` (an alias) and whether `(` follows it (a function call).
fn identifiers(sql: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    let b = sql.as_bytes();
    let mut i = 0;
    let mut prev = String::new();
    while i < b.len() {
        let c = b[i];
        if c == b'\'' {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = sql[start..i].to_ascii_lowercase();
            let mut j = i;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            let call = j < b.len() && b[j] == b'(';
            out.push((word.clone(), prev == "as", call));
            prev = word;
        } else {
            if !c.is_ascii_whitespace() {
                prev.clear();
            }
            i += 1;
        }
    }
    out
}

#[test]
fn chosen_queries_use_only_what_each_version_documents() {
    let mut checked = 0;
    for family in FAMILIES {
        for v in VERSIONS {
            let Some(sql) = family.select(v) else {
                assert!(
                    !family.missing.is_empty(),
                    "{} has no query for {v} and says nothing about it",
                    family.name
                );
                continue;
            };
            let ids = identifiers(sql);
            // Relations: each one named must exist at v.
            let relations: BTreeSet<&str> = ids
                .iter()
                .filter_map(|(w, _, _)| DOCS.iter().find(|d| d.relation == w).map(|d| d.relation))
                .collect();
            for r in &relations {
                assert!(
                    docs_of(r).any(|d| d.from <= v && v < d.until),
                    "{} at {v}: {r} does not exist in that version",
                    family.name
                );
            }
            for (w, _, call) in &ids {
                if (w.starts_with("pg_stat") || w.starts_with("pg_statio")) && !call {
                    assert!(
                        relations.contains(w.as_str()),
                        "{} at {v}: {w} is not in the documented catalogs of this test",
                        family.name
                    );
                }
            }
            // Columns: none that the relations have only in other versions.
            let here: BTreeSet<&str> = relations
                .iter()
                .flat_map(|r| docs_of(r).filter(|d| d.from <= v && v < d.until))
                .flat_map(|d| d.columns.split_whitespace())
                .collect();
            let anywhen: BTreeSet<&str> = relations
                .iter()
                .flat_map(|r| docs_of(r))
                .flat_map(|d| d.columns.split_whitespace())
                .collect();
            for (w, alias, _) in &ids {
                if !alias && anywhen.contains(w.as_str()) && !here.contains(w.as_str()) {
                    panic!(
                        "{} at {v}: column {w} does not exist in that version of {relations:?}",
                        family.name
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= FAMILIES.len() * 4 - 4, "{checked}");
    // pg_stat_io is skipped before 16 and chosen from 16.
    let io = FAMILIES.iter().find(|f| f.name == "io").unwrap();
    assert!(io.select(150000).is_none() && io.select(160000).is_some());
}

/// The checker itself catches a column of the wrong version.
#[test]
fn the_checker_knows_the_version_differences() {
    let ids =
        identifiers("SELECT buffers_checkpoint AS b, 'checkpoints_timed' FROM pg_stat_bgwriter");
    let words: Vec<&str> = ids.iter().map(|(w, _, _)| w.as_str()).collect();
    assert_eq!(
        words,
        [
            "select",
            "buffers_checkpoint",
            "as",
            "b",
            "from",
            "pg_stat_bgwriter"
        ]
    );
    let at17: BTreeSet<&str> = docs_of("pg_stat_bgwriter")
        .filter(|d| d.from <= 170000 && 170000 < d.until)
        .flat_map(|d| d.columns.split_whitespace())
        .collect();
    assert!(!at17.contains("buffers_checkpoint"));
}

/// On the installed server, every chosen query runs (as the agent runs it, with its
/// limit parameter) and returns only columns the catalogue maps.
#[test]
fn every_chosen_query_runs_on_the_installed_server() {
    let cluster = statements_cluster("CREATE TABLE t AS SELECT 1 AS x");
    let version: u32 = cluster
        .psql("postgres", "SHOW server_version_num")
        .unwrap()
        .parse()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (client, conn) =
            tokio_postgres::connect(&cluster.conninfo("postgres"), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut ran = 0;
        for family in FAMILIES {
            let Some(sql) = family.select(version) else {
                continue;
            };
            let limit = 10i64;
            let names: Vec<&str> = pga_agent::collect::postgres::settings::SELECTED.to_vec();
            let rows = if family.reader == Reader::Settings {
                client.query(sql, &[&names]).await
            } else if family.takes_limit {
                client.query(sql, &[&limit]).await
            } else {
                client.query(sql, &[]).await
            }
            .unwrap_or_else(|e| panic!("{} at {version}: {e:?}", family.name));
            let stmt = client.prepare(sql).await.unwrap();
            if family.reader != Reader::Settings {
                for c in stmt.columns() {
                    assert!(
                        family.labels.contains(&c.name()) || family.metric(c.name()).is_some(),
                        "{}: column {} unmapped",
                        family.name,
                        c.name()
                    );
                    if family.metric(c.name()).is_some() {
                        assert_eq!(
                            c.type_(),
                            &tokio_postgres::types::Type::FLOAT8,
                            "{}.{}",
                            family.name,
                            c.name()
                        );
                    }
                }
            }
            drop(rows);
            ran += 1;
        }
        assert!(ran >= FAMILIES.len() - 1, "{ran}");
    });
}
