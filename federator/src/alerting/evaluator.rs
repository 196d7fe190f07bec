//! One evaluation cycle against the central database.
//!
//! 1. Hold the alerting leader lease ([`crate::cluster`]; or, for an evaluator
//!    built without one, the evaluation lock [`lock`]): one federator evaluates at a
//!    time, so a second replica never doubles a notification. Without it, the cycle
//!    is skipped.
//! 2. Read the enabled rules, the agents (watermark, position), the open alerts.
//! 3. Rules over the federator's own view run at the wall clock; the agents an
//!    `inhibits_agent` alert fires for are held.
//! 4. Every other agent is evaluated at each step of data time from its position to
//!    its watermark ([`super::engine::Settings::steps`]), reading samples and rollups
//!    once per query term for all agents and steps ([`super::data::read_windows`]).
//! 5. Notifications are decided ([`reconcile`]): a firing alert not yet notified, a
//!    notified alert that resolved, a late alert that fired and resolved while its
//!    agent's data was away; muted by a matching maintenance window (recorded).
//! 6. Alerts, outbox rows and positions are written in one transaction, and the lock
//!    is released. Under the leader lease, the transaction first checks (and locks)
//!    the lease with the epoch held: a replica that lost it writes nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

use super::cache;
use super::data::{self, AgentInfo, SeriesIndex};
use super::engine::{Book, Settings, Tracked};
use super::eval::{AgentInput, InputSeries};
use super::expr::WindowFn;
use super::labels::Str;
use super::metrics::AlertingMetrics;
use super::rule::Rule;
use super::state::{Phase, Resolution};
use super::window::{Continuity, SeriesData};
use crate::db::{alerts, maintenance, outbox, rules};
use crate::notify::{payload, worker::generator_url};

/// The single-evaluator guarantee: a PostgreSQL advisory lock held by the
/// evaluator's own session around each cycle (released at its end, or with the
/// session if the federator dies). A lease from the scale-out work may replace these
/// two functions (`pga-federator run` uses the alerting leader lease instead,
/// [`Evaluator::with_leader`]).
pub mod lock {
    use sqlx::PgConnection;

    /// Takes the evaluation lock if nobody holds it.
    pub async fn try_acquire(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
        let (ok,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock(7247, 1)")
            .fetch_one(conn)
            .await?;
        Ok(ok)
    }

    /// Releases it.
    pub async fn release(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_unlock(7247, 1)")
            .execute(conn)
            .await
            .map(drop)
    }
}

/// What the evaluator is told.
#[derive(Debug, Clone)]
pub struct EvaluatorSettings {
    pub engine: Settings,
    pub max_silence_ms: i64,
    /// For the `generatorURL` of notifications.
    pub external_url: String,
    /// Evaluate only these agents (the configured ones); all when `None`.
    pub only_agents: Option<HashSet<String>>,
}

/// What one cycle did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CycleReport {
    /// False when another federator holds the evaluation lock.
    pub ran: bool,
    pub rules: usize,
    pub agents: usize,
    /// Agent × step evaluations.
    pub steps: usize,
    pub late_steps: usize,
    pub held_agents: usize,
    pub series_read: usize,
    pub samples_read: usize,
    pub errors: u64,
    pub fired: usize,
    pub resolved: usize,
    pub pending: usize,
    pub firing: usize,
    pub notifications: usize,
    pub read_secs: f64,
    pub eval_secs: f64,
    pub write_secs: f64,
}

/// The evaluator: its lock session, the read pool and the series index.
#[derive(Debug)]
pub struct Evaluator {
    pool: PgPool,
    session_options: PgConnectOptions,
    session: Option<PgConnection>,
    settings: EvaluatorSettings,
    index: SeriesIndex,
    /// Per query term and series: what is kept for the next cycle ([`cache`]).
    kept: HashMap<String, HashMap<i64, cache::Kept>>,
    metrics: Option<AlertingMetrics>,
    reported: HashSet<String>,
    /// The replica whose alerting leader lease replaces the advisory lock.
    leader: Option<Arc<crate::cluster::Cluster>>,
}

