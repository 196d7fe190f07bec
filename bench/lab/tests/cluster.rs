//! A cluster starts, answers queries, stops, starts again, and fails in ways
//! that can be diagnosed from the error alone.

use std::{process::Command, time::Instant};

use pga_lab::{Cluster, LabError};

#[test]
fn starts_and_answers_a_query() {
    let began = Instant::now();
    let pg = Cluster::builder().start().unwrap();
    eprintln!("cluster start took {:?}", began.elapsed());

    assert_eq!(pg.psql("postgres", "select 1 + 1").unwrap(), "2");
    assert_eq!(
        pg.psql("postgres", "select current_user, current_database()")
            .unwrap(),
        "postgres|postgres"
    );
    let major: u32 = pg
        .psql(
            "postgres",
            "select current_setting('server_version_num')::int / 10000",
        )
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(major, pg.install().major());
    // The lab's own settings are in force.
    assert_eq!(pg.psql("postgres", "show fsync").unwrap(), "off");
    assert_eq!(
        pg.psql("postgres", "show port").unwrap(),
        pg.port().to_string()
    );
    assert!(pg.data_dir().join("PG_VERSION").is_file());
    assert!(
        pg.socket_dir()
            .join(format!(".s.PGSQL.{}", pg.port()))
            .exists()
    );
    assert!(
        std::fs::read_to_string(pg.log_path())
            .unwrap()
            .contains("database system is ready to accept connections")
    );
}

#[test]
fn settings_are_applied_and_scripts_run_statement_by_statement() {
    let pg = Cluster::builder()
        .setting("work_mem", "7MB")
        .setting("cluster_name", "it's lab")
        .start()
        .unwrap();
    assert_eq!(pg.psql("postgres", "show work_mem").unwrap(), "7MB");
    assert_eq!(
        pg.psql("postgres", "show cluster_name").unwrap(),
        "it's lab"
    );
    let out = pg
        .psql(
            "postgres",
            "create table t (x int); insert into t values (1), (2); select sum(x) from t;",
        )
        .unwrap();
    assert_eq!(out, "3");
}

#[test]
fn creates_databases() {
    let pg = Cluster::builder().start().unwrap();
    pg.create_database("app").unwrap();
    pg.create_database("Odd Name").unwrap();
    assert_eq!(pg.psql("app", "select current_database()").unwrap(), "app");
    assert_eq!(
        pg.psql("Odd Name", "select current_database()").unwrap(),
        "Odd Name"
    );
    // The conninfo names the database too.
    assert!(pg.conninfo("app").ends_with("user=postgres dbname=app"));
}

#[test]
fn stops_and_starts_again_on_the_same_port_keeping_data() {
    let mut pg = Cluster::builder().start().unwrap();
    let port = pg.port();
    pg.psql(
        "postgres",
        "create table kept (x int); insert into kept values (42)",
    )
    .unwrap();

    pg.stop().unwrap();
    assert!(!pg.is_running());
    let err = pg.psql("postgres", "select 1").unwrap_err();
    assert!(matches!(err, LabError::Failed { .. }), "{err}");

    let began = Instant::now();
    pg.start_again().unwrap();
    eprintln!("start_again took {:?}", began.elapsed());
    assert_eq!(pg.port(), port);
    assert_eq!(pg.psql("postgres", "select x from kept").unwrap(), "42");

    let before = pg.postmaster_pid().unwrap();
    pg.restart().unwrap();
    assert_ne!(pg.postmaster_pid().unwrap(), before);
    assert_eq!(pg.psql("postgres", "select x from kept").unwrap(), "42");

    // Misuse is an error, not a hang or a panic.
    assert!(matches!(pg.start_again(), Err(LabError::Usage(_))));
}

#[test]
fn preloads_pg_stat_statements() {
    let pg = Cluster::builder()
        .preload("pg_stat_statements")
        .start()
        .unwrap();
    assert_eq!(
        pg.psql("postgres", "show shared_preload_libraries")
            .unwrap(),
        "pg_stat_statements"
    );
    let out = pg
        .psql(
            "postgres",
            "create extension pg_stat_statements;
             select 12345;
             select count(*) > 0 from pg_stat_statements where query like 'select $1%';",
        )
        .unwrap();
    assert_eq!(out.lines().last(), Some("t"), "{out}");
}

