//! Database and relation sizes. Sizes group (every 5 minutes by default).
//!
//! `pg_database_size` takes no lock. `pg_relation_size` and friends take an
//! `ACCESS SHARE` lock on the relation, which waits behind any `ACCESS EXCLUSIVE`
//! lock held or awaited by user DDL (`ALTER TABLE`, `VACUUM FULL`, `TRUNCATE`,
//! `LOCK TABLE`). So relations with such a lock on themselves, their TOAST table or
//! an index are left out of that pass (their series pause), and every session's
//! `lock_timeout` bounds the wait should DDL arrive between the check and the read;
//! the family then fails for that pass only. At most `relations_top_n` relations per
//! database, the largest first (`relpages`, from the catalog).

use super::catalog::{Family, Reader, Scope, gauge, since};
use crate::collect::Group;

pub static DATABASE_SIZE: Family = Family {
    name: "database_size",
    group: Group::Sizes,
    scope: Scope::Instance,
    reader: Reader::Columns,
    labels: &["datname"],
    metrics: &[gauge("bytes", "pg_database_size_bytes", "bytes", "Disk space used by the database.")],
    queries: &[since(
        140000,
        "SELECT datname::text AS datname,
                (CASE WHEN has_database_privilege(oid, 'CONNECT') THEN pg_database_size(oid) END)::float8 AS bytes
           FROM pg_database
          WHERE datallowconn",
    )],
    filter_datname: true,
    ..Family::USUAL
};

pub static RELATION_SIZE: Family = Family {
    name: "relation_size",
    group: Group::Sizes,
    scope: Scope::EachDatabase,
    reader: Reader::Columns,
    labels: &["schemaname", "relname", "relkind"],
    metrics: &[
        gauge("table_bytes", "pg_relation_size_bytes", "bytes", "Main fork of the table or materialized view."),
        gauge("indexes_bytes", "pg_relation_indexes_size_bytes", "bytes", "All indexes of the relation."),
        gauge("total_bytes", "pg_relation_total_size_bytes", "bytes", "The relation with its TOAST data and indexes."),
    ],
    queries: &[since(
        140000,
        "SELECT n.nspname::text AS schemaname, c.relname::text AS relname, c.relkind::text AS relkind,
                pg_relation_size(c.oid)::float8 AS table_bytes,
                pg_indexes_size(c.oid)::float8 AS indexes_bytes,
                pg_total_relation_size(c.oid)::float8 AS total_bytes
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'm') AND c.relpersistence <> 't'
            AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
            AND NOT EXISTS (
                SELECT 1 FROM pg_locks l
                 WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock'
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND (l.relation = c.oid OR l.relation = c.reltoastrelid
                        OR l.relation IN (SELECT i.indexrelid FROM pg_index i WHERE i.indrelid = c.oid)))
          ORDER BY c.relpages DESC, c.oid
          LIMIT $1",
    )],
    takes_limit: true,
    ..Family::USUAL
};
