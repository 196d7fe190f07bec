//! The version-aware query catalogue: every statistics family, the group it runs in,
//! where it runs (once per instance, or in every covered database), its metrics, and
//! one query per range of server versions.
//!
//! A family's query is chosen by `server_version_num`. Where no query covers a version
//! (a view that does not exist there, such as `pg_stat_io` before 16), the family is
//! skipped on that server and the agent says so once.
//!
//! Most families are read generically: each result column is either a label (text)
//! or a metric (`float8`) listed in [`Family::metrics`] by column name, so the
//! queries for different versions only differ in which columns they return, and a
//! metric keeps its name across versions (checkpoints are `pg_checkpoints_timed_total`
//! whether they come from `pg_stat_bgwriter` before 17 or `pg_stat_checkpointer`).
//! NULL metric values are left out of the pass.

use pga_format::MetricKind;

use super::{activity, database, replication, server, settings, sizes, statements, tables};
use crate::collect::Group;

/// Where a family runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Once per instance, on the main connection.
    Instance,
    /// In every covered database, on that database's connection; its series get a
    /// `datname` label.
    EachDatabase,
}

/// How the rows of a family become samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// Label columns and metric columns, by name.
    Columns,
    /// `pg_stat_statements`: top-N, query texts fetched separately.
    Statements,
    /// `pg_settings`: one metric per setting, named after it.
    Settings,
}

/// One metric: a result column and the series it fills.
#[derive(Debug)]
pub struct Metric {
    /// The result column (its alias in the query).
    pub column: &'static str,
    /// The metric name, `_total` on counters, base units.
    pub name: &'static str,
    pub kind: MetricKind,
    pub unit: &'static str,
    pub help: &'static str,
}

/// A counter read from `column`.
pub const fn counter(
    column: &'static str,
    name: &'static str,
    unit: &'static str,
    help: &'static str,
) -> Metric {
    Metric {
        column,
        name,
        kind: MetricKind::Counter,
        unit,
        help,
    }
}

/// A gauge read from `column`.
pub const fn gauge(
    column: &'static str,
    name: &'static str,
    unit: &'static str,
    help: &'static str,
) -> Metric {
    Metric {
        column,
        name,
        kind: MetricKind::Gauge,
        unit,
        help,
    }
}

/// The query of a family for server versions `from..until` (`server_version_num`).
#[derive(Debug)]
pub struct Versioned {
    pub from: u32,
    pub until: u32,
    pub sql: &'static str,
}

/// From this version on.
pub const fn since(from: u32, sql: &'static str) -> Versioned {
    Versioned {
        from,
        until: u32::MAX,
        sql,
    }
}

/// From `from` up to, not including, `until`.
pub const fn between(from: u32, until: u32, sql: &'static str) -> Versioned {
    Versioned { from, until, sql }
}

/// One statistics family.
#[derive(Debug)]
pub struct Family {
    /// Its name in logs, in `families_exclude` and in docs/families.md.
    pub name: &'static str,
    pub group: Group,
    pub scope: Scope,
    pub reader: Reader,
    /// Label columns, in the order of the query.
    pub labels: &'static [&'static str],
    pub metrics: &'static [Metric],
    pub queries: &'static [Versioned],
    /// The query takes `$1`: the per-database relation limit (`relations_top_n`).
    pub takes_limit: bool,
    /// Rows carry a `datname` label, and databases not covered by
    /// `databases_include`/`_exclude` are left out.
    pub filter_datname: bool,
    /// Said once when no query fits the server's version.
    pub missing: &'static str,
    /// What to do when the role may not read it.
    pub fix: &'static str,
}

impl Family {
    /// What most families are, for `..Family::USUAL` after the fields a family sets:
    /// no `$1`, no `datname` filter, a query for every supported version, readable
    /// with `pg_monitor`. Every family sets its own name, group, scope, reader,
    /// labels, metrics and queries.
    pub const USUAL: Family = Family {
        name: "",
        group: Group::Fast,
        scope: Scope::Instance,
        reader: Reader::Columns,
        labels: &[],
        metrics: &[],
        queries: &[],
        takes_limit: false,
        filter_datname: false,
        missing: "",
        fix: "GRANT pg_monitor TO the monitoring role",
    };

    /// The query for a server at `version`, if the family exists there.
    pub fn select(&self, version: u32) -> Option<&'static str> {
        self.queries
            .iter()
            .find(|q| q.from <= version && version < q.until)
            .map(|q| q.sql)
    }

    /// The metric read from `column`.
    pub fn metric(&self, column: &str) -> Option<&'static Metric> {
        self.metrics.iter().find(|m| m.column == column)
    }
}

/// Every family, in the order a pass runs them.
pub static FAMILIES: &[&Family] = &[
    &activity::ACTIVITY,
    &activity::OLDEST,
    &activity::LOCKS,
    &activity::BLOCKING,
    &activity::PROGRESS_VACUUM,
    &activity::PROGRESS_ANALYZE,
    &activity::PROGRESS_CREATE_INDEX,
    &replication::REPLICATION,
    &replication::STANDBY,
    &replication::SLOTS,
    &server::WAL,
    &database::DATABASE,
    &database::CONFLICTS,
    &database::WRAPAROUND,
    &server::BGWRITER,
    &server::CHECKPOINTER,
    &server::IO,
    &server::ARCHIVER,
    &statements::STATEMENTS,
    &settings::SETTINGS,
    &tables::TABLES,
    &tables::INDEXES,
    &tables::STATIO_TABLES,
    &tables::STATIO_INDEXES,
    &sizes::DATABASE_SIZE,
    &sizes::RELATION_SIZE,
];

/// The names of every family, for `families_exclude`.
pub fn family_names() -> impl Iterator<Item = &'static str> {
    FAMILIES.iter().map(|f| f.name)
}

/// The family named `name`.
pub fn family(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().copied().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_queries_cover_ranges_without_overlap() {
        let mut names: Vec<_> = family_names().collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
        for f in FAMILIES {
            for v in [140000, 150000, 160000, 170000, 170004] {
                let n = f
                    .queries
                    .iter()
                    .filter(|q| q.from <= v && v < q.until)
                    .count();
                assert!(n <= 1, "{} has overlapping queries at {v}", f.name);
            }
            // Every metric is a Prometheus name with the right suffix for its kind.
            for m in f.metrics {
                assert!(m.name.starts_with("pg_"), "{}", m.name);
                assert_eq!(
                    m.name.ends_with("_total"),
                    m.kind == MetricKind::Counter,
                    "{}",
                    m.name
                );
                if !m.unit.is_empty() {
                    assert!(m.name.contains(m.unit), "{} vs {}", m.name, m.unit);
                }
            }
        }
    }

    #[test]
    fn every_metric_column_appears_in_some_query_and_every_alias_is_mapped() {
        for f in FAMILIES.iter().filter(|f| f.reader == Reader::Columns) {
            for m in f.metrics {
                assert!(
                    f.queries.iter().any(|q| q.sql.contains(m.column)),
                    "{}: column {} in no query",
                    f.name,
                    m.column
                );
            }
            for l in f.labels {
                assert!(
                    f.queries.iter().all(|q| q.sql.contains(l)),
                    "{}: label {l} missing from a query",
                    f.name
                );
            }
        }
    }
}
