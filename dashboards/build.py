#!/usr/bin/env python3
"""Writes the pgAnalytics Grafana dashboards (docs/dashboards.md).

The dashboards are plain Grafana JSON under dashboards/grafana/<folder>/; this file is
their source, so that thirteen dashboards share one set of variables, links and panel
conventions. Edit here and run

    python3 dashboards/build.py           # rewrite the JSON files
    python3 dashboards/build.py --check   # exit 1 if a JSON file differs from this source

The PostgreSQL dashboards read only the central database's query layer and inventory
views (migrations/0030_query_layer.sql, docs/central-database.md), never a table;
the Prometheus ones read the agents' /metrics names. bench/tests/dashboards_lint.rs
checks every file against Grafana's dashboard JSON schema and the house rules, and
bench/tests/dashboards_live.rs runs every panel's query.
"""

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE / "grafana"
# Panels that may return no rows from a healthy fleet, and why ("uid/title": reason);
# written to dashboards/expected-empty.json for bench/tests/dashboards_live.rs.
EXPECT_EMPTY = {}
SCHEMA_VERSION = 41
PG = {"type": "grafana-postgresql-datasource", "uid": "${datasource}"}
PROM = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ["pganalytics"]

# ---------------------------------------------------------------------------------
# Query snippets. Multi-valued variables are interpolated by Grafana as a list of
# quoted literals ('a','b'), so ARRAY[$agent] is a text[] whatever the values hold.

STEP = "'$__interval_ms ms'"
RANGE = "$__timeFrom(), $__timeTo()"
AG = "ARRAY[$agent]::text[]"
INST = "ARRAY[$instance]::text[]"


def rng(metric, fn, labels="NULL", instances=INST):
    """A pga_range call over the dashboard's range at Grafana's step."""
    return f"pga_range('{metric}', '{fn}', {RANGE}, {STEP}, {AG}, {instances}, {labels})"


def summ(metric, fn, labels="NULL", instances=INST, frm="$__timeFrom()", to="$__timeTo()"):
    return f"pga_summary('{metric}', '{fn}', {frm}, {to}, {AG}, {instances}, {labels})"


def latest(metric, labels="NULL", instances=INST):
    return f"pga_latest('{metric}', {AG}, {instances}, {labels}, $__timeTo())"


DB = "jsonb_build_object('datname', ARRAY[$datname]::text[])"
REL = "jsonb_build_object('datname', ARRAY[$datname]::text[], 'relname', ARRAY[$relation]::text[])"
WHO = "agent || '/' || pg_instance"
DATADIR = "'{\"role\": \"data_directory\"}'"


def top(metric, fn, rank, name, labels="NULL", n=10, instances=INST):
    """One line for each of the `n` series whose pga_summary `rank` over the range is highest."""
    return (
        f"SELECT time, {name} AS metric, value\n"
        f"FROM pga_range_top('{metric}', '{fn}', {RANGE}, {STEP}, '{rank}', {n}, {AG}, {instances}, {labels})\n"
        f"ORDER BY 1, 2"
    )


def grouped(metric, fn, agg, by, labels="NULL", instances=INST):
    """A pga_range_grouped call: the values combined per instance and label keys `by`."""
    keys = "ARRAY[" + ", ".join(f"'{k}'" for k in by) + "]::text[]"
    return (f"pga_range_grouped('{metric}', '{fn}', {RANGE}, {STEP}, '{agg}', {keys}, {AG}, "
            f"{instances}, {labels})")


def series(metric, fn, name=WHO, labels="NULL", agg="sum", instances=INST):
    """One line per `name`, the values of its series combined with `agg`.

    `name` reads agent, pg_instance and labels->>'key': the series are combined per
    instance and those keys inside the query (pga_range_grouped), then per name."""
    assert agg in ("sum", "min", "max"), agg  # combined twice: only these compose
    by = sorted(set(re.findall(r"labels->>'(\w+)'", name)))
    return (
        f"SELECT time, {name} AS metric, {agg}(value) AS value\n"
        f"FROM {grouped(metric, fn, agg, by, labels, instances)}\n"
        f"GROUP BY 1, 2\nORDER BY 1, 2"
    )


# ---------------------------------------------------------------------------------
# Panels.


class Board:
    def __init__(self, uid, title, description, variables, folder="pgAnalytics", ds=PG):
        self.uid, self.title, self.description = uid, title, description
        self.variables, self.folder, self.ds = variables, folder, ds
        self.panels, self.links, self.annotations = [], [], []
        self.x = self.y = 0
        self.row_h = 0
        self.next_id = 1

    def place(self, w, h):
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title):
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.panels.append({
            "type": "row", "title": title, "id": self.next_id, "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": [],
        })
        self.next_id += 1
        self.y += 1

    def panel(self, kind, title, description, targets, unit, w=12, h=8, options=None,
              custom=None, overrides=None, links=None, expect_empty=None, decimals=None,
              transformations=None, min_=None, max_=None):
        defaults = {"unit": unit}
        if custom is not None:
            defaults["custom"] = custom
        if decimals is not None:
            defaults["decimals"] = decimals
        if min_ is not None:
            defaults["min"] = min_
        if max_ is not None:
            defaults["max"] = max_
        if links:
            defaults["links"] = links
        p = {
            "type": kind, "title": title, "description": description, "id": self.next_id,
            "datasource": self.ds, "gridPos": self.place(w, h),
            "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
            "options": options or {}, "targets": targets,
        }
        if transformations:
            p["transformations"] = transformations
        if expect_empty:
            EXPECT_EMPTY[f"{self.uid}/{title}"] = expect_empty
        self.next_id += 1
        self.panels.append(p)
        return p

    def link(self, title, uid, tooltip, keep_vars=True):
        self.links.append({
            "title": title, "type": "link", "icon": "dashboard", "tooltip": tooltip,
            "url": f"/d/{uid}", "includeVars": keep_vars, "keepTime": True,
            "asDropdown": False, "targetBlank": False, "tags": [],
        })

    def json(self):
        return {
            "uid": self.uid, "title": self.title, "description": self.description,
            "tags": TAGS + ([self.folder.lower()] if self.folder != "pgAnalytics" else []),
            "timezone": "browser", "editable": True, "graphTooltip": 1,
            "time": {"from": "now-6h", "to": "now"}, "refresh": "1m",
            "schemaVersion": SCHEMA_VERSION, "version": 1, "fiscalYearStartMonth": 0,
            "liveNow": False, "weekStart": "",
            "templating": {"list": self.variables},
            "annotations": {"list": [BUILTIN_ANNOTATION] + self.annotations},
            "links": self.links, "panels": self.panels,
        }


BUILTIN_ANNOTATION = {
    "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
    "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
    "type": "dashboard",
}


def sql(query, fmt="time_series", ref="A"):
    return {"refId": ref, "datasource": PG, "editorMode": "code", "format": fmt,
            "rawQuery": True, "rawSql": query}


def prom(expr, legend, ref="A", instant=False):
    t = {"refId": ref, "datasource": PROM, "editorMode": "code", "expr": expr,
         "legendFormat": legend, "range": not instant, "instant": instant}
    return t


def ts(b, title, description, query, unit, w=12, h=8, stack=False, **kw):
    custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if stack else 0,
              "showPoints": "never", "spanNulls": False,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    targets = query if isinstance(query, list) else [sql(query)]
    return b.panel("timeseries", title, description, targets, unit, w, h,
                   options={"legend": {"displayMode": "table", "placement": "bottom",
                                       "showLegend": True, "calcs": ["mean", "max", "lastNotNull"]},
                            "tooltip": {"mode": "multi", "sort": "desc"}},
                   custom=custom, **kw)


def stat(b, title, description, query, unit, w=4, h=4, **kw):
    targets = query if isinstance(query, list) else [sql(query, "table")]
    return b.panel("stat", title, description, targets, unit, w, h,
                   options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                            "colorMode": "value", "graphMode": "none", "textMode": "auto",
                            "justifyMode": "auto", "orientation": "auto"}, **kw)


