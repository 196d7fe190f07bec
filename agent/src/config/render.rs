//! What `pga-agent check-config` prints.

use std::time::Duration;

use humansize::{BINARY, FormatSizeOptions};

use super::conninfo::{redact_params, render_conninfo};
use super::load::Loaded;
use super::validate::Problem;
use super::{DEFAULT_INSTANCE_NAME, EndpointConfig, EndpointMode, PostgresInstance};

/// Renders the report of `pga-agent check-config`: where the configuration came
/// from, the effective values (never a password), every problem as
/// `error: <key>: <message>` / `  fix: <fix>`, and a last line `configuration OK`
/// (possibly with warnings) or `N problem(s)`.
pub fn render_check(loaded: &Loaded, problems: &[Problem]) -> String {
    let c = &loaded.config;
    pga_config::check_report(
        |line| {
            line(format!("configuration:  {}", loaded.source));
            line(format!("agent name:     {}", c.agent.name));
            line(format!("data directory: {}", c.agent.data_dir.display()));
            line(format!(
                "intervals:      fast {}, slow {}, sizes {}",
                secs(c.intervals.fast_secs),
                secs(c.intervals.slow_secs),
                secs(c.intervals.sizes_secs)
            ));
            line(format!(
                "store:          budget {} ({} bytes), retention {}, blocks of {}",
                format_bytes(c.store.max_bytes),
                c.store.max_bytes,
                match c.store.retention_secs {
                    0 => "none (byte budget only)".to_owned(),
                    s => secs(s),
                },
                secs(c.store.block_secs)
            ));
            let on = |b: bool| if b { "on" } else { "off" };
            line(format!(
                "collectors:     system {}, postgres {}, logs {}",
                on(c.collectors.system),
                on(c.collectors.postgres),
                on(c.collectors.logs)
            ));
            render_endpoint(&c.endpoint, line);
            if c.collectors.logs {
                line(format!(
                    "logs:           {}, {}, redact {}, {} per pass",
                    c.logs.path.as_deref().map_or_else(
                        || "found from each server's log settings".to_owned(),
                        |p| format!("path {p}")
                    ),
                    c.logs.format.as_deref().unwrap_or("most structured format"),
                    on(c.logs.redact),
                    format_bytes(c.logs.read_bytes_per_pass)
                ));
            }
            if loaded.instances.is_empty() {
                line("postgres:       not monitored (collectors.postgres = false)".to_owned());
            } else if loaded.uses_default_instance() {
                line(format!(
                    "postgres:       no [[postgres]] configured; monitoring the server psql would reach \
             (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSFILE, else libpq's defaults) as \
             instance \"{DEFAULT_INSTANCE_NAME}\""
                ));
            } else {
                line(format!(
                    "postgres:       {} instance(s)",
                    loaded.instances.len()
                ));
            }
            for inst in &loaded.instances {
                render_instance(inst, line);
            }
        },
        problems,
    )
}

