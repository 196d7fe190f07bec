# %post of pganalytics-agent ($1: 1 on install, 2 and more on upgrade).
# The state directory: kept on erase, like the deb keeps it on remove.
mkdir -p /var/lib/pganalytics/agent
chown pganalytics:pganalytics /var/lib/pganalytics/agent
chmod 0750 /var/lib/pganalytics/agent
# Reading PostgreSQL's log files takes membership of the group that owns them.
# Never fails the installation: where there is nothing to join, it says what to do.
if getent group postgres >/dev/null; then
    if ! id -nG pganalytics | tr ' ' '\n' | grep -qx postgres; then
        if usermod -a -G postgres pganalytics; then
            echo "pganalytics-agent: user pganalytics joined group postgres, to read PostgreSQL's log files."
            echo "  They must be group-readable: log_file_mode = 0640 in postgresql.conf, and the"
            echo "  data directory group-accessible (initdb --allow-group-access, or chmod 0750) when"
            echo "  log_directory is inside it."
        else
            echo "pganalytics-agent: could not add user pganalytics to group postgres; run: usermod -a -G postgres pganalytics" >&2
        fi
    fi
else
    echo "pganalytics-agent: there is no group 'postgres' on this host (PostgreSQL not installed yet?)."
    echo "  To let the agent read PostgreSQL's log files, once PostgreSQL is installed run"
    echo "      usermod -a -G postgres pganalytics && systemctl restart pga-agent"
    echo "  and set log_file_mode = 0640 in postgresql.conf."
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    echo "pganalytics-agent: edit /etc/pganalytics/agent.toml (the monitoring role:"
    echo "  /usr/share/doc/pganalytics-agent/monitoring-role.sql), check it with"
    echo "  'pga-agent check-config', then start the agent: systemctl enable --now pga-agent"
fi
exit 0
