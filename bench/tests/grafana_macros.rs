//! Grafana's PostgreSQL macros as `pga_bench::grafana::macros` expands them, against
//! the examples of Grafana's documentation of the PostgreSQL datasource (the macro
//! table of its query editor page and its time series examples, run on PostgreSQL
//! over the documentation's own `test_data` rows).

use pga_bench::grafana::macros::{Fill, MacroError, TimeRange, expand, expand_macros};
use pga_bench::grafana::template::{Scope, Variable, interpolate};
use pga_lab::Cluster;

/// 2017-04-21T05:01:17Z to 2017-04-21T05:06:17Z: the range of the documented
/// `$__timeFilter`, `$__timeFrom()` and `$__timeTo()` examples.
const DOC_RANGE: TimeRange = TimeRange {
    from_ms: 1_492_750_877_000,
    to_ms: 1_492_751_177_000,
};

/// 1494410783 to 1494497183: the range of the documented Unix epoch examples.
const EPOCH_RANGE: TimeRange = TimeRange {
    from_ms: 1_494_410_783_000,
    to_ms: 1_494_497_183_000,
};

fn x(sql: &str, range: TimeRange) -> String {
    expand(sql, range, 300_000, false).unwrap().sql
}

#[test]
fn the_documented_macro_examples() {
    assert_eq!(
        x("$__timeFilter(dateColumn)", DOC_RANGE),
        "dateColumn BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-21T05:06:17Z'"
    );
    assert_eq!(x("$__timeFrom()", DOC_RANGE), "'2017-04-21T05:01:17Z'");
    assert_eq!(x("$__timeTo()", DOC_RANGE), "'2017-04-21T05:06:17Z'");
    assert_eq!(
        x("$__unixEpochFilter(dateColumn)", EPOCH_RANGE),
        "dateColumn >= 1494410783 AND dateColumn <= 1494497183"
    );
    assert_eq!(x("$__unixEpochFrom()", EPOCH_RANGE), "1494410783");
    assert_eq!(x("$__unixEpochTo()", EPOCH_RANGE), "1494497183");
    // The documented nanosecond example has sub-millisecond digits a dashboard's
    // range (milliseconds) cannot carry; the form is the same.
    let ns_range = TimeRange {
        from_ms: 1_494_410_783_152,
        to_ms: 1_494_497_183_142,
    };
    assert_eq!(
        x("$__unixEpochNanoFilter(dateColumn)", ns_range),
        "dateColumn >= 1494410783152000000 AND dateColumn <= 1494497183142000000"
    );
    assert_eq!(x("$__unixEpochNanoFrom()", ns_range), "1494410783152000000");
    assert_eq!(x("$__unixEpochNanoTo()", ns_range), "1494497183142000000");
    // Renaming and epoch conversion.
    assert_eq!(
        x("$__time(dateColumn)", DOC_RANGE),
        "dateColumn AS \"time\""
    );
    assert_eq!(
        x("$__timeEpoch(dateColumn)", DOC_RANGE),
        "extract(epoch from dateColumn) as \"time\""
    );
    // Grouping, with and without an alias, with and without fill, and as
    // TimescaleDB's time_bucket when the datasource says so.
    assert_eq!(
        x("GROUP BY $__timeGroup(dateColumn,'5m')", DOC_RANGE),
        "GROUP BY floor(extract(epoch from dateColumn)/300)*300"
    );
    assert_eq!(
        x("$__timeGroupAlias(dateColumn,'5m')", DOC_RANGE),
        "floor(extract(epoch from dateColumn)/300)*300 AS \"time\""
    );
    assert_eq!(
        x("$__unixEpochGroup(dateColumn,'5m')", DOC_RANGE),
        "floor((dateColumn)/300)*300"
    );
    assert_eq!(
        x("$__unixEpochGroupAlias(dateColumn,'5m')", DOC_RANGE),
        "floor((dateColumn)/300)*300 AS \"time\""
    );
    for (fill, want) in [
        ("0", Fill::Value(0.0)),
        ("NULL", Fill::Null),
        ("previous", Fill::Previous),
    ] {
        let e = expand_macros(
            &format!("SELECT $__timeGroupAlias(dateColumn,'5m', {fill})"),
            DOC_RANGE,
            false,
        )
        .unwrap();
        assert_eq!(
            e.sql,
            "SELECT floor(extract(epoch from dateColumn)/300)*300 AS \"time\""
        );
        assert_eq!(e.fill, Some((300_000, want)));
    }
    assert_eq!(
        expand_macros("$__timeGroup(dateColumn,'5m')", DOC_RANGE, true)
            .unwrap()
            .sql,
        "time_bucket('300.000s',dateColumn)"
    );
    // $__interval and $__interval_ms (the panel's step), then the macros.
    assert_eq!(
        x(
            "$__timeGroup(ts, $__interval) '$__interval_ms ms'",
            DOC_RANGE
        ),
        "floor(extract(epoch from ts)/300)*300 '300000 ms'"
    );
    // What Grafana refuses.
    assert_eq!(
        expand("$__timeGroup(ts)", DOC_RANGE, 1000, false),
        Err(MacroError::GroupArgs("__timeGroup".into()))
    );
    assert_eq!(
        expand("$__timeGroup(ts, '5 parsecs')", DOC_RANGE, 1000, false),
        Err(MacroError::Interval("'5 parsecs'".into()))
    );
    assert!(matches!(
        expand("$__timeFilterr(ts)", DOC_RANGE, 1000, false),
        Err(MacroError::Unknown(_))
    ));
}

