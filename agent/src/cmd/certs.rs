//! `pga-agent certs dev`: a development CA and the endpoint's certificates.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{CertsArgs, CertsCommand, DevCertsArgs};
use crate::config::host_name;
use crate::endpoint::certs::{DevCertsOptions, FEDERATOR_NAME, PROMETHEUS_NAME, make_dev_certs};

/// Runs `pga-agent certs ...`.
pub fn certs(args: &CertsArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        CertsCommand::Dev(dev) => dev_certs(dev),
    }
}

fn dev_certs(args: &DevCertsArgs) -> anyhow::Result<ExitCode> {
    let opts = DevCertsOptions {
        out: args.out.clone(),
        agent_name: args.agent_name.clone().unwrap_or_else(host_name),
        agent_sans: args.agent_sans.clone(),
        days: args.days,
        force: args.force,
    };
    let made = make_dev_certs(&opts).context("making development certificates")?;
    let d = made.dir.display();
    println!(
        "Development certificates in {d} (valid {} days; not for production):",
        opts.days
    );
    for f in &made.files {
        println!("  {}", f.display());
    }
    println!(
        "\nThe agent's certificate ({}) names: {}",
        opts.agent_name,
        made.agent_sans.join(", ")
    );
    println!(
        "A client must dial one of those names; add others with --agent-san.\n\n\
         Put this in agent.toml (then `pga-agent check-config`):\n\n{}",
        made.endpoint_snippet()
    );
    println!(
        "Clients: the federator uses {d}/federator.crt and federator.key (identity \
         \"{FEDERATOR_NAME}\"), Prometheus {d}/prometheus.crt and prometheus.key (identity \
         \"{PROMETHEUS_NAME}\"); both trust {d}/ca.crt for the agent. A Prometheus scrape \
         job (under scrape_configs:):\n\n\
         \x20 - job_name: pga-agent\n\
         \x20   scheme: https\n\
         \x20   tls_config:\n\
         \x20     ca_file: {d}/ca.crt\n\
         \x20     cert_file: {d}/prometheus.crt\n\
         \x20     key_file: {d}/prometheus.key\n\
         \x20     server_name: localhost   # or another name of the agent's certificate\n\
         \x20   static_configs:\n\
         \x20     - targets: ['localhost:9187']\n\n\
         Series about a PostgreSQL server carry the label pg_instance (its [[postgres]] \
         name); Prometheus adds its own instance (the target's address) and job, so no \
         label is renamed and honor_labels is not needed.\n\n\
         Keep {d}/ca.key secret: whoever holds it can mint clients the agent accepts."
    );
    Ok(ExitCode::SUCCESS)
}