def table(b, title, description, query, unit="none", w=24, h=9, links=None, overrides=None, **kw):
    targets = query if isinstance(query, list) else [sql(query, "table")]
    # Data links apply to the row; unit overrides are not used (unit_override).
    links = (links or []) + [o for o in (overrides or []) if o and "url" in o]
    overrides = None
    return b.panel("table", title, description, targets, unit, w, h,
                   options={"showHeader": True, "cellHeight": "sm",
                            "footer": {"show": False, "reducer": ["sum"], "fields": "", "countRows": False}},
                   custom={"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
                   links=links or None, overrides=overrides, **kw)


def unit_override(column, unit):
    """Tables carry their units in their column names (bytes, _s, _pct, _per_s):
    Grafana's published dashboard schema admits only object values in field
    overrides, so a per-column unit override would not validate."""
    return None


def link_override(column, title, url):
    return {"title": title, "url": url}


# ---------------------------------------------------------------------------------
# Variables.


def ds_var():
    return {"name": "datasource", "label": "Data source", "type": "datasource",
            "query": "grafana-postgresql-datasource", "current": {"text": "pgAnalytics", "value": "pganalytics"},
            "hide": 0, "refresh": 1, "regex": "", "skipUrlSync": False, "options": [],
            "description": "The pgAnalytics central database (dashboards/provisioning)."}


def query_var(name, label, query, description, multi=True):
    return {"name": name, "label": label, "type": "query", "datasource": PG,
            "query": query, "refresh": 2, "sort": 1,
            "multi": multi, "includeAll": multi, "hide": 0, "regex": "", "skipUrlSync": False,
            "options": [], "description": description,
            **({"current": {"text": ["All"], "value": ["$__all"]}} if multi else {})}


def agent_var():
    return query_var("agent", "Agent",
                     "SELECT DISTINCT agent FROM pga_instances ORDER BY 1",
                     "Agents (hosts) reporting PostgreSQL instances.")


def cluster_var():
    return query_var("cluster", "Cluster",
                     "SELECT DISTINCT cluster FROM pga_instances WHERE agent = ANY (ARRAY[$agent]::text[]) "
                     "AND cluster IS NOT NULL ORDER BY 1",
                     "PostgreSQL clusters by system identifier: a primary and its standbys share one.")


def instance_var(multi=True):
    return query_var("instance", "Instance",
                     "SELECT DISTINCT pg_instance FROM pga_instances WHERE agent = ANY (ARRAY[$agent]::text[]) ORDER BY 1",
                     "PostgreSQL instances of the selected agents ([[postgres]] name in the agent's config).",
                     multi)


def datname_var():
    return query_var("datname", "Database",
                     "SELECT DISTINCT datname FROM pga_databases WHERE agent = ANY (ARRAY[$agent]::text[]) "
                     "AND pg_instance = ANY (ARRAY[$instance]::text[]) ORDER BY 1",
                     "Databases of the selected instances.")


def relation_var():
    return query_var("relation", "Relation",
                     "SELECT DISTINCT labels->>'relname' FROM pga_series "
                     "WHERE metric = 'pg_relation_total_size_bytes' AND agent = ANY (ARRAY[$agent]::text[]) "
                     "AND pg_instance = ANY (ARRAY[$instance]::text[]) AND labels->>'datname' = ANY (ARRAY[$datname]::text[]) ORDER BY 1",
                     "Tables of the selected databases (the agent's relations_top_n largest per database).")


def std_vars(*extra):
    v = [ds_var(), agent_var(), instance_var()]
    for e in extra:
        v.append(e())
    return v


# Restarts and gaps are shown as table panels rather than annotations: Grafana's
# published dashboard schema admits only the built-in annotation target, not a SQL one.
def restarts_table(b, instances=INST, w=12):
    table(b, "Restarts", "Postmaster starts in the range, from pg_postmaster_start_time_seconds.",
          f"""SELECT DISTINCT to_timestamp(value) AS started_at, agent, pg_instance
FROM pga_range('pg_postmaster_start_time_seconds', 'last', $__timeFrom(), $__timeTo(), '1 hour', {AG}, {instances})
WHERE to_timestamp(value) BETWEEN $__timeFrom() AND $__timeTo()
ORDER BY started_at DESC""", "dateTimeAsIso", w=w, h=7,
          expect_empty="no server restarted in the range")


def gaps_table(b, w=12):
    table(b, "Gaps", "Data lost for good: blocks an agent evicted before the federator pulled them.",
          """SELECT agent, time AS gap_start, timeend AS gap_end, text FROM pga_gaps
WHERE agent = ANY (ARRAY[$agent]::text[]) AND time < $__timeTo() AND timeend > $__timeFrom()
ORDER BY time DESC""", "dateTimeAsIso", w=w, h=7,
          expect_empty="no agent evicted data before it was pulled in the range")


def instance_link_url(uid, extra=""):
    return ("/d/" + uid + "?${__url_time_range}&var-datasource=${datasource}"
            "&var-agent=${__data.fields.agent}&var-instance=${__data.fields.pg_instance}" + extra)


def common_links(b, *uids):
    names = {
        "pga-fleet": "Fleet overview", "pga-instance": "Instance overview",
        "pga-database": "Database detail", "pga-tables": "Tables and indexes",
        "pga-queries": "Query performance", "pga-replication": "Replication and slots",
        "pga-locks": "Locks and waits", "pga-vacuum": "Vacuum and wraparound",
        "pga-checkpoints": "Checkpointer, bgwriter, WAL and I/O", "pga-system": "System",
        "pga-logs": "Log events", "pga-completeness": "Data completeness", "pga-alerts": "Alerts",
    }
    for uid in uids:
        b.link(names[uid], uid, f"Open {names[uid]} with the same agents and time range")


# ---------------------------------------------------------------------------------
# The dashboards.


def fleet():
    b = Board("pga-fleet", "pgAnalytics / Fleet overview",
              "Every PostgreSQL instance of the fleet: up or down, role, version, load, lag and disk.",
              [ds_var(), agent_var(), cluster_var()])
    common_links(b, "pga-instance", "pga-replication", "pga-logs", "pga-completeness", "pga-alerts")
    inst = "(SELECT array_agg(DISTINCT pg_instance) FROM pga_instances WHERE agent = ANY (ARRAY[$agent]::text[]) AND cluster = ANY (ARRAY[$cluster]::text[]))"
    stat(b, "Instances up", "Instances whose agent reported pg_up = 1 in the last 10 minutes before the end of the range.",
         f"SELECT count(*) FILTER (WHERE value = 1) AS up FROM {latest('pg_up', instances=inst)}", "none", w=6)
    stat(b, "Instances down", "Instances whose newest pg_up is 0 (the agent cannot reach the server).",
         f"SELECT count(*) FILTER (WHERE value = 0) AS down FROM {latest('pg_up', instances=inst)}", "none", w=6,
         overrides=[])
    stat(b, "Clusters", "PostgreSQL clusters (system identifiers) among the selected agents.",
         "SELECT count(DISTINCT cluster) AS clusters FROM pga_instances WHERE agent = ANY (ARRAY[$agent]::text[]) AND cluster = ANY (ARRAY[$cluster]::text[])",
         "none", w=6)
    stat(b, "Agents not writing", "Agents whose newest sample in the central database is more than 2 minutes old.",
         "SELECT count(*) FILTER (WHERE lag_seconds > 120 OR lag_seconds IS NULL) AS stale FROM pga_agent_ingest "
         "WHERE agent = ANY (ARRAY[$agent]::text[])", "none", w=6)
    stat(b, "Alerts firing", "Alerts firing now on the selected agents (alerts_current); the Alerts dashboard lists them.",
         "SELECT count(*) AS firing FROM alerts_current WHERE state = 'firing' AND agent = ANY (ARRAY[$agent]::text[])",
         "none", w=6, links=[{"title": "Alerts", "url": "/d/pga-alerts?${__url_time_range}&var-datasource=${datasource}"}])
    q = f"""WITH i AS (
  SELECT agent, pg_instance, cluster, role, server_version, agent_host FROM pga_instances
  WHERE agent = ANY (ARRAY[$agent]::text[]) AND cluster = ANY (ARRAY[$cluster]::text[])),
up AS (SELECT agent, pg_instance, value FROM {latest('pg_up', instances='NULL')}),
conn AS (SELECT agent, pg_instance, sum(value) AS value FROM {latest('pg_stat_activity_sessions', instances='NULL')} GROUP BY 1, 2),
tps AS (SELECT agent, pg_instance, sum(value) AS value
        FROM {summ('pg_stat_database_xact_commit_total', 'rate', instances='NULL', frm="$__timeTo()::timestamptz - interval '5 minutes'")}
        GROUP BY 1, 2),
lag AS (SELECT agent, pg_instance, max(value) AS value FROM {latest('pg_standby_replay_lag_seconds', instances='NULL')} GROUP BY 1, 2),
sent AS (SELECT agent, pg_instance, max(value) AS value FROM {latest('pg_stat_replication_replay_lag_bytes', instances='NULL')} GROUP BY 1, 2),
disk AS (SELECT s.agent, 1 - a.value / nullif(s.value, 0) AS value
         FROM {latest('node_filesystem_size_bytes', DATADIR, 'NULL')} s
         JOIN {latest('node_filesystem_avail_bytes', DATADIR, 'NULL')} a USING (agent, labels))
SELECT i.agent, i.pg_instance, i.cluster, i.role, i.server_version AS version,
       CASE up.value WHEN 1 THEN 'up' WHEN 0 THEN 'down' ELSE 'unknown' END AS status,
       conn.value AS sessions, round(tps.value::numeric, 2) AS commits_per_s,
       round(lag.value::numeric, 3) AS standby_lag_s, sent.value AS replica_lag_bytes,
       round((100 * disk.value)::numeric, 1) AS data_disk_used_pct,
       (SELECT count(*) FROM alerts_current a WHERE a.state = 'firing' AND a.agent = i.agent
          AND coalesce(a.labels->>'pg_instance', i.pg_instance) = i.pg_instance) AS firing_alerts
FROM i
LEFT JOIN up USING (agent, pg_instance)
LEFT JOIN conn USING (agent, pg_instance)
LEFT JOIN tps USING (agent, pg_instance)
LEFT JOIN lag USING (agent, pg_instance)
LEFT JOIN sent USING (agent, pg_instance)
LEFT JOIN disk USING (agent)
ORDER BY i.cluster, i.role, i.agent, i.pg_instance"""
    table(b, "Instances", "One row per instance: status from pg_up, sessions, commits per second over the last 5 minutes "
          "of the range, replay lag seen from the standby (seconds) and from the primary (bytes), use of the data "
          "directory's filesystem, alerts firing now on it. Click an agent or instance for its overview.",
          q, "none", h=10,
          overrides=[unit_override("tps", "ops"), unit_override("standby_lag_seconds", "s"),
                     unit_override("replica_lag_bytes", "bytes"), unit_override("data_disk_used", "percentunit"),
                     link_override("pg_instance", "Instance overview", instance_link_url("pga-instance")),
                     link_override("agent", "Instance overview", instance_link_url("pga-instance"))])
    insts = inst
    ts(b, "Commits per second", "Committed transactions per second per instance, all databases.",
       series("pg_stat_database_xact_commit_total", "rate", instances=insts), "ops")
    ts(b, "Sessions", "Sessions per instance (pg_stat_activity), every state.",
       series("pg_stat_activity_sessions", "avg", instances=insts), "short")
    ts(b, "Replication lag (standby side)", "Replay lag each standby reports, in seconds.",
       series("pg_standby_replay_lag_seconds", "max", agg="max", instances=insts), "s",
       expect_empty=None)
    ts(b, "Database size", "Sum of the databases' sizes per instance.",
       series("pg_database_size_bytes", "last", instances=insts), "bytes")
    restarts_table(b, instances=insts)
    gaps_table(b)
    return b


def instance():
    b = Board("pga-instance", "pgAnalytics / Instance overview",
              "One PostgreSQL instance: throughput, sessions, cache, tuples, temp files, deadlocks, conflicts, WAL, "
              "checkpoints and uptime.", std_vars())
    common_links(b, "pga-fleet", "pga-database", "pga-queries", "pga-replication", "pga-locks", "pga-logs")
    stat(b, "Up", "pg_up: 1 while the agent reaches the server.", f"SELECT {WHO} AS instance, value FROM {latest('pg_up')}",
         "bool_on_off", w=4)
    stat(b, "Uptime", "Time since the postmaster started.",
         f"SELECT {WHO} AS instance, value FROM {latest('pg_uptime_seconds')}", "s", w=5)
    stat(b, "Version", "server_version_num of the instance.",
         f"SELECT {WHO} AS instance, value FROM {latest('pg_server_version_num')}", "none", w=5)
    stat(b, "Sessions", "Sessions in pg_stat_activity now.",
         f"SELECT {WHO} AS instance, sum(value) AS sessions FROM {latest('pg_stat_activity_sessions')} GROUP BY 1",
         "short", w=5)
    stat(b, "In recovery", "1 on a standby.", f"SELECT {WHO} AS instance, value FROM {latest('pg_in_recovery')}",
         "bool_yes_no", w=5)
    b.row("Throughput")
    ts(b, "Commits and rollbacks", "Transactions per second, all databases.", [
        sql(series("pg_stat_database_xact_commit_total", "rate", name=f"{WHO} || ' commits'")),
        sql(series("pg_stat_database_xact_rollback_total", "rate", name=f"{WHO} || ' rollbacks'"), ref="B")], "ops")
    ts(b, "Sessions by state", "pg_stat_activity sessions by state.",
       series("pg_stat_activity_sessions", "avg", name=f"{WHO} || ' ' || coalesce(nullif(labels->>'state', ''), 'background')"),
       "short", stack=True)
    ts(b, "Cache hit ratio", "Share of block reads served from shared buffers.",
       f"""SELECT h.time, h.agent || '/' || h.pg_instance AS metric,
       h.value / nullif(h.value + r.value, 0) AS value
FROM {grouped('pg_stat_database_blks_hit_total', 'increase', 'sum', [])} h
JOIN {grouped('pg_stat_database_blks_read_total', 'increase', 'sum', [])} r USING (time, agent, pg_instance)
ORDER BY 1, 2""", "percentunit", min_=0, max_=1)
    ts(b, "Tuples", "Rows returned, fetched, inserted, updated and deleted per second.", [
        sql(series(f"pg_stat_database_tup_{k}_total", "rate", name=f"{WHO} || ' {k}'"), ref=chr(65 + i))
        for i, k in enumerate(["returned", "fetched", "inserted", "updated", "deleted"])], "rowsps")
    b.row("Problems")
    ts(b, "Temporary files", "Bytes written to temporary files per second.",
       series("pg_stat_database_temp_bytes_total", "rate"), "Bps")
    ts(b, "Deadlocks", "Deadlocks detected per interval.",
       series("pg_stat_database_deadlocks_total", "increase"), "short", w=6)
    ts(b, "Recovery conflicts", "Queries cancelled on a standby by recovery conflicts, per interval.",
       series("pg_stat_database_conflicts_total", "increase"), "short", w=6)
    b.row("WAL and checkpoints")
    ts(b, "WAL rate", "Bytes of WAL generated per second (pg_stat_wal).",
       series("pg_stat_wal_bytes_total", "rate"), "Bps")
    ts(b, "Checkpoints", "Checkpoints started by timeout and requested, per interval.", [
        sql(series("pg_checkpoints_timed_total", "increase", name=f"{WHO} || ' timed'")),
        sql(series("pg_checkpoints_requested_total", "increase", name=f"{WHO} || ' requested'"), ref="B")], "short")
    ts(b, "Uptime", "Seconds since the postmaster started; a drop is a restart.",
       series("pg_uptime_seconds", "last", agg="max"), "s")
    ts(b, "Oldest transaction", "Age of the oldest open transaction.",
       series("pg_oldest_xact_age_seconds", "max", agg="max"), "s")
    b.row("Events")
    restarts_table(b)
    gaps_table(b)
    return b


def database():
    b = Board("pga-database", "pgAnalytics / Database detail",
              "The databases of an instance: throughput, cache, tuples, temp files, size and the largest tables.",
              std_vars(datname_var))
    common_links(b, "pga-instance", "pga-tables", "pga-queries", "pga-vacuum")
    name = f"{WHO} || ' ' || (labels->>'datname')"
    ts(b, "Commits per second", "Committed transactions per second per database.",
       series("pg_stat_database_xact_commit_total", "rate", name=name, labels=DB), "ops")
    ts(b, "Rollbacks per second", "Rolled back transactions per second per database.",
       series("pg_stat_database_xact_rollback_total", "rate", name=name, labels=DB), "ops")
    ts(b, "Cache hit ratio", "Share of block reads served from shared buffers, per database.",
       f"""SELECT h.time, h.agent || '/' || h.pg_instance || ' ' || (h.labels->>'datname') AS metric,
       h.value / nullif(h.value + r.value, 0) AS value
FROM {grouped('pg_stat_database_blks_hit_total', 'increase', 'sum', ['datname'], DB)} h
JOIN {grouped('pg_stat_database_blks_read_total', 'increase', 'sum', ['datname'], DB)} r
  USING (time, agent, pg_instance, labels)
ORDER BY 1, 2""",
       "percentunit", min_=0, max_=1)
    ts(b, "Rows changed", "Rows inserted, updated and deleted per second.", [
        sql(series(f"pg_stat_database_tup_{k}_total", "rate", name=f"{name} || ' {k}'", labels=DB), ref=chr(65 + i))
        for i, k in enumerate(["inserted", "updated", "deleted"])], "rowsps")
    ts(b, "Temporary bytes", "Bytes written to temporary files per second.",
       series("pg_stat_database_temp_bytes_total", "rate", name=name, labels=DB), "Bps")
    ts(b, "Database size", "Size of each database.",
       series("pg_database_size_bytes", "last", name=name, labels=DB), "bytes")
    ts(b, "Sessions", "Sessions connected to each database.",
       series("pg_stat_activity_sessions", "avg", name=name, labels=DB), "short")
    ts(b, "Transaction ID age", "Age of the database's oldest unfrozen transaction ID (wraparound at 2^31).",
       series("pg_database_frozen_xid_age", "max", name=name, labels=DB, agg="max"), "short")
    table(b, "Largest tables", "Total size (table, indexes, TOAST) of the largest tables; click one for its detail.",
          f"""SELECT agent, pg_instance, labels->>'datname' AS datname, labels->>'schemaname' AS schemaname,
       labels->>'relname' AS relname, value AS total_bytes
FROM {latest('pg_relation_total_size_bytes', DB)}
ORDER BY value DESC LIMIT 20""",
          overrides=[unit_override("total_size", "bytes"),
                     link_override("relname", "Tables and indexes",
                                   instance_link_url("pga-tables", "&var-datname=${__data.fields.datname}"
                                                     "&var-relation=${__data.fields.relname}"))])
    return b


def tables():
    b = Board("pga-tables", "pgAnalytics / Tables and indexes",
              "Size and growth, sequential against index scans, dead tuples, vacuum and analyze ages, I/O.",
              std_vars(datname_var, relation_var))
    common_links(b, "pga-database", "pga-vacuum", "pga-queries")
    name = "agent || '/' || pg_instance || ' ' || (labels->>'datname') || '.' || (labels->>'schemaname') || '.' || (labels->>'relname')"
    # The 50 largest tables first, then the summaries of those 50 only (pga_summary_series).
    table(b, "Tables", "Per table over the range: total size at the end, growth, sequential and index scans, "
          "dead tuples now, time since the last (auto)vacuum and (auto)analyze.",
          f"""WITH size AS (SELECT series_id, agent, pg_instance, labels, value FROM {latest('pg_relation_total_size_bytes', REL)}),
t AS (SELECT series_id, agent, pg_instance, labels - 'relkind' AS labels, value FROM size
      ORDER BY value DESC NULLS LAST LIMIT 50),
grow AS (SELECT hi.series_id, hi.value - lo.value AS value
         FROM pga_summary_series(ARRAY(SELECT series_id FROM t), 'max', $__timeFrom(), $__timeTo()) hi
         JOIN pga_summary_series(ARRAY(SELECT series_id FROM t), 'min', $__timeFrom(), $__timeTo()) lo USING (series_id)),
scans AS (SELECT x.agent, x.pg_instance, x.labels, s.metric, x.value
          FROM pga_summary_series(ARRAY(
                 SELECT s.series_id FROM pga_series s JOIN t ON t.agent = s.agent AND t.labels = s.labels
                 WHERE s.metric IN ('pg_stat_user_tables_seq_scan_total', 'pg_stat_user_tables_idx_scan_total')),
               'increase', $__timeFrom(), $__timeTo()) x
          JOIN pga_series s USING (series_id)),
dead AS (SELECT agent, pg_instance, labels, value FROM {latest('pg_stat_user_tables_n_dead_tup', REL)}),
vac AS (SELECT agent, pg_instance, labels, value FROM {latest('pg_stat_user_tables_last_autovacuum_timestamp_seconds', REL)}),
ana AS (SELECT agent, pg_instance, labels, value FROM {latest('pg_stat_user_tables_last_autoanalyze_timestamp_seconds', REL)})
SELECT t.agent, t.pg_instance, t.labels->>'datname' AS datname, t.labels->>'schemaname' AS schemaname,
       t.labels->>'relname' AS relname, t.value AS total_bytes, grow.value AS growth_bytes,
       seq.value AS seq_scans, idx.value AS idx_scans, dead.value AS dead_tuples,
       round((extract(epoch FROM $__timeTo()::timestamptz) - nullif(vac.value, 0))::numeric) AS since_autovacuum_s,
       round((extract(epoch FROM $__timeTo()::timestamptz) - nullif(ana.value, 0))::numeric) AS since_autoanalyze_s
FROM t
LEFT JOIN grow USING (series_id)
LEFT JOIN scans seq ON seq.agent = t.agent AND seq.pg_instance = t.pg_instance AND seq.labels = t.labels
     AND seq.metric = 'pg_stat_user_tables_seq_scan_total'
LEFT JOIN scans idx ON idx.agent = t.agent AND idx.pg_instance = t.pg_instance AND idx.labels = t.labels
     AND idx.metric = 'pg_stat_user_tables_idx_scan_total'
LEFT JOIN dead ON dead.agent = t.agent AND dead.pg_instance = t.pg_instance AND dead.labels = t.labels
LEFT JOIN vac ON vac.agent = t.agent AND vac.pg_instance = t.pg_instance AND vac.labels = t.labels
LEFT JOIN ana ON ana.agent = t.agent AND ana.pg_instance = t.pg_instance AND ana.labels = t.labels
ORDER BY t.value DESC NULLS LAST LIMIT 50""",
          overrides=[unit_override("total_size", "bytes"), unit_override("growth", "bytes"),
                     unit_override("seq_scans", "short"), unit_override("idx_scans", "short"),
                     unit_override("dead_tuples", "short"), unit_override("since_autovacuum", "s"),
                     unit_override("since_autoanalyze", "s")])
    ts(b, "Total size", "Table, indexes and TOAST, of the ten largest tables selected (largest over the range).",
       top("pg_relation_total_size_bytes", "last", "max", name, REL), "bytes")
    ts(b, "Sequential and index scans", "Scans started per second, on the ten tables selected with the most of "
       "each kind over the range.", [
           sql(top("pg_stat_user_tables_seq_scan_total", "rate", "increase", f"{name} || ' seq'", REL)),
           sql(top("pg_stat_user_tables_idx_scan_total", "rate", "increase", f"{name} || ' index'", REL), ref="B")],
       "ops")
    ts(b, "Dead tuples", "Dead rows awaiting vacuum, on the ten tables selected with the most over the range.",
       top("pg_stat_user_tables_n_dead_tup", "last", "max", name, REL), "short")
    ts(b, "Heap reads", "Heap blocks read from outside shared buffers and found in them, per second, on the ten "
       "tables selected with the most of each over the range.", [
           sql(top("pg_statio_user_tables_heap_blks_read_total", "rate", "increase", f"{name} || ' read'", REL)),
           sql(top("pg_statio_user_tables_heap_blks_hit_total", "rate", "increase", f"{name} || ' hit'", REL),
               ref="B")], "ops")
    table(b, "Indexes", "Index scans over the range and tuples read per index.",
          f"""WITH s AS (SELECT agent, pg_instance, labels, value
           FROM {summ('pg_stat_user_indexes_idx_scan_total', 'increase', REL)}
           ORDER BY value DESC NULLS LAST LIMIT 50),
r AS (SELECT agent, labels, value
      FROM pga_summary_series(ARRAY(
             SELECT p.series_id FROM pga_series p JOIN s ON s.agent = p.agent AND s.labels = p.labels
             WHERE p.metric = 'pg_stat_user_indexes_idx_tup_read_total'), 'increase', $__timeFrom(), $__timeTo()))
SELECT s.agent, s.pg_instance, s.labels->>'datname' AS datname, s.labels->>'relname' AS relname,
       s.labels->>'indexrelname' AS indexrelname, s.value AS scans, r.value AS tuples_read
FROM s
LEFT JOIN r ON r.agent = s.agent AND r.labels = s.labels
ORDER BY s.value DESC NULLS LAST LIMIT 50""",
          overrides=[unit_override("scans", "short"), unit_override("tuples_read", "short")])
    return b


def queries():
    b = Board("pga-queries", "pgAnalytics / Query performance",
              "Top statements (pg_stat_statements) by total time, mean time, calls, rows and I/O, with their "
              "redacted text.", std_vars(datname_var))
    common_links(b, "pga-instance", "pga-database", "pga-locks")
    labels = DB
    counters = {"t": "pg_stat_statements_exec_time_seconds_total", "c": "pg_stat_statements_calls_total",
                "r": "pg_stat_statements_rows_total", "rd": "pg_stat_statements_shared_blks_read_total",
                "h": "pg_stat_statements_shared_blks_hit_total"}
    # The 25 statements that rank highest by the counters `rank` over the range, then
    # all five counters of those 25 only (pga_summary_series): summing every counter of
    # every statement of a fleet took seconds.
    ranks = {
        "total": (f"SELECT agent, pg_instance, labels, value AS score FROM {summ(counters['t'], 'increase', labels)}",
                  "v.t"),
        "mean": (f"SELECT t.agent, t.pg_instance, t.labels, t.value / nullif(c.value, 0) AS score\n"
                 f"  FROM {summ(counters['t'], 'increase', labels)} t\n"
                 f"  JOIN {summ(counters['c'], 'increase', labels)} c USING (agent, pg_instance, labels)",
                 "v.t / nullif(v.c, 0)"),
        "calls": (f"SELECT agent, pg_instance, labels, value AS score FROM {summ(counters['c'], 'increase', labels)}",
                  "v.c"),
        "io": (f"SELECT agent, pg_instance, labels, value AS score FROM {summ(counters['rd'], 'increase', labels)}",
               "v.rd"),
    }
    metrics = ", ".join(f"'{m}'" for m in counters.values())
    pivot = ",\n         ".join(f"max(x.value) FILTER (WHERE s.metric = '{m}') AS {k}" for k, m in counters.items())

    def q(rank):
        ranking, order = ranks[rank]
        return f"""WITH ranked AS (
  SELECT agent, pg_instance, labels FROM (
  {ranking}) x
  ORDER BY score DESC NULLS LAST LIMIT 25),
v AS (
  SELECT x.agent, x.pg_instance, x.labels,
         {pivot}
  FROM pga_summary_series(ARRAY(
         SELECT s.series_id FROM pga_series s
         JOIN ranked k ON k.agent = s.agent AND k.labels = s.labels
         WHERE s.metric IN ({metrics})), 'increase', $__timeFrom(), $__timeTo()) x
  JOIN pga_series s USING (series_id)
  GROUP BY 1, 2, 3)
SELECT v.agent, v.pg_instance, v.labels->>'datname' AS datname, v.labels->>'user' AS "user",
       v.labels->>'queryid' AS queryid, round(v.t::numeric, 3) AS total_time_s, v.c AS calls,
       round((1000 * v.t / nullif(v.c, 0))::numeric, 3) AS mean_time_ms, v.r AS rows, v.rd * 8192 AS read_bytes,
       round((100 * v.h / nullif(v.h + v.rd, 0))::numeric, 1) AS hit_pct, q.query
FROM v
LEFT JOIN pga_statement_texts q ON q.agent = v.agent AND q.pg_instance = v.pg_instance
     AND q.queryid = v.labels->>'queryid'
ORDER BY {order} DESC NULLS LAST LIMIT 25"""
    ov = [unit_override("total_time", "s"), unit_override("mean_time", "s"), unit_override("calls", "short"),
          unit_override("rows", "short"), unit_override("read_bytes", "bytes"), unit_override("hit_ratio", "percentunit")]
    table(b, "Top statements by total time", "Execution time spent over the range (increase of "
          "pg_stat_statements total_exec_time), with calls, mean time, rows, bytes read and cache hit ratio. "
          "Literals in the text are redacted by the agent.", q("total"), overrides=ov, h=10)
    table(b, "Top statements by mean time", "Statements with the longest mean execution time over the range.",
          q("mean"), overrides=ov, h=10)
    table(b, "Top statements by calls", "Most executed statements over the range.",
          q("calls"), overrides=ov, h=10, w=12)
    table(b, "Top statements by I/O", "Statements that read the most blocks from outside shared buffers.",
          q("io"), overrides=ov, h=10, w=12)
    qname = "agent || '/' || pg_instance || ' ' || (labels->>'queryid')"
    ts(b, "Execution time of the top 10", "Seconds of execution per second, for the ten statements with the most "
       "time over the range.", top("pg_stat_statements_exec_time_seconds_total", "rate", "increase", qname, DB), "s")
    ts(b, "Calls of the top 10", "Calls per second of the ten statements with the most calls over the range.",
       top("pg_stat_statements_calls_total", "rate", "increase", qname, DB), "ops")
    return b


def replication():
    b = Board("pga-replication", "pgAnalytics / Replication and slots",
              "Replication lag in bytes and seconds from the primary's and the standby's side, WAL retained by slots, "
              "inactive slots.", [ds_var(), agent_var(), cluster_var(), instance_var()])
    common_links(b, "pga-fleet", "pga-instance", "pga-checkpoints")
    name = f"{WHO} || ' → ' || (labels->>'application_name')"
    ts(b, "Replay lag seen from the primary (bytes)", "WAL the primary has sent but each standby has not replayed.",
       series("pg_stat_replication_replay_lag_bytes", "max", name=name, agg="max"), "bytes")
    ts(b, "Replay lag seen from the primary (seconds)", "pg_stat_replication replay_lag per standby.",
       series("pg_stat_replication_replay_lag_seconds", "max", name=name, agg="max"), "s")
    ts(b, "Replay lag seen from the standby (bytes)", "WAL received but not yet replayed, on each standby.",
       series("pg_standby_replay_lag_bytes", "max", agg="max"), "bytes")
    ts(b, "Replay lag seen from the standby (seconds)", "Time since the last replayed transaction's commit on the "
       "primary, on each standby (grows while the primary is idle).",
       series("pg_standby_replay_lag_seconds", "max", agg="max"), "s")
    sname = f"{WHO} || ' ' || (labels->>'slot_name')"
    ts(b, "WAL retained by slots", "WAL kept on the primary for each replication slot.",
       series("pg_replication_slot_retained_wal_bytes", "max", name=sname, agg="max"), "bytes")
    ts(b, "Standby WAL receiver", "1 while the standby's WAL receiver streams.",
       series("pg_standby_wal_receiver_streaming", "min", agg="min"), "bool_on_off")
    table(b, "Inactive slots", "Slots no client is using now: they hold WAL until dropped or used again.",
          f"""SELECT a.agent, a.pg_instance, a.labels->>'slot_name' AS slot_name, a.labels->>'slot_type' AS slot_type,
       r.value AS retained_wal_bytes
FROM {latest('pg_replication_slot_active')} a
LEFT JOIN {latest('pg_replication_slot_retained_wal_bytes')} r ON r.agent = a.agent AND r.labels = a.labels
WHERE a.value = 0
ORDER BY r.value DESC NULLS LAST""", overrides=[unit_override("retained_wal", "bytes")])
    return b


def locks():
    b = Board("pga-locks", "pgAnalytics / Locks, waits and blocking",
              "Locks by mode, sessions waiting and blocked, blocking chains, wait events, and the lock waits and "
              "deadlocks the server logged.", std_vars())
    common_links(b, "pga-instance", "pga-queries", "pga-logs")
    ts(b, "Locks by mode", "Locks held (granted) and awaited, by mode.",
       series("pg_locks_count", "avg", name=f"{WHO} || ' ' || (labels->>'mode') || CASE labels->>'granted' WHEN 'true' THEN '' ELSE ' waiting' END"),
       "short", stack=True)
    ts(b, "Blocked sessions", "Sessions waiting on a lock another session holds.",
       series("pg_blocked_sessions", "max", agg="max"), "short", w=6)
    ts(b, "Longest blocking chain", "Sessions in the longest chain of blockers, its head included.",
       series("pg_blocking_chain_max_length", "max", agg="max"), "short", w=6)
    ts(b, "Longest lock wait", "The longest current wait for a lock.",
       series("pg_lock_wait_max_seconds", "max", agg="max"), "s")
    ts(b, "Sessions by wait event type", "Sessions waiting, by wait event type.",
       series("pg_stat_activity_sessions", "avg",
              name=f"{WHO} || ' ' || coalesce(nullif(labels->>'wait_event_type', ''), 'not waiting')"),
       "short", stack=True)
    table(b, "Lock waits and deadlocks logged", "Lock waits longer than deadlock_timeout (log_lock_waits) and "
          "deadlocks, from the server log.",
          """SELECT time, agent, pg_instance, kind, database_name, user_name, message
FROM pga_log_events
WHERE agent = ANY (ARRAY[$agent]::text[]) AND pg_instance = ANY (ARRAY[$instance]::text[]) AND kind IN ('lock_wait', 'deadlock')
  AND $__timeFilter(time)
ORDER BY time DESC LIMIT 100""",
          expect_empty="no session waited longer than deadlock_timeout and no deadlock happened in the range")
    return b


def vacuum():
    b = Board("pga-vacuum", "pgAnalytics / Vacuum and wraparound",
              "Transaction ID and multixact ages against wraparound, autovacuum activity, dead tuples, vacuum progress.",
              std_vars(datname_var))
    common_links(b, "pga-database", "pga-tables")
    name = f"{WHO} || ' ' || (labels->>'datname')"
    ts(b, "Transaction ID age", "age(datfrozenxid) per database; autovacuum freezes at "
       "autovacuum_freeze_max_age (200 M by default), wraparound stops writes near 2^31.",
       series("pg_database_frozen_xid_age", "max", name=name, labels=DB, agg="max"), "short")
    ts(b, "Multixact age", "mxid_age(datminmxid) per database.",
       series("pg_database_min_mxid_age", "max", name=name, labels=DB, agg="max"), "short")
    rel = f"{name} || '.' || (labels->>'schemaname') || '.' || (labels->>'relname')"
    ts(b, "Autovacuum and autoanalyze runs", "Runs per interval on the ten tables with the most of each over the "
       "range.", [
           sql(top("pg_stat_user_tables_autovacuum_total", "increase", "increase", f"{rel} || ' autovacuum'", DB)),
           sql(top("pg_stat_user_tables_autoanalyze_total", "increase", "increase", f"{rel} || ' autoanalyze'", DB),
               ref="B")], "short")
    ts(b, "Dead tuples", "Dead rows on the ten tables with the most over the range.",
       top("pg_stat_user_tables_n_dead_tup", "last", "max", rel, DB), "short")
    ts(b, "Oldest transaction and xmin", "The oldest open transaction's age and the oldest backend xmin's age "
       "(in transactions): both hold back vacuum.", [
           sql(series("pg_oldest_xact_age_seconds", "max", name=f"{WHO} || ' transaction (s)'", agg="max")),
           sql(series("pg_oldest_idle_in_transaction_age_seconds", "max", name=f"{WHO} || ' idle in transaction (s)'",
                      agg="max"), ref="B")], "s")
    ts(b, "Vacuum progress", "Heap blocks scanned of the total, per running vacuum.",
       f"""SELECT s.time, s.agent || '/' || s.pg_instance || ' ' || (s.labels->>'datname') || ' pid ' || (s.labels->>'pid') AS metric,
       s.value / nullif(t.value, 0) AS value
FROM {rng('pg_progress_vacuum_heap_blocks_scanned', 'last', DB)} s
JOIN {rng('pg_progress_vacuum_heap_blocks', 'last', DB)} t ON t.time = s.time AND t.agent = s.agent AND t.labels = s.labels
ORDER BY 1, 2""", "percentunit", min_=0, max_=1,
       expect_empty="no VACUUM ran long enough to be sampled in the range")
    table(b, "Tables by time since vacuum", "Tables whose last (auto)vacuum is oldest, with their dead tuples.",
          f"""SELECT v.agent, v.pg_instance, v.labels->>'datname' AS datname, v.labels->>'relname' AS relname,
       round((extract(epoch FROM $__timeTo()::timestamptz) - greatest(nullif(v.value, 0), nullif(m.value, 0)))::numeric) AS since_vacuum_s,
       d.value AS dead_tuples
FROM {latest('pg_stat_user_tables_last_autovacuum_timestamp_seconds', DB)} v
LEFT JOIN {latest('pg_stat_user_tables_last_vacuum_timestamp_seconds', DB)} m ON m.agent = v.agent AND m.labels = v.labels
LEFT JOIN {latest('pg_stat_user_tables_n_dead_tup', DB)} d ON d.agent = v.agent AND d.labels = v.labels
ORDER BY since_vacuum_s DESC NULLS FIRST LIMIT 50""",
          overrides=[unit_override("since_vacuum", "s"), unit_override("dead_tuples", "short")])
    return b


def checkpoints():
    b = Board("pga-checkpoints", "pgAnalytics / Checkpointer, bgwriter, WAL and I/O",
              "Checkpoints and their cost, buffers written by checkpointer, bgwriter and backends, WAL generation, "
              "pg_stat_io (PostgreSQL 16 and newer).", std_vars())
    common_links(b, "pga-instance", "pga-replication")
    ts(b, "Checkpoints", "Checkpoints by timeout and requested (a requested one is usually max_wal_size reached).", [
        sql(series("pg_checkpoints_timed_total", "increase", name=f"{WHO} || ' timed'")),
        sql(series("pg_checkpoints_requested_total", "increase", name=f"{WHO} || ' requested'"), ref="B")], "short")
    ts(b, "Checkpoint write and sync time", "Seconds spent writing and syncing per second.", [
        sql(series("pg_checkpoint_write_time_seconds_total", "rate", name=f"{WHO} || ' write'")),
        sql(series("pg_checkpoint_sync_time_seconds_total", "rate", name=f"{WHO} || ' sync'"), ref="B")], "percentunit")
    ts(b, "Buffers written", "Buffers written per second by the checkpointer, the bgwriter and backends.", [
        sql(series("pg_checkpoint_buffers_written_total", "rate", name=f"{WHO} || ' checkpointer'")),
        sql(series("pg_stat_bgwriter_buffers_clean_total", "rate", name=f"{WHO} || ' bgwriter'"), ref="B"),
        sql(series("pg_stat_bgwriter_buffers_backend_total", "rate", name=f"{WHO} || ' backends'"), ref="C")], "ops")
    ts(b, "Buffers allocated", "Buffers allocated per second.",
       series("pg_stat_bgwriter_buffers_alloc_total", "rate"), "ops")
    ts(b, "WAL bytes", "WAL generated per second.", series("pg_stat_wal_bytes_total", "rate"), "Bps")
    ts(b, "WAL records and full-page images", "Per second.", [
        sql(series("pg_stat_wal_records_total", "rate", name=f"{WHO} || ' records'")),
        sql(series("pg_stat_wal_full_page_images_total", "rate", name=f"{WHO} || ' full-page images'"), ref="B")], "ops")
    io = f"{WHO} || ' ' || (labels->>'backend_type') || ' ' || (labels->>'object') || ' ' || (labels->>'context')"
    ts(b, "I/O reads by backend type", "pg_stat_io reads per second (PostgreSQL 16 and newer).",
       series("pg_stat_io_reads_total", "rate", name=io), "ops",
       expect_empty="pg_stat_io exists from PostgreSQL 16; the test fleet runs an older server")
    ts(b, "I/O writes by backend type", "pg_stat_io writes per second (PostgreSQL 16 and newer).",
       series("pg_stat_io_writes_total", "rate", name=io), "ops",
       expect_empty="pg_stat_io exists from PostgreSQL 16; the test fleet runs an older server")
    return b


def system():
    b = Board("pga-system", "pgAnalytics / System",
              "The database hosts: CPU, memory, load, pressure, disks, network and the filesystems PostgreSQL uses.",
              [ds_var(), agent_var()])
    common_links(b, "pga-fleet", "pga-instance")
    ts(b, "CPU", "Share of CPU time by mode, all CPUs of the host.",
       f"""SELECT c.time, c.agent || ' ' || (c.labels->>'mode') AS metric, sum(c.value) / max(n.value) AS value
FROM {grouped('node_cpu_seconds_total', 'rate', 'sum', ['mode'], instances='NULL')} c
JOIN {latest('node_cpu_count', instances='NULL')} n USING (agent)
WHERE c.labels->>'mode' <> 'idle'
GROUP BY 1, 2 ORDER BY 1, 2""", "percentunit", stack=True)
    ts(b, "Memory", "Total and available memory.", [
        sql(series("node_memory_MemTotal_bytes", "avg", name="agent || ' total'", instances="NULL")),
        sql(series("node_memory_MemAvailable_bytes", "avg", name="agent || ' available'", instances="NULL"), ref="B")],
       "bytes")
    ts(b, "Load", "1-minute load average.", series("node_load1", "avg", name="agent", instances="NULL"), "short")
    ts(b, "Pressure", "Share of time some task waited for CPU, memory or I/O (PSI).", [
        sql(series(f"node_pressure_{r}_waiting_seconds_total", "rate", name=f"agent || ' {r}'", instances="NULL"),
            ref=chr(65 + i)) for i, r in enumerate(["cpu", "memory", "io"])], "percentunit")
    ts(b, "Disk throughput", "Bytes read and written per second per device.", [
        sql(series("node_disk_read_bytes_total", "rate", name="agent || ' ' || (labels->>'device') || ' read'",
                   instances="NULL")),
        sql(series("node_disk_written_bytes_total", "rate", name="agent || ' ' || (labels->>'device') || ' written'",
                   instances="NULL"), ref="B")], "Bps")
    ts(b, "Disk busy", "Share of time each device was busy.",
       series("node_disk_io_time_seconds_total", "rate", name="agent || ' ' || (labels->>'device')", instances="NULL"),
       "percentunit")
    ts(b, "Network", "Bytes received and sent per second per interface.", [
        sql(series("node_network_receive_bytes_total", "rate", name="agent || ' ' || (labels->>'device') || ' in'",
                   instances="NULL")),
        sql(series("node_network_transmit_bytes_total", "rate", name="agent || ' ' || (labels->>'device') || ' out'",
                   instances="NULL"), ref="B")], "Bps")
    table(b, "Filesystems", "The filesystems of the data directory, WAL directory and tablespaces: size, use and "
          "free space now.",
          f"""SELECT s.agent, s.labels->>'role' AS role, s.labels->>'mountpoint' AS mountpoint, s.value AS size_bytes,
       round((100 * (1 - a.value / nullif(s.value, 0)))::numeric, 1) AS used_pct, a.value AS available_bytes
FROM {latest('node_filesystem_size_bytes', instances='NULL')} s
JOIN {latest('node_filesystem_avail_bytes', instances='NULL')} a ON a.agent = s.agent AND a.labels = s.labels
ORDER BY used_pct DESC""",
          overrides=[unit_override("size", "bytes"), unit_override("used", "percentunit"),
                     unit_override("available", "bytes")])
    return b


def logs():
    b = Board("pga-logs", "pgAnalytics / Log events",
              "The servers' parsed log events: counts by kind and severity over time, newest errors, slow statements, "
              "deadlocks and lock waits.", std_vars())
    common_links(b, "pga-instance", "pga-locks", "pga-queries")
    flt = "agent = ANY (ARRAY[$agent]::text[]) AND pg_instance = ANY (ARRAY[$instance]::text[]) AND $__timeFilter(time)"
    ts(b, "Events by kind", "Log events per interval by kind (error, slow statement, checkpoint, autovacuum, …).",
       f"""SELECT $__timeGroupAlias(time, '$__interval', 0), kind AS metric, count(*) AS value
FROM pga_log_events WHERE {flt}
GROUP BY 1, 2 ORDER BY 1, 2""", "short", stack=True)
    ts(b, "Events by severity", "Log events per interval by severity.",
       f"""SELECT $__timeGroupAlias(time, '$__interval', 0), severity AS metric, count(*) AS value
FROM pga_log_events WHERE {flt}
GROUP BY 1, 2 ORDER BY 1, 2""", "short", stack=True)
    table(b, "Newest errors", "ERROR, FATAL and PANIC entries, newest first (literals redacted by the agent).",
          f"""SELECT time, agent, pg_instance, severity, sqlstate, database_name, user_name, application, message
FROM pga_log_events WHERE {flt} AND severity IN ('ERROR', 'FATAL', 'PANIC')
ORDER BY time DESC LIMIT 100""", h=10)
    table(b, "Slow statements", "Statements over log_min_duration_statement, slowest first.",
          f"""SELECT time, agent, pg_instance, duration_ms, database_name, user_name, message
FROM pga_log_events WHERE {flt} AND kind = 'slow_statement'
ORDER BY duration_ms DESC NULLS LAST LIMIT 100""", h=10, overrides=[unit_override("duration", "s")])
    table(b, "Deadlocks and lock waits", "Deadlocks and lock waits longer than deadlock_timeout.",
          f"""SELECT time, agent, pg_instance, kind, database_name, user_name, message
FROM pga_log_events WHERE {flt} AND kind IN ('deadlock', 'lock_wait')
ORDER BY time DESC LIMIT 100""",
          expect_empty="no session waited longer than deadlock_timeout and no deadlock happened in the range")
    return b


def completeness():
    b = Board("pga-completeness", "pgAnalytics / Data completeness",
              "Whether the central data is whole: each agent's cursor lag, backfills under way, recorded gaps on a "
              "timeline, samples received, and when the federator last pulled each agent.",
              [ds_var(), agent_var()])
    common_links(b, "pga-fleet", "pga-system")
    table(b, "Agents", "Per agent: the newest sample stored and how far behind now it is (cursor lag), whether a "
          "backfill is under way, the series it sent, gaps recorded and blocks lost, and when the federator last "
          "pulled it (inventory) and last wrote its data.",
          """SELECT agent, round(lag_seconds::numeric, 1) AS lag_s, backfilling, last_sample_at, last_ingest_at,
       round(extract(epoch FROM now() - last_seen_at)::numeric, 1) AS since_last_pull_s, series_count, gaps, blocks_lost, last_sequence
FROM pga_agent_ingest WHERE agent = ANY (ARRAY[$agent]::text[])
ORDER BY lag_seconds DESC NULLS FIRST""", h=8,
          overrides=[unit_override("lag_seconds", "s"), unit_override("since_last_pull", "s"),
                     unit_override("last_sample_at", "dateTimeAsIso"), unit_override("last_ingest_at", "dateTimeAsIso")])
    stat(b, "Agents backfilling", "Agents whose pulls are walking forward through their store after an outage.",
         "SELECT count(*) FILTER (WHERE backfilling) AS backfilling FROM pga_agent_ingest WHERE agent = ANY (ARRAY[$agent]::text[])",
         "none", w=6)
    stat(b, "Largest cursor lag", "The newest sample of the agent furthest behind, against now.",
         "SELECT max(lag_seconds) AS lag FROM pga_agent_ingest WHERE agent = ANY (ARRAY[$agent]::text[])", "s", w=6)
    stat(b, "Gaps in range", "Gaps recorded (blocks an agent evicted before they were pulled) overlapping the range.",
         "SELECT count(*) AS gaps FROM pga_gaps WHERE agent = ANY (ARRAY[$agent]::text[]) AND time < $__timeTo() AND timeend > $__timeFrom()",
         "none", w=6)
    stat(b, "Series", "Series the selected agents sent.",
         "SELECT sum(series_count) AS series FROM pga_agent_ingest WHERE agent = ANY (ARRAY[$agent]::text[])", "short", w=6)
    table(b, "Where raw samples live", "The raw home: the remote-write destination marked raw_home (a TSDB keeping "
          "raw samples for the long term), else PostgreSQL; how long PostgreSQL keeps raw samples "
          "(retention.raw_secs) and the rollups; where raw samples older than that are; and the other remote-write "
          "destinations, which hold copies. Recorded by the federator at each start (docs/scaling.md).",
          """SELECT raw_home, url, postgresql_keeps_raw::text AS postgresql_keeps_raw, older_raw_samples,
       postgresql_keeps_rollup_1m::text AS rollup_1m_kept, postgresql_keeps_rollup_1h::text AS rollup_1h_kept,
       copies_in
FROM pga_raw_home""", h=4)
    ts(b, "Samples received", "Samples stored per interval per agent, by the time of the samples: a dip is data "
       "missing, a bump after one is a backfill.",
       f"""SELECT time, agent AS metric, samples AS value
FROM pga_agent_samples($__timeFrom(), $__timeTo(), {STEP}, {AG})
ORDER BY 1, 2""", "short", w=24)
    table(b, "Recorded gaps", "Every gap in the range: the time lost and the blocks the agent evicted before they "
          "were pulled (also drawn as red regions on the graphs).",
          """SELECT agent, time AS gap_start, timeend AS gap_end, extract(epoch FROM timeend - time) AS duration_s,
       first_sequence, last_sequence, recorded_at, text
FROM pga_gaps WHERE agent = ANY (ARRAY[$agent]::text[]) AND time < $__timeTo() AND timeend > $__timeFrom()
ORDER BY time DESC""", overrides=[unit_override("duration", "s")],
          expect_empty="no agent evicted data before it was pulled in the range")
    return b


def alerts():
    b = Board("pga-alerts", "pgAnalytics / Alerts",
              "Alerts of the federator's rules (docs/alerting.md): what is pending or firing now, and every alert that "
              "fired in the range, late ones (found after a backfill, with their data-time start and end) included.",
              [ds_var(), agent_var()])
    common_links(b, "pga-fleet", "pga-completeness")
    cur = "FROM alerts_current WHERE agent = ANY (ARRAY[$agent]::text[])"
    hist = ("FROM alerts_history WHERE agent = ANY (ARRAY[$agent]::text[]) "
            "AND time < $__timeTo() AND coalesce(timeend, now()) > $__timeFrom()")
    stat(b, "Firing", "Alerts firing now.", f"SELECT count(*) FILTER (WHERE state = 'firing') AS firing {cur}", "none", w=6)
    stat(b, "Pending", "Alerts whose condition holds but not yet for the rule's `for`.",
         f"SELECT count(*) FILTER (WHERE state = 'pending') AS pending {cur}", "none", w=6)
    stat(b, "Held", "Open alerts held because their agent is unreachable: neither resolved nor fired anew until its "
         "data arrives again.", f"SELECT count(*) FILTER (WHERE held) AS held {cur}", "none", w=6)
    stat(b, "Fired in range", "Alerts that fired and were open at some time in the range (late ones included).",
         f"SELECT count(*) AS fired {hist}", "none", w=6)
    table(b, "Current alerts", "Pending and firing alerts, most severe first: the rule (alertname), severity, agent, "
          "the value that crossed the threshold, since when it holds (active_at) and fires, whether it is held, late or "
          "muted by a maintenance window, and the rule's one-line runbook.",
          f"""SELECT alertname, severity, agent, labels->>'pg_instance' AS pg_instance, state, round(value::numeric, 3) AS value,
       summary, active_at, fired_at, held, late, muted, runbook
{cur}
ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, active_at""", h=9,
          links=[{"title": "Instance overview", "url": instance_link_url("pga-instance")}])
    ts(b, "Alerts fired per hour", "Alerts that started firing per hour of data time, per severity; late alerts count "
       "at the hour their data says they fired.",
       """SELECT date_trunc('hour', time) AS time, severity AS metric, count(*) AS value
FROM alerts_history WHERE agent = ANY (ARRAY[$agent]::text[]) AND time BETWEEN $__timeFrom() AND $__timeTo()
GROUP BY 1, 2 ORDER BY 1, 2""", "short", w=24)
    table(b, "Alert history", "Every alert that fired and was open in the range, newest first: its firing span "
          "(fired_at to resolved_at, data time), why it resolved (cleared, or no data), and whether it was found late, "
          "after a backfill. Late alerts carry their true start and end.",
          f"""SELECT alertname, severity, agent, labels->>'pg_instance' AS pg_instance, time AS fired_at, timeend AS resolved_at,
       extract(epoch FROM coalesce(timeend, now()) - time) AS firing_s, resolved_reason, late, muted, text
{hist}
ORDER BY time DESC""", h=10)
    table(b, "Late alerts", "Incidents that began (and maybe ended) while the federator could not reach the agent, "
          "found when its data was backfilled, with their data-time start and end.",
          f"""SELECT alertname, severity, agent, active_at, fired_at, resolved_at, text
FROM alerts_history WHERE late AND agent = ANY (ARRAY[$agent]::text[])
  AND time < $__timeTo() AND coalesce(timeend, now()) > $__timeFrom()
ORDER BY time DESC""", h=8, expect_empty="no incident happened during a partition in the range")
    return b


# ---------------------------------------------------------------------------------
# Prometheus variants: PromQL over the agents' /metrics, for users who scrape the
# agents with their own Prometheus.


def prom_vars():
    def v(name, label, q, desc):
        return {"name": name, "label": label, "type": "query", "datasource": PROM,
                "query": q, "refresh": 2, "sort": 1, "multi": True, "includeAll": True,
                "allValue": ".*", "hide": 0, "regex": "", "skipUrlSync": False,
                "current": {"text": ["All"], "value": ["$__all"]}, "options": [], "description": desc}
    return [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "hide": 0, "refresh": 1, "regex": "", "skipUrlSync": False, "options": [],
         "description": "The Prometheus that scrapes the agents' /metrics."},
        v("job", "Job", "label_values(pg_up, job)", "Scrape jobs of the agents."),
        v("agent", "Agent", 'label_values(pg_up{job=~"$job"}, instance)', "Agents: the scrape target (host:port)."),
        v("pg_instance", "Instance", 'label_values(pg_up{job=~"$job", instance=~"$agent"}, pg_instance)',
          "PostgreSQL instances of the selected agents."),
    ]