fn render_endpoint(e: &EndpointConfig, line: &mut dyn FnMut(String)) {
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map_or_else(|| "(not set)".to_owned(), |p| p.display().to_string())
    };
    match e.mode() {
        EndpointMode::Off => {
            line(
                "endpoint:       off; set endpoint.cert_file, endpoint.key_file and \
                 endpoint.client_ca_file to serve /metrics and /v1 over mutual TLS"
                    .to_owned(),
            );
            return;
        }
        EndpointMode::Tls => {
            line(format!(
                "endpoint:       https://{} (TLS 1.3, client certificate required)",
                e.listen
            ));
            line(format!(
                "    certificate {}, key {}",
                path(&e.cert_file),
                path(&e.key_file)
            ));
            line(format!("    client CA {}", path(&e.client_ca_file)));
            line(format!(
                "    revocation lists: {}",
                if e.crl_files.is_empty() {
                    "(none)".to_owned()
                } else {
                    e.crl_files
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
            line(format!(
                "    clients allowed: {}",
                if e.allowed_clients.is_empty() {
                    "any certificate the client CA signed".to_owned()
                } else {
                    e.allowed_clients.join(", ")
                }
            ));
        }
        EndpointMode::Plaintext => line(format!(
            "endpoint:       http://{} (insecure_plaintext: no TLS, no client authentication)",
            e.listen
        )),
    }
    line(format!(
        "    limits: {} connections, header timeout {}, request timeout {}, responses up to {}",
        e.max_connections,
        secs(e.header_timeout_secs),
        secs(e.request_timeout_secs),
        format_bytes(e.max_response_bytes)
    ));
    if e.mode() == EndpointMode::Tls {
        line(format!(
            "    handshakes: {} at once, {} per address, within {}",
            e.max_handshakes,
            e.max_handshakes_per_address,
            secs(e.handshake_timeout_secs)
        ));
    }
}

fn render_instance(inst: &PostgresInstance, line: &mut dyn FnMut(String)) {
    let conn = match inst.conninfo_params() {
        Ok(params) => render_conninfo(&redact_params(&params)),
        Err(e) => format!("<invalid connection string: {e}>"),
    };
    line(format!("  {}: {conn}", inst.name));
    let password = match (&inst.password_file, &inst.passfile) {
        (Some(f), _) => format!("password from {}", f.display()),
        (None, Some(f)) => format!("password (if one is needed) from passfile {}", f.display()),
        (None, None) => match inst.conninfo_params() {
            Ok(ps) if ps.iter().any(|(k, _)| k == "passfile") => {
                "password (if one is needed) from the conninfo's passfile".to_owned()
            }
            _ => "no password source".to_owned(),
        },
    };
    line(format!("    {password}"));
    line(format!(
        "    databases: include {}; exclude {}",
        list(&inst.databases_include),
        list(&inst.databases_exclude)
    ));
    line(format!(
        "    statement_timeout {} ms, lock_timeout {} ms, pg_stat_statements top {}",
        inst.statement_timeout_ms,
        inst.lock_timeout_ms,
        if inst.statements_top_n == 0 {
            "off".to_owned()
        } else {
            inst.statements_top_n.to_string()
        }
    ));
    line(format!(
        "    relations per database: top {}; families excluded: {}",
        inst.relations_top_n,
        list(&inst.families_exclude)
    ));
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}

fn secs(s: u64) -> String {
    humantime::format_duration(Duration::from_secs(s)).to_string()
}

/// A byte count in binary units: `1 GiB`, `512 MiB`, `1.5 GiB`, `300 B`: whole
/// units without a decimal, else one decimal.
pub fn format_bytes(n: u64) -> String {
    let options = FormatSizeOptions::from(BINARY)
        .decimal_places(1)
        .decimal_zeroes(0);
    humansize::format_size(n, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AgentConfig, load_with_system_path};
    use std::path::Path;

    fn env(k: &str) -> Option<String> {
        match k {
            "PGHOST" => Some("/run/pg".into()),
            "PGUSER" => Some("mon".into()),
            "PGPASSFILE" => Some("/etc/pganalytics/pgpass".into()),
            _ => None,
        }
    }

    #[test]
    fn bytes_in_binary_units() {
        assert_eq!(format_bytes(1_073_741_824), "1 GiB");
        assert_eq!(format_bytes(4 << 20), "4 MiB");
        assert_eq!(format_bytes(1536 << 20), "1.5 GiB");
        assert_eq!(format_bytes(300), "300 B");
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes((1 << 20) + 1024), "1.0 MiB");
        assert_eq!(format_bytes((1 << 30) - 1), "1024.0 MiB");
    }

    #[test]
    fn defaults_report_everything_and_ok() {
        let loaded =
            load_with_system_path(None, Path::new("/nonexistent/agent.toml"), None, &env).unwrap();
        let problems = loaded.validate();
        let out = render_check(&loaded, &problems);
        assert!(out.contains("configuration:  built-in defaults"), "{out}");
        assert!(out.contains("data directory: ./pga-data"), "{out}");
        assert!(out.contains("fast 10s, slow 1m, sizes 5m"), "{out}");
        assert!(
            out.contains("budget 1 GiB (1073741824 bytes), retention 14days, blocks of 10m"),
            "{out}"
        );
        assert!(
            out.contains(
                "  local: host=/run/pg port=5432 user=mon dbname=mon \
                 passfile=/etc/pganalytics/pgpass"
            ),
            "{out}"
        );
        assert!(
            out.contains("endpoint:       off; set endpoint.cert_file"),
            "{out}"
        );
        assert!(out.ends_with("\nconfiguration OK\n"), "{out}");
    }

    #[test]
    fn endpoint_modes_are_shown() {
        let mut loaded =
            load_with_system_path(None, Path::new("/nonexistent/agent.toml"), None, &env).unwrap();
        loaded.config.endpoint.cert_file = Some("/etc/pga/agent.crt".into());
        loaded.config.endpoint.allowed_clients = vec!["pga-federator".into()];
        let out = render_check(&loaded, &[]);
        assert!(
            out.contains(
                "endpoint:       https://0.0.0.0:9187 (TLS 1.3, client certificate required)"
            ),
            "{out}"
        );
        assert!(
            out.contains("    certificate /etc/pga/agent.crt, key (not set)"),
            "{out}"
        );
        assert!(out.contains("    clients allowed: pga-federator"), "{out}");
        assert!(
            out.contains("header timeout 10s, request timeout 30s, responses up to 16 MiB"),
            "{out}"
        );
        loaded.config.endpoint = crate::config::EndpointConfig {
            insecure_plaintext: true,
            listen: "127.0.0.1:9187".into(),
            ..Default::default()
        };
        let out = render_check(&loaded, &[]);
        assert!(
            out.contains("endpoint:       http://127.0.0.1:9187 (insecure_plaintext"),
            "{out}"
        );
    }

    #[test]
    fn problems_are_listed_with_fixes_and_counted() {
        let text = "[store]\nblock_secs = 7\nretention_secs = 0\n\n[[postgres]]\nname = \"m\"\n\
                    conninfo = \"host=h password=hunter2\"\n";
        let mut loaded =
            load_with_system_path(None, Path::new("/nonexistent/agent.toml"), None, &env).unwrap();
        loaded.config = AgentConfig::parse(text, Path::new("a.toml")).unwrap();
        loaded.instances = loaded
            .config
            .postgres
            .iter()
            .map(|i| i.with_libpq_defaults(&env))
            .collect();
        loaded.config.collectors.system = true;
        let mut problems = loaded.validate();
        problems.push(Problem::warning("collectors", "w", "f"));
        let out = render_check(&loaded, &problems);
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("password=********"), "{out}");
        assert!(out.contains("retention none (byte budget only)"), "{out}");
        assert!(
            out.contains("error: store.block_secs: 7 is out of range\n  fix: set it between 60"),
            "{out}"
        );
        assert!(
            out.contains("error: postgres[0].conninfo: contains a password"),
            "{out}"
        );
        // Errors come before warnings.
        let first_warning = out.find("warning: ").unwrap();
        assert!(out.rfind("error: ").unwrap() < first_warning, "{out}");
        let errors = problems.iter().filter(|p| p.is_error()).count();
        assert!(
            out.ends_with(&format!(
                "{} problem(s): {errors} error(s), 1 warning(s)\n",
                problems.len()
            )),
            "{out}"
        );
    }
}
