//! Evaluating a query for one agent at one time.
//!
//! The input ([`AgentInput`]) holds, for each window term of the query in reading
//! order ([`Expr::terms`]), the agent's series selected by the term's selector with
//! their data around the evaluation time; the output is a [`Value`]: one number or a
//! vector of labelled values. Every series carries the `agent` label, and `agent` is
//! kept through aggregations and matching: each agent is evaluated on its own.

use std::collections::HashMap;
use std::sync::Arc;

use super::expr::{AggOp, BinOp, Expr, Grouping, MatchOp, Matching, WindowFn, WindowTerm};
use super::labels::{LabelSet, Labels, Str};
use super::window::{self, Continuity, SeriesData};

/// One selected series.
#[derive(Debug, Clone)]
pub struct InputSeries {
    pub labels: Labels,
    pub data: Arc<SeriesData>,
}

/// What a query of one agent reads: per term (in [`Expr::terms`] order) the selected
/// series, plus where the agent's data has gaps.
#[derive(Debug, Clone, Default)]
pub struct AgentInput {
    pub agent: Str,
    pub terms: Vec<Vec<InputSeries>>,
    pub continuity: Continuity,
}

/// One labelled value.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    pub labels: Labels,
    pub value: f64,
}

/// A query's result.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<Element>),
}

/// Why a query has no result at some time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    #[error(
        "`{op}` matches several series on both sides for {key}: say which labels identify \
         one side with on (…) or ignoring (…)"
    )]
    ManyToMany { op: &'static str, key: String },
    #[error("the query needs input for {needed} window terms, {given} were given")]
    Input { needed: usize, given: usize },
}

/// Evaluates `expr` for the agent of `input` at `t` (ms).
pub fn evaluate(expr: &Expr, input: &AgentInput, t: i64) -> Result<Value, EvalError> {
    let needed = expr.terms().len();
    if input.terms.len() < needed {
        return Err(EvalError::Input {
            needed,
            given: input.terms.len(),
        });
    }
    let mut next = 0;
    eval(expr, input, t, &mut next)
}

fn eval(expr: &Expr, input: &AgentInput, t: i64, next: &mut usize) -> Result<Value, EvalError> {
    Ok(match expr {
        Expr::Number(n) => Value::Scalar(*n),
        Expr::Time => Value::Scalar(t as f64 / 1000.0),
        Expr::Window(term) => {
            let i = *next;
            *next += 1;
            Value::Vector(window_term(term, &input.terms[i], input, t))
        }
        Expr::Neg(e) => match eval(e, input, t, next)? {
            Value::Scalar(v) => Value::Scalar(-v),
            Value::Vector(v) => Value::Vector(
                v.into_iter()
                    .map(|e| Element {
                        value: -e.value,
                        ..e
                    })
                    .collect(),
            ),
        },
        Expr::Binary(b) => {
            let l = eval(&b.lhs, input, t, next)?;
            let r = eval(&b.rhs, input, t, next)?;
            binary(b.op, l, r, b.matching.as_ref(), b.return_bool)?
        }
        Expr::Aggregate { op, grouping, expr } => match eval(expr, input, t, next)? {
            Value::Scalar(v) => Value::Scalar(v),
            Value::Vector(v) => Value::Vector(aggregate(*op, grouping, v)),
        },
    })
}

fn window_term(
    term: &WindowTerm,
    series: &[InputSeries],
    input: &AgentInput,
    t: i64,
) -> Vec<Element> {
    if term.func == WindowFn::Absent {
        let from = t - term.range_ms;
        if input.continuity.has_gap_in(from, t)
            || series
                .iter()
                .any(|s| window::has_data(&s.data, t, term.range_ms))
        {
            return Vec::new();
        }
        // The labels the selector pins down, as PromQL's absent() gives them.
        let pinned = term
            .selector
            .matchers
            .iter()
            .filter(|m| m.op == MatchOp::Equal && !m.value.is_empty())
            .map(|m| (m.name.as_str(), m.value.as_str()));
        let labels = LabelSet::from_pairs(pinned.chain([("agent", input.agent.as_ref())]));
        return vec![Element {
            labels: Arc::new(labels),
            value: 1.0,
        }];
    }
    series
        .iter()
        .filter_map(|s| {
            window::apply(term.func, &s.data, t, term.range_ms, &input.continuity).map(|value| {
                Element {
                    labels: s.labels.clone(),
                    value,
                }
            })
        })
        .collect()
}

/// The labels of an element that take part in matching.
fn key_pairs<'a>(
    labels: &'a LabelSet,
    matching: Option<&'a Matching>,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    labels.iter().filter(move |(k, _)| match matching {
        // `agent` always matches: each agent is evaluated on its own.
        Some(m) if m.on => *k == "agent" || m.labels.iter().any(|l| l == k),
        Some(m) => *k == "agent" || !m.labels.iter().any(|l| l == k),
        None => true,
    })
}

