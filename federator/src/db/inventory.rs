//! The inventory the pulls fill: servers, PostgreSQL instances, databases.
//!
//! Rows are served as the tables hold them (`to_jsonb`), so columns the pulls
//! learn to fill later appear without a change here; the schemas below document the
//! columns every row has.

use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

/// A host that runs PostgreSQL and an agent.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Server {
    pub id: i64,
    pub hostname: String,
    pub description: String,
    pub environment: Option<String>,
    pub labels: Value,
    pub created_at: String,
    pub updated_at: String,
}

/// A PostgreSQL instance (cluster) watched by an agent.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Instance {
    pub id: i64,
    pub server_id: Option<i64>,
    pub agent_id: Option<i64>,
    pub name: String,
    pub host: Option<String>,
    pub port: Option<i32>,
    pub version: Option<String>,
    pub labels: Value,
    pub created_at: String,
    pub updated_at: String,
}

/// A database of an instance.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Database {
    pub id: i64,
    pub instance_id: i64,
    pub name: String,
    pub labels: Value,
    pub created_at: String,
    pub updated_at: String,
}

/// Which inventory table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Servers,
    Instances,
    Databases,
}

/// Rows of `table` by id after `after_id`; `parent` narrows instances to a server
/// and databases to an instance.
pub async fn list(
    pool: &PgPool,
    table: Table,
    parent: Option<i64>,
    after_id: i64,
    limit: i64,
) -> Result<Vec<Value>, sqlx::Error> {
    let sql = match table {
        Table::Servers => {
            "SELECT to_jsonb(t) FROM servers t WHERE ($1::bigint IS NULL OR t.id = $1) \
             AND t.id > $2 ORDER BY t.id LIMIT $3"
        }
        Table::Instances => {
            "SELECT to_jsonb(t) FROM postgresql_instances t \
             WHERE ($1::bigint IS NULL OR t.server_id = $1) AND t.id > $2 ORDER BY t.id LIMIT $3"
        }
        Table::Databases => {
            "SELECT to_jsonb(t) FROM databases t \
             WHERE ($1::bigint IS NULL OR t.instance_id = $1) AND t.id > $2 ORDER BY t.id LIMIT $3"
        }
    };
    sqlx::query_scalar(sql)
        .bind(parent)
        .bind(after_id)
        .bind(limit)
        .fetch_all(pool)
        .await
}
