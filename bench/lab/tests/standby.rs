//! Streaming replicas made with pg_basebackup follow their primary.

use std::{
    thread::sleep,
    time::{Duration, Instant},
};

use pga_lab::Cluster;

/// Polls `sql` on `pg` until it returns `want`, for up to 10 s.
fn wait_for(pg: &Cluster, sql: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < deadline {
        match pg.psql("postgres", sql) {
            Ok(out) if out == want => return,
            Ok(out) => last = out,
            Err(e) => last = e.to_string(),
        }
        sleep(Duration::from_millis(100));
    }
    panic!(
        "`{sql}` on port {} never returned {want:?}; last: {last}",
        pg.port()
    );
}

#[test]
fn a_standby_receives_rows_written_on_the_primary() {
    let primary = Cluster::builder().start().unwrap();
    primary
        .psql(
            "postgres",
            "create table t (x int); insert into t values (1)",
        )
        .unwrap();

    let began = Instant::now();
    let standby = primary.standby().unwrap();
    eprintln!("standby took {:?}", began.elapsed());
    assert_ne!(standby.port(), primary.port());
    assert_ne!(standby.data_dir(), primary.data_dir());
    assert_eq!(
        standby
            .psql("postgres", "select pg_is_in_recovery()")
            .unwrap(),
        "t"
    );

    primary
        .psql("postgres", "insert into t values (2)")
        .unwrap();
    wait_for(
        &standby,
        "select string_agg(x::text, ',' order by x) from t",
        "1,2",
    );
    wait_for(
        &primary,
        "select count(*) from pg_stat_replication where state = 'streaming'",
        "1",
    );
    // A standby is read-only.
    assert!(
        standby
            .psql("postgres", "insert into t values (3)")
            .is_err()
    );
}

#[test]
fn a_standby_can_stream_through_a_slot_and_be_promoted() {
    let primary = Cluster::builder().start().unwrap();
    let standby = primary.standby_with_slot("lab_slot").unwrap();
    wait_for(
        &primary,
        "select slot_type || ':' || active from pg_replication_slots where slot_name = 'lab_slot'",
        "physical:true",
    );
    primary
        .psql(
            "postgres",
            "create table t (x int); insert into t values (7)",
        )
        .unwrap();
    wait_for(
        &standby,
        "select count(*) from pg_class where relname = 't'",
        "1",
    );
    wait_for(&standby, "select coalesce(sum(x), 0) from t", "7");

    standby.promote().unwrap();
    assert_eq!(
        standby
            .psql("postgres", "select pg_is_in_recovery()")
            .unwrap(),
        "f"
    );
    standby
        .psql("postgres", "insert into t values (8)")
        .unwrap();
    assert_eq!(
        standby.psql("postgres", "select sum(x) from t").unwrap(),
        "15"
    );
}