SEL = 'job=~"$job", instance=~"$agent", pg_instance=~"$pg_instance"'


def prom_fleet():
    b = Board("pga-prom-fleet", "pgAnalytics (Prometheus) / Fleet overview",
              "Every PostgreSQL instance the agents watch, from a Prometheus that scrapes them.",
              prom_vars(), folder="pgAnalytics-Prometheus", ds=PROM)
    b.link("Instance overview", "pga-prom-instance", "Open the instance overview with the same selection")
    stat(b, "Instances up", "Instances with pg_up = 1.", [prom(f"count(pg_up{{{SEL}}} == 1)", "up", instant=True)],
         "none", w=8)
    stat(b, "Instances down", "Instances with pg_up = 0.",
         [prom(f"count(pg_up{{{SEL}}} == 0) or vector(0)", "down", instant=True)], "none", w=8)
    stat(b, "Standbys", "Instances in recovery.",
         [prom(f"sum(pg_in_recovery{{{SEL}}})", "standbys", instant=True)], "none", w=8)
    table(b, "Instances", "One row per instance: up, in recovery, version, sessions and commits per second.", [
        prom(f"pg_up{{{SEL}}}", "", "A", instant=True),
        prom(f"pg_in_recovery{{{SEL}}}", "", "B", instant=True),
        prom(f"pg_server_version_num{{{SEL}}}", "", "C", instant=True),
        prom(f"sum by (instance, pg_instance) (pg_stat_activity_sessions{{{SEL}}})", "", "D", instant=True),
        prom(f"sum by (instance, pg_instance) (rate(pg_stat_database_xact_commit_total{{{SEL}}}[$__rate_interval]))",
             "", "E", instant=True)],
          transformations=[{"id": "merge", "options": {}}],
          links=[{"title": "Instance overview",
                  "url": "/d/pga-prom-instance?${__url_time_range}&var-datasource=${datasource}"
                         "&var-agent=${__data.fields.instance}&var-pg_instance=${__data.fields.pg_instance}"}])
    ts(b, "Commits per second", "Per instance, all databases.",
       [prom(f"sum by (instance, pg_instance) (rate(pg_stat_database_xact_commit_total{{{SEL}}}[$__rate_interval]))",
             "{{instance}}/{{pg_instance}}")], "ops")
    ts(b, "Sessions", "Per instance.",
       [prom(f"sum by (instance, pg_instance) (pg_stat_activity_sessions{{{SEL}}})", "{{instance}}/{{pg_instance}}")],
       "short")
    ts(b, "Database size", "Sum of the databases' sizes per instance.",
       [prom(f"sum by (instance, pg_instance) (pg_database_size_bytes{{{SEL}}})", "{{instance}}/{{pg_instance}}")],
       "bytes")
    ts(b, "Data directory disk used", "Share of the data directory's filesystem in use.",
       [prom('1 - node_filesystem_avail_bytes{job=~"$job", instance=~"$agent", role="data_directory"} / '
             'node_filesystem_size_bytes{job=~"$job", instance=~"$agent", role="data_directory"}', "{{instance}}")],
       "percentunit")
    return b