fn key_hash(labels: &LabelSet, matching: Option<&Matching>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (k, v) in key_pairs(labels, matching) {
        k.hash(&mut h);
        v.hash(&mut h);
    }
    h.finish()
}

fn same_key(a: &LabelSet, b: &LabelSet, matching: Option<&Matching>) -> bool {
    key_pairs(a, matching).eq(key_pairs(b, matching))
}

fn describe(labels: &LabelSet, matching: Option<&Matching>) -> String {
    let pairs: Vec<String> = key_pairs(labels, matching)
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Groups elements by matching key: hash → indexes (the same hash may hold several
/// keys; [`same_key`] tells them apart).
fn index(v: &[Element], matching: Option<&Matching>) -> HashMap<u64, Vec<usize>> {
    let mut m: HashMap<u64, Vec<usize>> = HashMap::with_capacity(v.len());
    for (i, e) in v.iter().enumerate() {
        m.entry(key_hash(&e.labels, matching)).or_default().push(i);
    }
    m
}

fn binary(
    op: BinOp,
    l: Value,
    r: Value,
    matching: Option<&Matching>,
    return_bool: bool,
) -> Result<Value, EvalError> {
    let cmp = op.is_comparison();
    let scalar_op = |a: f64, b: f64, keep_left: f64| -> Option<f64> {
        let v = op.apply(a, b);
        if cmp && !return_bool {
            (v != 0.0).then_some(keep_left)
        } else {
            Some(v)
        }
    };
    Ok(match (l, r) {
        (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(op.apply(a, b)),
        (Value::Vector(v), Value::Scalar(b)) => Value::Vector(
            v.into_iter()
                .filter_map(|e| {
                    scalar_op(e.value, b, e.value).map(|value| Element {
                        labels: e.labels,
                        value,
                    })
                })
                .collect(),
        ),
        (Value::Scalar(a), Value::Vector(v)) => Value::Vector(
            v.into_iter()
                .filter_map(|e| {
                    scalar_op(a, e.value, e.value).map(|value| Element {
                        labels: e.labels,
                        value,
                    })
                })
                .collect(),
        ),
        (Value::Vector(lv), Value::Vector(rv)) => {
            let right = index(&rv, matching);
            let matches = |e: &Element| -> Vec<usize> {
                right
                    .get(&key_hash(&e.labels, matching))
                    .map(|c| {
                        c.iter()
                            .copied()
                            .filter(|&j| same_key(&e.labels, &rv[j].labels, matching))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            if matches!(op, BinOp::And | BinOp::Unless) {
                let keep = op == BinOp::And;
                return Ok(Value::Vector(
                    lv.into_iter()
                        .filter(|e| matches(e).is_empty() != keep)
                        .collect(),
                ));
            }
            let left = index(&lv, matching);
            let mut out = Vec::new();
            for le in &lv {
                let rs = matches(le);
                if rs.is_empty() {
                    continue;
                }
                let ls_count = left.get(&key_hash(&le.labels, matching)).map_or(1, |c| {
                    c.iter()
                        .filter(|&&k| same_key(&le.labels, &lv[k].labels, matching))
                        .count()
                });
                if ls_count > 1 && rs.len() > 1 {
                    return Err(EvalError::ManyToMany {
                        op: op.as_str(),
                        key: describe(&le.labels, matching),
                    });
                }
                for j in rs.iter().copied() {
                    let re = &rv[j];
                    // The result keeps the labels of the side with several series.
                    let (labels, keep) = if rs.len() > 1 {
                        (re.labels.clone(), re.value)
                    } else {
                        (le.labels.clone(), le.value)
                    };
                    if let Some(value) = scalar_op(le.value, re.value, keep) {
                        out.push(Element { labels, value });
                    }
                }
            }
            Value::Vector(out)
        }
    })
}

fn aggregate(op: AggOp, grouping: &Grouping, v: Vec<Element>) -> Vec<Element> {
    let mut groups: HashMap<LabelSet, (usize, f64, f64, f64)> = HashMap::new();
    let mut order = Vec::new();
    for e in v {
        let k = if grouping.without {
            e.labels.without(&grouping.labels)
        } else {
            e.labels.only(&grouping.labels)
        };
        let g = groups.entry(k.clone()).or_insert_with(|| {
            order.push(k);
            (0, 0.0, f64::INFINITY, f64::NEG_INFINITY)
        });
        g.0 += 1;
        g.1 += e.value;
        g.2 = g.2.min(e.value);
        g.3 = g.3.max(e.value);
    }
    order
        .into_iter()
        .map(|k| {
            let (n, sum, min, max) = groups[&k];
            let value = match op {
                AggOp::Sum => sum,
                AggOp::Count => n as f64,
                AggOp::Avg => sum / n as f64,
                AggOp::Min => min,
                AggOp::Max => max,
            };
            Element {
                labels: Arc::new(k),
                value,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::expr::parse;
    use crate::alerting::window::Point;

    fn series(labels: &[(&str, &str)], points: &[(i64, f64)]) -> InputSeries {
        InputSeries {
            labels: Arc::new(LabelSet::from_pairs(
                labels.iter().copied().chain([("agent", "db1")]),
            )),
            data: Arc::new(SeriesData {
                points: points
                    .iter()
                    .map(|&(ts, value)| Point { ts, value })
                    .collect(),
                buckets: vec![],
            }),
        }
    }

    fn input(terms: Vec<Vec<InputSeries>>) -> AgentInput {
        AgentInput {
            agent: "db1".into(),
            terms,
            continuity: Continuity::default(),
        }
    }

    fn values(v: Value) -> Vec<(String, f64)> {
        let Value::Vector(v) = v else { panic!("{v:?}") };
        let mut out: Vec<(String, f64)> = v
            .into_iter()
            .map(|e| {
                let l: Vec<String> = e
                    .labels
                    .iter()
                    .filter(|(k, _)| *k != "agent")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                (l.join(","), e.value)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn connections_ratio_with_aggregation_and_matching() {
        let q = parse(
            "sum by (pg_instance) (last(sessions[1m])) / on (pg_instance) \
             (last(max_conn[5m]) - last(reserved[5m]))",
        )
        .unwrap();
        let sessions = vec![
            series(
                &[("pg_instance", "a"), ("state", "active")],
                &[(1000, 30.0)],
            ),
            series(&[("pg_instance", "a"), ("state", "idle")], &[(1000, 50.0)]),
            series(&[("pg_instance", "b"), ("state", "idle")], &[(1000, 9.0)]),
        ];
        let max = vec![
            series(&[("pg_instance", "a")], &[(900, 103.0)]),
            series(&[("pg_instance", "b")], &[(900, 13.0)]),
        ];
        let res = vec![
            series(&[("pg_instance", "a")], &[(900, 3.0)]),
            series(&[("pg_instance", "b")], &[(900, 3.0)]),
        ];
        let v = evaluate(&q, &input(vec![sessions, max, res]), 1000).unwrap();
        assert_eq!(
            values(v),
            [
                ("pg_instance=a".to_owned(), 0.8),
                ("pg_instance=b".to_owned(), 0.9)
            ]
        );
    }

    #[test]
    fn many_to_one_keeps_the_many_side_and_many_to_many_is_an_error() {
        let q = parse("last(dead[1m]) / on (db) last(total[1m])").unwrap();
        let dead = vec![
            series(&[("db", "x"), ("rel", "t1")], &[(10, 5.0)]),
            series(&[("db", "x"), ("rel", "t2")], &[(10, 10.0)]),
        ];
        let total = vec![series(&[("db", "x")], &[(10, 20.0)])];
        let v = evaluate(&q, &input(vec![dead.clone(), total.clone()]), 10).unwrap();
        assert_eq!(
            values(v),
            [
                ("db=x,rel=t1".to_owned(), 0.25),
                ("db=x,rel=t2".to_owned(), 0.5)
            ]
        );
        let e = evaluate(&q, &input(vec![dead.clone(), dead]), 10).unwrap_err();
        assert!(matches!(e, EvalError::ManyToMany { .. }), "{e}");
    }

    #[test]
    fn comparisons_filter_and_set_operators_select() {
        let q = parse("time() - last(vac[1h]) and on (rel) last(live[1h]) > 1000").unwrap();
        let vac = vec![
            series(&[("rel", "big")], &[(50_000, 10.0)]),
            series(&[("rel", "small")], &[(50_000, 20.0)]),
        ];
        let live = vec![
            series(&[("rel", "big")], &[(50_000, 5000.0)]),
            series(&[("rel", "small")], &[(50_000, 10.0)]),
        ];
        let v = evaluate(&q, &input(vec![vac, live]), 100_000).unwrap();
        assert_eq!(values(v), [("rel=big".to_owned(), 90.0)]);
        let q = parse("last(a[1m]) > bool 5").unwrap();
        let a = vec![
            series(&[("x", "1")], &[(10, 7.0)]),
            series(&[("x", "2")], &[(10, 3.0)]),
        ];
        assert_eq!(
            values(evaluate(&q, &input(vec![a]), 10).unwrap()),
            [("x=1".to_owned(), 1.0), ("x=2".to_owned(), 0.0)]
        );
    }

    #[test]
    fn absent_is_one_per_agent_with_the_pinned_labels_and_never_over_a_gap() {
        let q = parse("absent(pg_up{pg_instance=\"main\", x=~\".*\"}[1m])").unwrap();
        let up = vec![series(&[("pg_instance", "main")], &[(10_000, 1.0)])];
        assert_eq!(
            values(evaluate(&q, &input(vec![up.clone()]), 60_000).unwrap()),
            []
        );
        let v = evaluate(&q, &input(vec![up.clone()]), 200_000).unwrap();
        assert_eq!(values(v), [("pg_instance=main".to_owned(), 1.0)]);
        let mut i = input(vec![up]);
        i.continuity.gaps.push((Some(100_000), Some(300_000)));
        assert_eq!(values(evaluate(&q, &i, 200_000).unwrap()), []);
    }
}
