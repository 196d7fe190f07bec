-- pgAnalytics agent: the least-privilege monitoring role.
--
-- Run once per PostgreSQL instance, as a superuser, in the database the agent
-- connects to (dbname in /etc/pganalytics/agent.toml, "postgres" by default):
--
--     sudo -u postgres psql -d postgres -f /usr/share/doc/pganalytics-agent/monitoring-role.sql
--
-- pg_monitor (PostgreSQL 10 and later) lets the role read every statistics view
-- and setting the agent collects, without reading any table's data and without
-- being able to change anything.

CREATE ROLE pga_monitor LOGIN;
GRANT pg_monitor TO pga_monitor;

-- Statement statistics (pg_stat_statements) need the extension in that database
-- and 'pg_stat_statements' in shared_preload_libraries (which takes a restart).
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;

-- Then let the role in, in pg_hba.conf (and reload PostgreSQL). Over the local
-- socket with peer authentication, mapping the agent's operating-system user
-- (pganalytics) to the role:
--
--     pg_hba.conf:    local  all  pga_monitor  peer  map=pganalytics
--     pg_ident.conf:  pganalytics  pganalytics  pga_monitor
--
-- or with a password: ALTER ROLE pga_monitor PASSWORD '...'; put the password
-- alone in a file (owner pganalytics, mode 0600) and name that file in
-- password_file of the [[postgres]] table.