def prom_instance():
    b = Board("pga-prom-instance", "pgAnalytics (Prometheus) / Instance overview",
              "One PostgreSQL instance from a Prometheus that scrapes its agent: throughput, sessions, cache, tuples, "
              "temp files, deadlocks, WAL, checkpoints and uptime.",
              prom_vars(), folder="pgAnalytics-Prometheus", ds=PROM)
    b.link("Fleet overview", "pga-prom-fleet", "Back to the fleet")
    by = "sum by (instance, pg_instance)"
    leg = "{{instance}}/{{pg_instance}}"
    stat(b, "Uptime", "Since the postmaster started.", [prom(f"pg_uptime_seconds{{{SEL}}}", leg, instant=True)],
         "s", w=8)
    stat(b, "Version", "server_version_num.", [prom(f"pg_server_version_num{{{SEL}}}", leg, instant=True)], "none", w=8)
    stat(b, "Up", "pg_up.", [prom(f"pg_up{{{SEL}}}", leg, instant=True)], "bool_on_off", w=8)

    def rate(m):
        return f"{by} (rate({m}{{{SEL}}}[$__rate_interval]))"

    def inc(m):
        return f"{by} (increase({m}{{{SEL}}}[$__rate_interval]))"
    ts(b, "Commits and rollbacks", "Transactions per second.", [
        prom(rate("pg_stat_database_xact_commit_total"), leg + " commits"),
        prom(rate("pg_stat_database_xact_rollback_total"), leg + " rollbacks", "B")], "ops")
    ts(b, "Sessions by state", "pg_stat_activity by state.",
       [prom(f"sum by (instance, pg_instance, state) (pg_stat_activity_sessions{{{SEL}}})", leg + " {{state}}")],
       "short", stack=True)
    ts(b, "Cache hit ratio", "Block reads served from shared buffers.",
       [prom(f"{rate('pg_stat_database_blks_hit_total')} / ({rate('pg_stat_database_blks_hit_total')} + "
             f"{rate('pg_stat_database_blks_read_total')})", leg)], "percentunit")
    ts(b, "Tuples", "Rows per second.", [
        prom(rate(f"pg_stat_database_tup_{k}_total"), leg + f" {k}", chr(65 + i))
        for i, k in enumerate(["returned", "fetched", "inserted", "updated", "deleted"])], "rowsps")
    ts(b, "Temporary bytes", "Written to temporary files per second.",
       [prom(rate("pg_stat_database_temp_bytes_total"), leg)], "Bps")
    ts(b, "Deadlocks and conflicts", "Per interval.", [
        prom(inc("pg_stat_database_deadlocks_total"), leg + " deadlocks"),
        prom(inc("pg_stat_database_conflicts_total"), leg + " conflicts", "B")], "short")
    ts(b, "WAL rate", "WAL bytes per second.", [prom(rate("pg_stat_wal_bytes_total"), leg)], "Bps")
    ts(b, "Checkpoints", "Timed and requested, per interval.", [
        prom(inc("pg_checkpoints_timed_total"), leg + " timed"),
        prom(inc("pg_checkpoints_requested_total"), leg + " requested", "B")], "short")
    ts(b, "Uptime", "A drop is a restart.", [prom(f"pg_uptime_seconds{{{SEL}}}", leg)], "s")
    return b