#[test]
fn template_variables_single_and_multi_valued_with_grafanas_quoting() {
    let mut scope = Scope::default();
    scope.vars.insert(
        "servers".into(),
        Variable {
            values: vec!["test1".into(), "test2".into(), "developer's".into()],
            multi: true,
        },
    );
    scope.vars.insert(
        "host".into(),
        Variable {
            values: vec!["db'1".into()],
            multi: false,
        },
    );
    assert_eq!(
        interpolate("hostname IN ($servers)", &scope),
        "hostname IN ('test1','test2','developer''s')"
    );
    assert_eq!(
        interpolate("${servers:sqlstring}", &scope),
        "'test1','test2','developer''s'"
    );
    assert_eq!(
        interpolate("[[servers:csv]]", &scope),
        "test1,test2,developer's"
    );
    assert_eq!(
        interpolate("${servers:pipe}", &scope),
        "test1|test2|developer's"
    );
    assert_eq!(interpolate("host = '$host'", &scope), "host = 'db''1'");
    assert_eq!(
        interpolate("host = ${host:sqlstring}", &scope),
        "host = 'db''1'"
    );
}

/// The documentation's time series examples, run on PostgreSQL over its `test_data`
/// rows: the rows it shows come back.
#[test]
fn the_documented_time_series_examples_run_on_postgresql() {
    let pg = Cluster::builder().start().expect("a throwaway cluster");
    pg.psql(
        "postgres",
        "CREATE TABLE test_data (time_date_time timestamp, value_double float8, \
                                 \"CreatedAt\" timestamp, hostname text); \
         INSERT INTO test_data VALUES \
           ('2020-01-02 03:05:00', 3.0, '2020-01-02 03:05:00', '10.0.1.1'), \
           ('2020-01-02 03:06:00', 4.0, '2020-01-02 03:06:00', '10.0.1.2'), \
           ('2020-01-02 03:10:00', 6.0, '2020-01-02 03:10:00', '10.0.1.1'), \
           ('2020-01-02 03:11:00', 7.0, '2020-01-02 03:11:00', '10.0.1.2'), \
           ('2020-01-02 03:20:00', 5.0, '2020-01-02 03:20:00', '10.0.1.2')",
    )
    .unwrap();
    let range = TimeRange {
        from_ms: 1_577_934_000_000, // 2020-01-02T03:00:00Z
        to_ms: 1_577_937_600_000,   // 2020-01-02T04:00:00Z
    };
    let run = |sql: &str| {
        let sql = expand(sql, range, 300_000, false).unwrap().sql;
        pg.psql(
            "postgres",
            &format!(
                "SET TimeZone = 'UTC'; SELECT to_timestamp(time)::timestamp, r.* FROM ({sql}) r"
            ),
        )
        .unwrap()
    };
    // "Example with metric column": 03:05 → 3, 03:10 → 6 (and 03:20 → 5).
    let metric = run(
        "SELECT\n  $__timeGroupAlias(\"time_date_time\",'5m'),\n  min(\"value_double\"),\n  'min' as metric\n\
         FROM test_data\nWHERE $__timeFilter(\"time_date_time\")\nGROUP BY time\nORDER BY time",
    );
    let rows: Vec<&str> = metric.lines().collect();
    assert_eq!(
        rows,
        [
            "2020-01-02 03:05:00|1577934300|3|min",
            "2020-01-02 03:10:00|1577934600|6|min",
            "2020-01-02 03:20:00|1577935200|5|min"
        ]
    );
    // "Example with multiple columns": min and max per 5 minutes.
    let wide = run(
        "SELECT\n  $__timeGroupAlias(\"time_date_time\",'5m'),\n  min(\"value_double\") as \"min_value\",\n  \
         max(\"value_double\") as \"max_value\"\nFROM test_data\nWHERE $__timeFilter(\"time_date_time\")\n\
         GROUP BY time\nORDER BY time",
    );
    assert!(
        wide.starts_with("2020-01-02 03:05:00|1577934300|3|4\n2020-01-02 03:10:00|1577934600|6|7")
    );
    // "Example using the fill parameter": one series per hostname.
    let fill = expand(
        "SELECT\n  $__timeGroupAlias(\"CreatedAt\",'5m',0),\n  sum(value_double) as value,\n  hostname\n\
         FROM test_data\nWHERE\n  $__timeFilter(\"CreatedAt\")\nGROUP BY time, hostname\nORDER BY time",
        range,
        300_000,
        false,
    )
    .unwrap();
    assert_eq!(fill.fill, Some((300_000, Fill::Value(0.0))));
    let out = pg
        .psql("postgres", &format!("{}, hostname", fill.sql))
        .unwrap();
    assert!(
        out.starts_with("1577934300|3|10.0.1.1\n1577934300|4|10.0.1.2\n1577934600|6|10.0.1.1\n1577934600|7|10.0.1.2"),
        "{out}"
    );
}
