//! Label sets: sorted `(name, value)` pairs of shared strings, cheap to clone and
//! compare, as the evaluator handles a fleet's worth of them every cycle.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// A shared string.
pub type Str = Arc<str>;

/// A sorted set of labels, names unique.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelSet(Vec<(Str, Str)>);

/// A shared label set.
pub type Labels = Arc<LabelSet>;

impl LabelSet {
    /// From pairs in any order; a later pair with the same name wins.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> LabelSet {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in pairs {
            map.insert(k.as_ref().to_owned(), v.as_ref().to_owned());
        }
        LabelSet(
            map.into_iter()
                .map(|(k, v)| (Str::from(k), Str::from(v)))
                .collect(),
        )
    }

    /// From already shared, sorted, unique pairs.
    pub fn from_sorted(pairs: Vec<(Str, Str)>) -> LabelSet {
        debug_assert!(pairs.windows(2).all(|w| w[0].0 < w[1].0));
        LabelSet(pairs)
    }

    /// The value of `name`, `""` when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .binary_search_by(|(k, _)| k.as_ref().cmp(name))
            .map_or("", |i| &self.0[i].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs whose name is in `names` (always keeping `agent`).
    pub fn only(&self, names: &[String]) -> LabelSet {
        LabelSet(
            self.0
                .iter()
                .filter(|(k, _)| k.as_ref() == "agent" || names.iter().any(|n| n == k.as_ref()))
                .cloned()
                .collect(),
        )
    }

    /// The pairs whose name is not in `names` (never dropping `agent`).
    pub fn without(&self, names: &[String]) -> LabelSet {
        LabelSet(
            self.0
                .iter()
                .filter(|(k, _)| k.as_ref() == "agent" || !names.iter().any(|n| n == k.as_ref()))
                .cloned()
                .collect(),
        )
    }

    /// This set with `extra` added (replacing pairs of the same name).
    pub fn merged<'a>(&self, extra: impl IntoIterator<Item = (&'a str, &'a str)>) -> LabelSet {
        let mut map: BTreeMap<Str, Str> = self.0.iter().cloned().collect();
        for (k, v) in extra {
            map.insert(Str::from(k), Str::from(v));
        }
        LabelSet(map.into_iter().collect())
    }

    /// As a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
                .collect(),
        )
    }

    /// As an ordered map of owned strings.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// A stable identity of the set: SHA-256 of `name\0value\0…`, 16 hex digits (the
    /// same set always gives the same fingerprint, across versions and restarts).
    pub fn fingerprint(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for (k, v) in &self.0 {
            ctx.update(k.as_bytes());
            ctx.update(&[0]);
            ctx.update(v.as_bytes());
            ctx.update(&[0]);
        }
        ctx.finish().as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Shares equal strings: label names and values repeat across series and agents.
#[derive(Debug, Default)]
pub struct Interner(HashSet<Str>);

impl Interner {
    pub fn get(&mut self, s: &str) -> Str {
        if let Some(v) = self.0.get(s) {
            return v.clone();
        }
        let v = Str::from(s);
        self.0.insert(v.clone());
        v
    }

    /// A label set from a JSON object of strings plus `extra` pairs.
    pub fn labels_from_json(
        &mut self,
        json: &serde_json::Value,
        extra: &[(&str, &str)],
    ) -> LabelSet {
        let mut pairs: Vec<(Str, Str)> = Vec::new();
        if let Some(obj) = json.as_object() {
            for (k, v) in obj {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                pairs.push((self.get(k), self.get(&v)));
            }
        }
        for (k, v) in extra {
            pairs.retain(|(n, _)| n.as_ref() != *k);
            pairs.push((self.get(k), self.get(v)));
        }
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|a, b| a.0 == b.0);
        LabelSet(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_sorted_and_fingerprints_stable() {
        let a = LabelSet::from_pairs([("b", "2"), ("a", "1"), ("agent", "x")]);
        assert_eq!(a.get("a"), "1");
        assert_eq!(a.get("zz"), "");
        let b = LabelSet::from_pairs([("agent", "x"), ("a", "1"), ("b", "2")]);
        assert_eq!(a, b);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 16);
        assert_ne!(a.fingerprint(), a.merged([("c", "3")]).fingerprint());
        assert_eq!(a.only(&["a".into()]).len(), 2, "agent is always kept");
        assert_eq!(a.without(&["a".into(), "agent".into()]).len(), 2);
        let mut i = Interner::default();
        let j = i.labels_from_json(&serde_json::json!({"b": "2", "a": "1"}), &[("agent", "x")]);
        assert_eq!(j, a);
    }
}
