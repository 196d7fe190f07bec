//! Opening the store: the file (a damaged one moved aside, never deleted), a new
//! store's tables and identity, an older store's schema upgraded (`migrate.rs`), and
//! what is in memory while the store is open (dictionary, block index, open head)
//! loaded from the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pga_format::{AgentId, BlockBuilder};
use redb::{ConcurrencyMode, Database, ReadableDatabase, ReadableTable};

use super::append::series_hash;
use super::evict::INITIAL_FILL;
use super::faults::RETRY_MIN;
use super::head::read_head;
use super::migrate::{self, SCHEMA};
use super::tables::{
    BLOCK_INDEX, BLOCKS, COLLECTORS, CURSORS, DICTIONARY, EVENTS, HEAD, HEAD_LOGS, META, meta_u64,
};
use super::unwind::catch_quietly;
use super::{IndexEntry, STORE_FILE, Store, StoreError, StoreHealth, StoreOptions, handle, health};
use crate::now_ms;

/// What opening the store found.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// A damaged store file moved aside (never deleted), and why.
    pub moved_aside: Option<(PathBuf, String)>,
    pub head_collections: u64,
}

impl Store {
    /// Opens (or creates) the store in `data_dir`. A store file that cannot be opened
    /// because it is damaged is moved aside with a timestamp and a fresh store is
    /// started; the report says so.
    pub fn open(data_dir: &Path, opts: StoreOptions) -> Result<(Store, OpenReport), StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|error| StoreError::DataDir {
            path: data_dir.to_owned(),
            error,
        })?;
        let path = data_dir.join(STORE_FILE);
        let mut report = OpenReport::default();
        let db = open_or_move_aside(&path, &mut report)?;
        let mut store = Store {
            db: Some(Arc::new(db)),
            slot: Default::default(),
            path,
            opts,
            shared: Default::default(),
            agent_id: AgentId::default(),
            next_seq: 1,
            metas: Vec::new(),
            intern: HashMap::new(),
            builder: BlockBuilder::new(),
            head_window: None,
            next_head_row: 0,
            head_bytes: 0,
            dict_bytes: 0,
            index: Default::default(),
            fill: INITIAL_FILL,
            health: StoreHealth::new(opts.max_bytes),
            health_file: health::HealthFile::open(data_dir),
            failure: None,
            retry_backoff: RETRY_MIN,
        };
        store.init(&report)?;
        store.load()?;
        store.slot.set(store.db.clone());
        store.health.budget_bytes = store.capacity();
        store.publish_health();
        report.head_collections = store.next_head_row;
        Ok((store, report))
    }

    /// Creates the tables and identity of a new store, upgrades an older store's
    /// schema, and records a moved-aside file.
    pub(super) fn init(&mut self, report: &OpenReport) -> Result<(), StoreError> {
        let txn = self.db()?.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            if meta.get("schema")?.is_none() {
                meta.insert("schema", SCHEMA.to_le_bytes().as_slice())?;
                meta.insert("agent_id", new_agent_id().0.as_slice())?;
                meta.insert("created_ms", now_ms().to_le_bytes().as_slice())?;
                meta.insert("next_seq", 1u64.to_le_bytes().as_slice())?;
            }
            let schema = meta
                .get("schema")?
                .map(|v| v.value().to_vec())
                .unwrap_or_default();
            let schema = <[u8; 4]>::try_from(schema.as_slice())
                .map(u32::from_le_bytes)
                .map_err(|_| StoreError::Damaged(format!("meta schema is {schema:?}")))?;
            let mut upgraded = None;
            match schema {
                1 => {
                    let renamed = migrate::v1_to_v2(&txn)?;
                    meta.insert("schema", SCHEMA.to_le_bytes().as_slice())?;
                    upgraded = Some(format!(
                        "store schema 1 upgraded to {SCHEMA}: the PostgreSQL instance label of \
                         {renamed} series renamed from `instance` to `pg_instance` (same series ids)"
                    ));
                }
                SCHEMA => {}
                schema => {
                    return Err(StoreError::TooNew {
                        path: self.path.clone(),
                        schema,
                    });
                }
            }
            for t in [BLOCKS, HEAD, HEAD_LOGS, DICTIONARY] {
                txn.open_table(t)?;
            }
            txn.open_table(BLOCK_INDEX)?;
            txn.open_table(COLLECTORS)?;
            txn.open_table(CURSORS)?;
            let mut events = txn.open_table(EVENTS)?;
            if let Some((aside, why)) = &report.moved_aside {
                let line = format!(
                    "damaged store moved aside to {} ({why}); started a fresh store",
                    aside.display()
                );
                events.insert(now_ms(), line.as_str())?;
            }
            if let Some(line) = &upgraded {
                tracing::info!(store = %self.path.display(), "{line}");
                events.insert(now_ms(), line.as_str())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Loads identity, dictionary, block index and the open head into memory.
    pub(super) fn load(&mut self) -> Result<(), StoreError> {
        let txn = self.db()?.begin_read()?;
        let meta = txn.open_table(META)?;
        let id = meta
            .get("agent_id")?
            .map(|v| v.value().to_vec())
            .ok_or_else(|| StoreError::Damaged("no agent_id".into()))?;
        self.agent_id = AgentId(
            id.try_into()
                .map_err(|_| StoreError::Damaged("agent_id is not 16 bytes".into()))?,
        );
        self.next_seq = meta_u64(&meta, "next_seq")?.unwrap_or(1);

        self.metas.clear();
        self.intern.clear();
        self.dict_bytes = 0;
        for entry in txn.open_table(DICTIONARY)?.iter()? {
            let (_, frame) = entry?;
            self.dict_bytes += frame.value().len() as u64;
            let (_, entries) = pga_format::dictionary::decode(frame.value())
                .map_err(|e| StoreError::Damaged(format!("dictionary frame: {e}")))?;
            for meta in entries {
                if meta.id.0 != self.metas.len() as u64 {
                    return Err(StoreError::Damaged(format!(
                        "series id {} out of order (expected {})",
                        meta.id,
                        self.metas.len()
                    )));
                }
                self.intern
                    .entry(series_hash(&meta.name, &meta.labels))
                    .or_default()
                    .push(meta.id.0 as u32);
                self.metas.push(meta);
            }
        }

        self.index.clear();
        for entry in txn.open_table(BLOCK_INDEX)?.iter()? {
            let (seq, (min_ts, max_ts, bytes)) = {
                let (k, v) = entry?;
                (k.value(), v.value())
            };
            self.index.push_back(IndexEntry {
                seq,
                min_ts,
                max_ts,
                bytes,
            });
        }

        self.builder.clear();
        self.head_window = None;
        self.next_head_row = 0;
        self.head_bytes = 0;
        let mut latest = Vec::new();
        for row in read_head(&txn)? {
            self.builder.push_collection(row.ts, &row.pairs)?;
            for e in row.events {
                self.builder.push_log_event(e)?;
            }
            self.head_window = Some(row.ts.div_euclid(self.opts.block_ms));
            self.next_head_row = row.key + 1;
            self.head_bytes += row.bytes as u64;
            latest.push((row.ts, row.pairs));
        }
        if let Ok(mut shared) = self.shared.write() {
            let health = shared.health.take();
            *shared = handle::Published {
                health,
                ..handle::Published::default()
            };
        }
        self.publish(&self.metas, 0, &[]);
        for (ts, pairs) in latest {
            self.publish(&[], ts, &pairs);
        }
        Ok(())
    }
}

/// A new store's identity: a random UUID (version 4).
fn new_agent_id() -> AgentId {
    AgentId(uuid::Uuid::new_v4().into_bytes())
}

#[derive(Debug)]
pub(super) enum OpenFailure {
    InUse,
    Io(std::io::Error),
    Damaged(String),
}

pub(super) fn builder() -> redb::Builder {
    let mut b = Database::builder();
    b.set_concurrency_mode(ConcurrencyMode::SingleWriter);
    b.set_cache_size(16 << 20);
    b
}

/// Opens the store file, or creates it; a damaged one is moved aside (never deleted)
/// and a fresh one created in its place, which `report` records.
pub(super) fn open_or_move_aside(
    path: &Path,
    report: &mut OpenReport,
) -> Result<Database, StoreError> {
    match open_db(path) {
        Ok(db) => Ok(db),
        Err(OpenFailure::InUse) => Err(StoreError::InUse {
            path: path.to_owned(),
        }),
        Err(OpenFailure::Io(error)) => Err(StoreError::Io {
            path: path.to_owned(),
            op: "be opened",
            error,
        }),
        Err(OpenFailure::Damaged(why)) => {
            let aside = path.with_file_name(format!("{STORE_FILE}.damaged-{}", now_ms()));
            std::fs::rename(path, &aside).map_err(|error| StoreError::Unreadable {
                path: path.to_owned(),
                detail: format!(
                    "damaged ({why}) and could not be moved aside to {}: {error}",
                    aside.display()
                ),
            })?;
            report.moved_aside = Some((aside, why));
            open_db(path).map_err(|e| StoreError::Unreadable {
                path: path.to_owned(),
                detail: format!("a fresh store could not be created: {e:?}"),
            })
        }
    }
}

/// Opens or creates the store file, telling damage apart from other failures.
pub(super) fn open_db(path: &Path) -> Result<Database, OpenFailure> {
    let exists = path.exists();
    // The open checks every page's checksum and rebuilds the free-page state: a file
    // altered since redb wrote it is reported as damaged instead of trusted. redb may
    // still panic on some impossible states of a damaged file; that is damage too.
    let result = catch_quietly(|| {
        let mut b = builder();
        b.set_check_integrity_on_open(true);
        if exists { b.open(path) } else { b.create(path) }
    });
    match result {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err(OpenFailure::InUse),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
            if !super::error::is_damage(&e) =>
        {
            Err(OpenFailure::Io(e))
        }
        Ok(Err(e)) => Err(OpenFailure::Damaged(e.to_string())),
        Err(panic) => Err(OpenFailure::Damaged(format!(
            "the file's structure is inconsistent: {panic}"
        ))),
    }
}