BOARDS = [fleet, instance, database, tables, queries, replication, locks, vacuum, checkpoints, system, logs,
          completeness, alerts, prom_fleet, prom_instance]


def render():
    out = {}
    EXPECT_EMPTY.clear()
    for make in BOARDS:
        b = make()
        path = ROOT / b.folder / (b.uid.removeprefix("pga-") + ".json")
        out[path] = json.dumps(b.json(), indent=2, ensure_ascii=False) + "\n"
    out[HERE / "expected-empty.json"] = json.dumps(EXPECT_EMPTY, indent=2, sort_keys=True) + "\n"
    return out


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    files = render()
    for path, text in files.items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    known = {p for p in files if p.parent != HERE}
    extra = [str(p) for p in ROOT.rglob("*.json") if p not in known]
    if check and (stale or extra):
        for p in stale:
            print(f"differs from dashboards/build.py: {p}", file=sys.stderr)
        for p in extra:
            print(f"not made by dashboards/build.py: {p}", file=sys.stderr)
        print("run: python3 dashboards/build.py", file=sys.stderr)
        sys.exit(1)
    if not check:
        for p in extra:
            Path(p).unlink()
        print(f"wrote {len(files) - 1} dashboards under {ROOT} and {HERE / 'expected-empty.json'}")


if __name__ == "__main__":
    main()
