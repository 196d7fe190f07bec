//! pgbench runs against a lab cluster and its report is read back.

use std::time::Instant;

use pga_lab::{Cluster, PgbenchLength, PgbenchRun};

#[test]
fn a_two_second_run_processes_transactions() {
    let pg = Cluster::builder().start().unwrap();
    pg.create_database("bench").unwrap();
    let began = Instant::now();
    pg.pgbench_init("bench", 1).unwrap();
    eprintln!("pgbench -i -s 1 took {:?}", began.elapsed());
    assert_eq!(
        pg.psql("bench", "select count(*) from pgbench_accounts")
            .unwrap(),
        "100000"
    );

    let report = pg
        .pgbench(
            "bench",
            &PgbenchRun {
                clients: 2,
                jobs: 2,
                length: PgbenchLength::DurationSecs(2),
                rate: None,
                extra_args: vec![],
            },
        )
        .unwrap();
    eprintln!(
        "pgbench: {} transactions, {:.0} tps",
        report.transactions, report.tps
    );
    assert!(report.transactions > 0, "{}", report.stdout);
    assert!(report.tps > 0.0, "{}", report.stdout);
    // What pgbench says it did, the server counted.
    let committed: u64 = pg
        .psql("bench", "select count(*) from pgbench_history")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(committed, report.transactions);
}

#[test]
fn a_fixed_transaction_count_with_a_rate_and_extra_args() {
    let pg = Cluster::builder().start().unwrap();
    pg.pgbench_init("postgres", 1).unwrap();
    let report = pg
        .pgbench(
            "postgres",
            &PgbenchRun {
                clients: 2,
                jobs: 1,
                length: PgbenchLength::TransactionsPerClient(25),
                rate: Some(500),
                extra_args: vec!["-S".into()],
            },
        )
        .unwrap();
    assert_eq!(report.transactions, 50, "{}", report.stdout);
    assert!(report.stdout.contains("select only"), "{}", report.stdout);
}

#[test]
fn pgbench_on_a_missing_database_fails_with_its_message() {
    let pg = Cluster::builder().start().unwrap();
    let err = pg
        .pgbench("nosuchdb", &PgbenchRun::for_secs(1))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(r#"database "nosuchdb" does not exist"#),
        "{err}"
    );
}
