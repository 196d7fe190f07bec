//! Agent-local series ids to global ones.
//!
//! Each agent numbers its series in its own dictionary (`SeriesId`, per store
//! identity). Centrally a series is `(agent, metric, labels)` with a global id in
//! `series`; `agent_series` maps `(agent_uid, local id)` to it. A recreated agent
//! store (new identity, new local ids) therefore continues the same global series.

use std::collections::{HashMap, HashSet};

use pga_format::{AgentId, MetricKind, SeriesId, SeriesMeta};
use sqlx::PgConnection;

use super::{SinkError, pg_text, uuid_text};

/// Committed mappings `(agent identity, local id) → global id`.
#[derive(Debug, Default)]
pub(crate) struct SeriesCache {
    map: HashMap<(AgentId, u64), i64>,
}

impl SeriesCache {
    pub(crate) fn get(&self, agent: AgentId, local: SeriesId) -> Option<i64> {
        self.map.get(&(agent, local.0)).copied()
    }

    pub(crate) fn extend(&mut self, agent: AgentId, mapped: &HashMap<u64, i64>) {
        self.map.extend(
            mapped
                .iter()
                .map(|(&local, &global)| ((agent, local), global)),
        );
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }
}

/// The PostgreSQL instance label, and what agents before store schema 2 (pga-agent
/// 3.0.0-alpha.1) named it. Centrally it is always `pg_instance` (migration 0004).
const INSTANCE_LABEL: &str = "pg_instance";
const OLD_INSTANCE_LABEL: &str = "instance";

/// Labels as a JSON object, `{"name": "value", …}`; an older agent's `instance`
/// label becomes `pg_instance`.
pub(crate) fn labels_json(meta: &SeriesMeta) -> String {
    let renamed = meta.label(INSTANCE_LABEL).is_none();
    let map: serde_json::Map<String, serde_json::Value> = meta
        .labels
        .iter()
        .map(|(k, v)| {
            let k = if renamed && k == OLD_INSTANCE_LABEL {
                INSTANCE_LABEL
            } else {
                k.as_str()
            };
            (
                k.to_owned(),
                serde_json::Value::String(pg_text(v).into_owned()),
            )
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// Inserts (or finds) the global series of `entries` for the agent row `agent_row`
/// and records their local ids; returns local id → global id.
pub(crate) async fn upsert(
    conn: &mut PgConnection,
    agent_row: i64,
    agent_uid: AgentId,
    entries: &[(SeriesId, SeriesMeta)],
) -> Result<HashMap<u64, i64>, SinkError> {
    if entries.is_empty() {
        return Ok(HashMap::new());
    }
    let mut local = Vec::with_capacity(entries.len());
    let mut metric = Vec::with_capacity(entries.len());
    let mut labels = Vec::with_capacity(entries.len());
    let mut kind = Vec::with_capacity(entries.len());
    let mut unit = Vec::with_capacity(entries.len());
    let mut help = Vec::with_capacity(entries.len());
    for (id, meta) in entries {
        local.push(id.0 as i64);
        metric.push(meta.name.as_str());
        labels.push(labels_json(meta));
        kind.push(match meta.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        });
        unit.push(pg_text(&meta.unit));
        help.push(pg_text(&meta.help));
    }
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "WITH input AS ( \
             SELECT i.local_id, i.metric, i.labels::jsonb AS labels, i.kind, i.unit, i.help \
             FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) \
                  AS i(local_id, metric, labels, kind, unit, help)), \
         up AS ( \
             INSERT INTO series (agent_id, metric, labels, kind, unit, help) \
             SELECT DISTINCT ON (metric, labels) $1, metric, labels, kind, unit, help \
             FROM input ORDER BY metric, labels, local_id DESC \
             ON CONFLICT (agent_id, metric, labels) DO UPDATE \
                 SET kind = EXCLUDED.kind, unit = EXCLUDED.unit, help = EXCLUDED.help \
             RETURNING id, metric, labels), \
         mapped AS ( \
             SELECT i.local_id, up.id FROM input i \
             JOIN up ON up.metric = i.metric AND up.labels = i.labels), \
         recorded AS ( \
             INSERT INTO agent_series (agent_uid, local_id, series_id) \
             SELECT $2::uuid, local_id, id FROM mapped \
             ON CONFLICT (agent_uid, local_id) DO UPDATE SET series_id = EXCLUDED.series_id) \
         SELECT local_id, id FROM mapped",
    )
    .bind(agent_row)
    .bind(uuid_text(&agent_uid))
    .bind(&local)
    .bind(&metric)
    .bind(&labels)
    .bind(&kind)
    .bind(&unit)
    .bind(&help)
    .fetch_all(&mut *conn)
    .await
    .map_err(SinkError::db("writing series"))?;
    Ok(rows
        .into_iter()
        .map(|(local, global)| (local as u64, global))
        .collect())
}

/// Looks up the global ids of `locals` recorded by earlier batches.
pub(crate) async fn lookup(
    conn: &mut PgConnection,
    agent_uid: AgentId,
    locals: &HashSet<u64>,
) -> Result<HashMap<u64, i64>, SinkError> {
    if locals.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<i64> = locals.iter().map(|&l| l as i64).collect();
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT local_id, series_id FROM agent_series \
         WHERE agent_uid = $1::uuid AND local_id = ANY($2)",
    )
    .bind(uuid_text(&agent_uid))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(SinkError::db("reading series ids"))?;
    Ok(rows
        .into_iter()
        .map(|(local, global)| (local as u64, global))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_become_a_json_object() {
        let meta = SeriesMeta::new(
            SeriesId(1),
            "pg_up",
            vec![
                ("instance".into(), "db1:5432".into()),
                ("datname".into(), "a\"b".into()),
            ],
            MetricKind::Gauge,
            "",
            "",
        )
        .unwrap();
        let json: serde_json::Value = serde_json::from_str(&labels_json(&meta)).unwrap();
        assert_eq!(json["datname"], "a\"b");
        // An older agent's `instance` arrives as `pg_instance`.
        assert_eq!(json["pg_instance"], "db1:5432");
        assert!(json.get("instance").is_none(), "{json}");
        // Never when the series has a `pg_instance` already.
        let both = SeriesMeta::new(
            SeriesId(2),
            "pg_up",
            vec![
                ("instance".into(), "x".into()),
                ("pg_instance".into(), "y".into()),
            ],
            MetricKind::Gauge,
            "",
            "",
        )
        .unwrap();
        let json: serde_json::Value = serde_json::from_str(&labels_json(&both)).unwrap();
        assert_eq!(
            (&json["instance"], &json["pg_instance"]),
            (&"x".into(), &"y".into())
        );
    }
}