/// `psql` run by the test itself over TCP, so the URL is what is tested.
fn psql_url(pg: &Cluster, url: &str) -> std::process::Output {
    Command::new(pg.install().tool("psql").unwrap())
        .args(["-X", "-A", "-t", "-w", "-c", "select 'in'", url])
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .output()
        .unwrap()
}

#[test]
fn a_superuser_password_guards_tcp_but_not_the_socket() {
    let pg = Cluster::builder()
        .superuser_password("s3cret:/@x")
        .start()
        .unwrap();
    let url = pg.url("postgres");
    assert!(
        url.starts_with("postgres://postgres:s3cret%3A%2F%40x@127.0.0.1:"),
        "{url}"
    );
    let ok = psql_url(&pg, &url);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "in");

    let wrong = url.replace("s3cret", "wrong");
    let refused = psql_url(&pg, &wrong);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // The socket is trusted.
    assert_eq!(pg.psql("postgres", "select 'sock'").unwrap(), "sock");
}

#[test]
fn without_a_password_the_url_works_as_is() {
    let pg = Cluster::builder().start().unwrap();
    let url = pg.url("postgres");
    assert_eq!(
        url,
        format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port())
    );
    let out = psql_url(&pg, &url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_failing_statement_reports_psql_and_its_message() {
    let pg = Cluster::builder().start().unwrap();
    let err = pg
        .psql("postgres", "select 1; select nope; select 2")
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LabError::Failed { .. }), "{text}");
    assert!(text.contains("psql"), "{text}");
    assert!(text.contains("exit status: 3"), "{text}");
    assert!(text.contains(r#"column "nope" does not exist"#), "{text}");
}

#[test]
fn a_server_that_cannot_start_reports_the_server_log() {
    let err = Cluster::builder()
        .setting("shared_buffers", "lots")
        .start()
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LabError::Failed { .. }), "{text}");
    assert!(text.contains("pg_ctl"), "{text}");
    assert!(text.contains("--- server log "), "{text}");
    assert!(
        text.contains(r#"invalid value for parameter "shared_buffers": "lots""#),
        "{text}"
    );
}

#[test]
fn a_missing_preload_library_says_what_to_install() {
    let err = Cluster::builder()
        .preload("pga_lab_no_such_library")
        .start()
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LabError::MissingLibrary { .. }), "{text}");
    assert!(text.contains("postgresql-contrib"), "{text}");
}

#[test]
fn a_bad_setting_name_is_refused_before_anything_runs() {
    let err = Cluster::builder()
        .setting("work_mem = '1MB'\nfsync", "on")
        .start()
        .unwrap_err();
    assert!(matches!(err, LabError::Usage(_)), "{err}");
}

#[test]
fn starting_again_on_a_taken_port_says_so() {
    let mut pg = Cluster::builder().start().unwrap();
    pg.stop().unwrap();
    let squatter = std::net::TcpListener::bind(("127.0.0.1", pg.port())).unwrap();
    let err = pg.start_again().unwrap_err();
    let text = err.to_string();
    assert!(text.contains("Address already in use"), "{text}");
    drop(squatter);
    pg.start_again().unwrap();
    assert_eq!(pg.psql("postgres", "select 1").unwrap(), "1");
}

#[test]
fn a_relocated_copy_runs_with_its_own_extension_directory() {
    let copy = tempfile::tempdir().unwrap();
    let system = pga_lab::PgInstall::find().unwrap();
    let install = system.relocated_copy(copy.path()).unwrap();
    assert_eq!(install.version(), system.version());
    let ext = install.share_dir().unwrap().join("extension");
    assert!(ext.starts_with(copy.path()), "{}", ext.display());
    std::fs::write(
        ext.join("pga_lab_probe.control"),
        "comment = 'an extension only this copy has'\ndefault_version = '1.0'\n",
    )
    .unwrap();
    let pg = pga_lab::Cluster::builder()
        .install(install)
        .start()
        .unwrap();
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT comment FROM pg_available_extensions WHERE name = 'pga_lab_probe'"
        )
        .unwrap(),
        "an extension only this copy has"
    );
    let system_ext = system.share_dir().unwrap().join("extension");
    assert!(!system_ext.join("pga_lab_probe.control").exists());
}