impl Evaluator {
    /// An evaluator reading through `pool` and holding its lock and writing through a
    /// session of its own made with `session_options`.
    pub fn new(
        pool: PgPool,
        session_options: PgConnectOptions,
        settings: EvaluatorSettings,
        metrics: Option<AlertingMetrics>,
    ) -> Evaluator {
        Evaluator {
            pool,
            session_options,
            session: None,
            settings,
            index: SeriesIndex::default(),
            kept: HashMap::new(),
            metrics,
            reported: HashSet::new(),
            leader: None,
        }
    }

    /// Evaluates only while `cluster` holds the alerting leader lease, and writes
    /// only with its epoch (instead of the advisory lock).
    pub fn with_leader(mut self, cluster: Arc<crate::cluster::Cluster>) -> Evaluator {
        self.leader = Some(cluster);
        self
    }

    /// Runs one cycle at wall-clock `now` (ms).
    pub async fn cycle(&mut self, now: i64) -> Result<CycleReport, sqlx::Error> {
        let started = Instant::now();
        if self.session.is_none() {
            self.session = Some(crate::db::connect_session(&self.session_options).await?);
        }
        let Some(mut conn) = self.session.take() else {
            return Ok(CycleReport::default());
        };
        let fence = self.leader.as_ref().map(|c| c.leader());
        match fence {
            Some(Some(_)) => {}
            Some(None) => {
                self.session = Some(conn);
                if let Some(m) = &self.metrics {
                    m.cycle("skipped", None);
                }
                return Ok(CycleReport::default());
            }
            None => match lock::try_acquire(&mut conn).await {
                Ok(true) => {}
                Ok(false) => {
                    self.session = Some(conn);
                    if let Some(m) = &self.metrics {
                        m.cycle("skipped", None);
                    }
                    return Ok(CycleReport::default());
                }
                Err(e) => return Err(e),
            },
        }
        let fence = fence.flatten();
        let result = self.run(&mut conn, now, fence.as_ref()).await;
        let released = match fence {
            Some(_) => Ok(()),
            None => lock::release(&mut conn).await,
        };
        if result.is_ok() && released.is_ok() {
            self.session = Some(conn);
        }
        if let Some(m) = &self.metrics {
            match &result {
                Ok(r) => {
                    m.cycle("ok", Some(started.elapsed().as_secs_f64()));
                    m.set_rules(r.rules);
                    m.set_alerts(r.pending, r.firing);
                    m.evaluation_errors(r.errors);
                }
                Err(_) => m.cycle("failed", None),
            }
        }
        result
    }

    async fn run(
        &mut self,
        conn: &mut PgConnection,
        now: i64,
        fence: Option<&crate::db::sink::Fence>,
    ) -> Result<CycleReport, sqlx::Error> {
        let mut report = CycleReport {
            ran: true,
            ..Default::default()
        };
        let t_read = Instant::now();
        let (rules, bad) = rules::load_enabled(&self.pool).await?;
        for (name, problems) in bad {
            if self.reported.insert(name.clone()) {
                tracing::error!(
                    rule = %name,
                    problems = %problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
                    "a stored rule no longer passes its checks; it is not evaluated"
                );
            }
        }
        report.rules = rules.len();
        let rule_ids: HashSet<i64> = rules.iter().map(|(id, _, _)| *id).collect();
        let agents = data::load_agents(
            &self.pool,
            self.settings.only_agents.as_ref(),
            &mut self.index.interner,
        )
        .await?;
        report.agents = agents.len();
        let names: HashMap<i64, Str> = agents.iter().map(|a| (a.id, a.name.clone())).collect();
        let ids: HashMap<Str, i64> = agents.iter().map(|a| (a.name.clone(), a.id)).collect();
        let by_id: HashMap<i64, AgentInfo> = agents.iter().map(|a| (a.id, a.clone())).collect();
        let (mut book, mut unsettled) =
            alerts::load_open(conn, &names, &mut self.index.interner).await?;
        let settings = self.settings.engine;
        let continuity_base = Continuity {
            gaps: Vec::new(),
            max_silence_ms: self.settings.max_silence_ms,
        };

        // 3. The federator's own view, at the wall clock.
        for (rule_id, _, rule) in rules.iter().filter(|(_, _, r)| r.wall_clock) {
            for a in &agents {
                let view = data::federator_view(a, now);
                let labels = Arc::new(a.labels.merged([("agent", a.name.as_ref())]));
                let terms = rule
                    .expr
                    .terms()
                    .iter()
                    .map(|t| {
                        view.iter()
                            .filter(|(m, _)| *m == t.selector.metric)
                            .filter(|_| t.selector.matches(|n| labels.get(n)))
                            .map(|(_, d)| InputSeries {
                                labels: labels.clone(),
                                data: Arc::new(d.clone()),
                            })
                            .collect()
                    })
                    .collect();
                let input = AgentInput {
                    agent: a.name.clone(),
                    terms,
                    continuity: continuity_base.clone(),
                };
                if let Err(e) =
                    book.step(*rule_id, rule, &input, now, false, settings.no_data_for_ms)
                {
                    report.errors += 1;
                    tracing::warn!(rule = %rule.name(), agent = %a.name, error = %e, "rule evaluation failed");
                }
            }
        }
        let inhibitors: HashSet<i64> = rules
            .iter()
            .filter(|(_, _, r)| r.spec.inhibits_agent)
            .map(|(id, _, _)| *id)
            .collect();
        let held = book.inhibited_agents(&inhibitors);
        report.held_agents = held.len();

        // 4. Data-time steps per agent.
        let plans: Vec<(&AgentInfo, Vec<i64>)> = agents
            .iter()
            .filter(|a| !held.contains(&a.name))
            .filter_map(|a| {
                let steps = settings.steps(a.position, a.watermark?);
                (!steps.is_empty()).then_some((a, steps))
            })
            .collect();
        let data_rules: Vec<&(i64, i32, Rule)> =
            rules.iter().filter(|(_, _, r)| !r.wall_clock).collect();
        let metrics: HashSet<String> = data_rules
            .iter()
            .flat_map(|(_, _, r)| {
                r.expr
                    .terms()
                    .into_iter()
                    .map(|t| t.selector.metric.clone())
            })
            .collect();
        let mut fetched: HashMap<String, HashMap<i64, Arc<SeriesData>>> = HashMap::new();
        let mut failed: HashMap<String, String> = HashMap::new();
        let mut gaps = HashMap::new();
        if !plans.is_empty() && !data_rules.is_empty() {
            self.index.refresh(&self.pool, &metrics, &by_id).await?;
            let mut keys: HashMap<String, (WindowFn, i64, &super::expr::Selector)> = HashMap::new();
            for (_, _, r) in &data_rules {
                for t in r.expr.terms() {
                    keys.entry(term_key(t))
                        .or_insert((t.func, t.range_ms, &t.selector));
                }
            }
            for (key, (func, range, selector)) in &keys {
                // Only what is new since the previous cycle is read (see [`cache`]).
                let mut kept = self.kept.remove(key).unwrap_or_default();
                let mut requests = Vec::new();
                let mut ends: Vec<(i64, i64)> = Vec::new();
                for (a, steps) in &plans {
                    let last = steps[steps.len() - 1];
                    for s in self.index.select(a.id, selector) {
                        requests.push(cache::plan(
                            kept.get(&s.id),
                            s.id,
                            *func,
                            *range,
                            steps,
                            self.settings.max_silence_ms,
                        ));
                        ends.push((s.id, last));
                    }
                }
                report.series_read += requests.len();
                let mut got = match data::read_windows(&self.pool, &requests).await {
                    Ok(got) => got,
                    // A read that fails on its own (a statement timeout: the query
                    // reads too much) costs only the rules that need it.
                    Err(e) if !is_connection_error(&e) => {
                        failed.insert(key.clone(), e.to_string());
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                report.samples_read += got
                    .values()
                    .map(|d| d.points.len() + d.buckets.len())
                    .sum::<usize>();
                let mut next: HashMap<i64, cache::Kept> = HashMap::with_capacity(ends.len());
                let mut data: HashMap<i64, Arc<SeriesData>> = HashMap::with_capacity(ends.len());
                for (id, last) in ends {
                    let merged =
                        cache::merge(kept.remove(&id), got.remove(&id).unwrap_or_default());
                    next.insert(id, cache::keep(&merged, *func, *range, last));
                    data.insert(id, Arc::new(merged));
                }
                // Series not evaluated this cycle (their agent's data did not move)
                // keep theirs for a while.
                next.extend(
                    kept.into_iter()
                        .filter(|(_, k)| k.through > now - 3_600_000),
                );
                self.kept.insert(key.clone(), next);
                fetched.insert(key.clone(), data);
            }
            let max_range = keys.values().map(|v| v.1).max().unwrap_or(0);
            let since = plans.iter().map(|(_, s)| s[0]).min().unwrap_or(now)
                - max_range
                - self.settings.max_silence_ms;
            let ids: Vec<i64> = plans.iter().map(|(a, _)| a.id).collect();
            gaps = data::load_gaps(&self.pool, &ids, since).await?;
        }
        // Rules whose data could not be read are not evaluated this cycle (their
        // alerts stay as they are).
        let blocked: HashSet<i64> = data_rules
            .iter()
            .filter_map(|(id, _, r)| {
                let why = r
                    .expr
                    .terms()
                    .into_iter()
                    .find_map(|t| failed.get(&term_key(t)))?;
                report.errors += 1;
                tracing::warn!(
                    rule = %r.name(),
                    error = %why,
                    "reading the rule's data failed; it is not evaluated this cycle (a \
                     statement timeout means its query reads too much: narrow its selector \
                     or shorten its window, or raise alerting.query_timeout_secs)"
                );
                Some(*id)
            })
            .collect();
        report.read_secs = t_read.elapsed().as_secs_f64();
        let t_eval = Instant::now();
        let empty = Arc::new(SeriesData::default());
        let rule_keys: Vec<Vec<String>> = data_rules
            .iter()
            .map(|(_, _, r)| r.expr.terms().into_iter().map(term_key).collect())
            .collect();
        let mut positions: Vec<(i64, i64)> = Vec::new();
        for (a, steps) in &plans {
            let continuity = Continuity {
                gaps: gaps.get(&a.id).cloned().unwrap_or_default(),
                max_silence_ms: self.settings.max_silence_ms,
            };
            let inputs: Vec<AgentInput> = data_rules
                .iter()
                .zip(&rule_keys)
                .map(|((_, _, r), keys)| AgentInput {
                    agent: a.name.clone(),
                    terms: r
                        .expr
                        .terms()
                        .iter()
                        .zip(keys)
                        .map(|(t, key)| {
                            let got = fetched.get(key);
                            self.index
                                .select(a.id, &t.selector)
                                .into_iter()
                                .map(|s| InputSeries {
                                    labels: s.labels.clone(),
                                    data: got
                                        .and_then(|g| g.get(&s.id))
                                        .cloned()
                                        .unwrap_or_else(|| empty.clone()),
                                })
                                .collect()
                        })
                        .collect(),
                    continuity: continuity.clone(),
                })
                .collect();
            for &t in steps {
                let late = settings.is_late(t, now);
                report.steps += 1;
                report.late_steps += usize::from(late);
                for ((rule_id, _, rule), input) in data_rules.iter().zip(&inputs) {
                    if blocked.contains(rule_id) {
                        continue;
                    }
                    if let Err(e) =
                        book.step(*rule_id, rule, input, t, late, settings.no_data_for_ms)
                    {
                        report.errors += 1;
                        if report.errors <= 10 {
                            tracing::warn!(rule = %rule.name(), agent = %a.name, at_ms = t, error = %e, "rule evaluation failed");
                        }
                    }
                }
            }
            if let Some(&last) = steps.last() {
                positions.push((a.id, last));
            }
        }
        // Alerts of rules that were disabled or deleted resolve.
        let orphans: Vec<(i64, Str)> = book
            .open
            .keys()
            .filter(|(r, _)| !rule_ids.contains(r))
            .cloned()
            .collect();
        for key in orphans {
            if let Some(open) = book.open.remove(&key) {
                for (_, mut a) in open {
                    let at = by_id
                        .get(ids.get(&a.agent).unwrap_or(&-1))
                        .and_then(|i| i.watermark)
                        .unwrap_or(now)
                        .max(a.state.last_seen_at);
                    if a.state.phase == Phase::Pending {
                        a.dropped = true;
                    } else {
                        a.state.phase = Phase::Resolved;
                        a.state.resolved_at = Some(at);
                        a.state.resolution = Some(Resolution::Cleared);
                    }
                    a.dirty = true;
                    book.finished.push(a);
                }
            }
        }
        report.eval_secs = t_eval.elapsed().as_secs_f64();

        // 5. Notifications.
        let t_write = Instant::now();
        let windows = maintenance::active(&self.pool, now).await?;
        let mut tx = conn.begin().await?;
        if let Some(f) = fence {
            let held: Option<i64> = sqlx::query_scalar(
                "SELECT l.epoch FROM cluster_leases l \
                 JOIN cluster_replica_leases r ON r.replica_id = l.owner \
                 WHERE l.kind = 'leader' AND l.name = 'alerting' AND l.owner = $1::uuid \
                   AND l.epoch = $2 AND r.valid_until > clock_timestamp() \
                 FOR SHARE OF l",
            )
            .bind(&f.replica)
            .bind(f.epoch)
            .fetch_optional(&mut *tx)
            .await?;
            if held.is_none() {
                tracing::warn!(
                    epoch = f.epoch,
                    "alert evaluation not written: this replica no longer holds the alerting leader lease"
                );
                tx.rollback().await?;
                return Ok(CycleReport::default());
            }
        }
        let notes = {
            let Book { open, finished } = &mut book;
            let mut all: Vec<&mut Tracked> = open
                .values_mut()
                .flat_map(|m| m.values_mut())
                .chain(finished.iter_mut())
                .chain(unsettled.iter_mut())
                .collect();
            let decided = reconcile(&mut all, &held, &inhibitors, &windows);
            report.fired = all
                .iter()
                .filter(|a| {
                    a.state.fired_at.is_some() && a.loaded_phase.is_none_or(|p| p == Phase::Pending)
                })
                .count();
            report.resolved = all
                .iter()
                .filter(|a| {
                    a.state.phase == Phase::Resolved && a.loaded_phase != Some(Phase::Resolved)
                })
                .count();
            report.pending = all
                .iter()
                .filter(|a| a.state.phase == Phase::Pending && !a.dropped)
                .count();
            report.firing = all
                .iter()
                .filter(|a| a.state.phase == Phase::Firing)
                .count();
            alerts::save(&mut tx, &mut all, &ids).await?;
            decided
                .into_iter()
                .filter_map(|(i, status, muted_by)| {
                    let a = &all[i];
                    let id = a.id?;
                    let starts = a.state.fired_at.unwrap_or(a.state.active_at);
                    let ends = (status == "resolved")
                        .then_some(a.state.resolved_at)
                        .flatten();
                    // A late alert says so to its receivers.
                    let mut annotations = a.annotations.clone();
                    if a.late {
                        annotations.insert("late".into(), "true".into());
                    }
                    Some(outbox::NewNotification {
                        alert_id: id,
                        status,
                        payload: payload::stored(
                            a.labels.to_json(),
                            serde_json::to_value(&annotations).unwrap_or_default(),
                            &a.fingerprint,
                            starts,
                            ends,
                            &generator_url(&self.settings.external_url, id),
                            a.late,
                        ),
                        late: a.late,
                        muted_by,
                    })
                })
                .collect::<Vec<_>>()
        };
        outbox::enqueue(&mut tx, &notes).await?;
        report.notifications = notes.iter().filter(|n| n.muted_by.is_none()).count();
        if !positions.is_empty() {
            sqlx::query(
                "INSERT INTO alert_positions (agent_id, evaluated_through_ms) \
                 SELECT * FROM unnest($1::bigint[], $2::bigint[]) \
                 ON CONFLICT (agent_id) DO UPDATE \
                     SET evaluated_through_ms = EXCLUDED.evaluated_through_ms, updated_at = now()",
            )
            .bind(positions.iter().map(|p| p.0).collect::<Vec<_>>())
            .bind(positions.iter().map(|p| p.1).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        report.write_secs = t_write.elapsed().as_secs_f64();
        Ok(report)
    }
}

/// Whether a database error is the connection's (the cycle stops) rather than one
/// statement's (that statement's rules are skipped).
fn is_connection_error(e: &sqlx::Error) -> bool {
    !matches!(e, sqlx::Error::Database(_))
}

/// Terms that read the same data share one read: same selector and window, and the
/// same kind of request (`last`; `rate`/`increase`; the others).
fn term_key(t: &super::expr::WindowTerm) -> String {
    let kind = match t.func {
        WindowFn::Last => "last",
        WindowFn::Rate | WindowFn::Increase => "counter",
        _ => "window",
    };
    format!("{}[{}]{kind}", t.selector, t.range_ms)
}

/// Decides each alert's notification and updates its `held`, `muted_by` and
/// `notified`: returns `(index into alerts, status, muted_by)` for every outbox row
/// to write.
///
/// - A firing alert whose firing was not notified: `firing`.
/// - A resolved alert whose firing was notified, or a late one that fired and
///   resolved unseen: `resolved`, with its true times.
/// - An alert a maintenance window matches is muted: a row records the change (once,
///   when its state changed) but nothing is delivered, and `notified` stays, so
///   that an alert still firing when the window ends is notified then.
/// - Held alerts (their agent is unreachable) change nothing.
pub fn reconcile(
    alerts: &mut [&mut Tracked],
    held: &HashSet<Str>,
    inhibitors: &HashSet<i64>,
    windows: &[maintenance::ActiveWindow],
) -> Vec<(usize, &'static str, Option<i64>)> {
    let mut out = Vec::new();
    for (i, a) in alerts.iter_mut().enumerate() {
        if a.dropped {
            continue;
        }
        let now_held = a.state.phase != Phase::Resolved
            && held.contains(&a.agent)
            && !inhibitors.contains(&a.rule_id);
        if now_held != a.held {
            a.held = now_held;
            a.dirty = true;
        }
        let muted = windows.iter().find(|w| w.mutes(&a.labels)).map(|w| w.id);
        if muted != a.muted_by {
            a.muted_by = muted;
            a.dirty = true;
        }
        let desired = match a.state.phase {
            Phase::Firing => Some(Phase::Firing),
            Phase::Resolved
                if a.state.fired_at.is_some()
                    && (a.notified == Some(Phase::Firing) || (a.late && a.notified.is_none())) =>
            {
                Some(Phase::Resolved)
            }
            _ => None,
        };
        let Some(desired) = desired else { continue };
        if a.notified == Some(desired) {
            continue;
        }
        let status = desired.as_str();
        if let Some(w) = muted {
            if a.loaded_phase != Some(a.state.phase) {
                out.push((i, status, Some(w)));
            }
            continue;
        }
        a.notified = Some(desired);
        a.dirty = true;
        out.push((i, status, None));
    }
    out
}
