//! What one renewal decides, without I/O: from the live replicas, the fleet and
//! what this replica holds, the leases it wants, those it keeps (their pulls go on)
//! and those it claims; and whether an epoch read back may be used.

use std::collections::{BTreeMap, HashMap};

use super::Holdings;
use super::assign;
use super::lease::{AGENT, ALERTING, Key, LEADER};

/// The decisions of one renewal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Every lease assigned to this replica: the rest of what it holds is released.
    pub wanted: Vec<Key>,
    /// What it holds and keeps: pulled on while the rest is released.
    pub keep: Holdings,
    /// What it is assigned and does not hold yet.
    pub claim: Vec<Key>,
}

/// The plan of replica `me` among the `live` replica ids for the agents `fleet`,
/// holding `held`.
pub fn plan<'a>(
    me: &str,
    live: &[String],
    fleet: impl IntoIterator<Item = &'a str>,
    held: &Holdings,
) -> Plan {
    let mine = |item: &str| assign::owner(item, live) == Some(me);
    let mut wanted: Vec<Key> = fleet
        .into_iter()
        .filter(|name| mine(name))
        .map(|name| (AGENT.to_owned(), name.to_owned()))
        .collect();
    let leader = mine(&format!("{LEADER}/{ALERTING}"));
    if leader {
        wanted.push((LEADER.to_owned(), ALERTING.to_owned()));
    }
    let keep = Holdings {
        agents: held
            .agents
            .iter()
            .filter(|(n, _)| wanted.iter().any(|(k, w)| k == AGENT && w == *n))
            .map(|(n, e)| (n.clone(), *e))
            .collect::<BTreeMap<_, _>>(),
        leader: held.leader.filter(|_| leader),
    };
    let claim = wanted
        .iter()
        .filter(|(k, n)| match k.as_str() {
            AGENT => !keep.agents.contains_key(n),
            _ => keep.leader.is_none(),
        })
        .cloned()
        .collect();
    Plan {
        wanted,
        keep,
        claim,
    }
}

/// Whether a lease read back with `epoch` may be used: not below the epoch this
/// replica was granted for it (an epoch only grows; a lower one was set by hand).
pub fn epoch_acceptable(granted: &HashMap<Key, i64>, key: &Key, epoch: i64) -> bool {
    granted.get(key).is_none_or(|&mine| epoch >= mine)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("r{i}")).collect()
    }

    fn fleet(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("db{i}")).collect()
    }

    fn names(f: &[String]) -> impl Iterator<Item = &str> {
        f.iter().map(String::as_str)
    }

    #[test]
    fn alone_a_replica_claims_every_agent_and_the_leader() {
        let f = fleet(20);
        let p = plan("r0", &ids(1), names(&f), &Holdings::default());
        assert_eq!(p.claim.len(), 21);
        assert_eq!(p.wanted, p.claim);
        assert_eq!(p.keep, Holdings::default());
    }

    #[test]
    fn replicas_split_the_fleet_and_one_leads() {
        let (f, live) = (fleet(30), ids(3));
        let plans: Vec<Plan> = live
            .iter()
            .map(|me| plan(me, &live, names(&f), &Holdings::default()))
            .collect();
        let mut all: Vec<&Key> = plans.iter().flat_map(|p| &p.wanted).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 31, "every agent and the leader, once");
        assert_eq!(plans.iter().map(|p| p.wanted.len()).sum::<usize>(), 31);
        let leaders = plans
            .iter()
            .filter(|p| p.wanted.iter().any(|(k, _)| k == LEADER))
            .count();
        assert_eq!(leaders, 1);
        assert!(plans.iter().all(|p| p.wanted.len() >= 4), "{plans:?}");
    }

    #[test]
    fn a_joining_replica_takes_only_its_share_and_the_others_keep_the_rest() {
        let f = fleet(30);
        let held = Holdings {
            agents: f.iter().map(|n| (n.clone(), 7)).collect(),
            leader: Some(8),
        };
        // r0 held everything; r1 joins.
        let p = plan("r0", &ids(2), names(&f), &held);
        let other = plan("r1", &ids(2), names(&f), &Holdings::default());
        assert!(p.claim.is_empty(), "r0 claims nothing it does not hold");
        assert_eq!(
            p.keep.agents.len() + other.wanted.iter().filter(|(k, _)| k == AGENT).count(),
            30
        );
        assert!(p.keep.agents.values().all(|&e| e == 7), "epochs kept");
        for (_, n) in &other.wanted {
            assert!(!p.keep.agents.contains_key(n), "{n} kept by both");
        }
    }

    #[test]
    fn an_added_agent_is_claimed_and_a_removed_one_is_not_kept() {
        let mut f = fleet(3);
        let held = Holdings {
            agents: f.iter().map(|n| (n.clone(), 1)).collect(),
            leader: Some(2),
        };
        f.remove(0);
        f.push("new".into());
        let p = plan("r0", &ids(1), names(&f), &held);
        assert_eq!(p.claim, [(AGENT.to_owned(), "new".to_owned())]);
        assert!(!p.keep.agents.contains_key("db0"));
        assert!(!p.wanted.iter().any(|(_, n)| n == "db0"), "db0 is released");
    }

    #[test]
    fn an_epoch_below_the_granted_one_is_refused() {
        let key = (AGENT.to_owned(), "db1".to_owned());
        let granted = HashMap::from([(key.clone(), 10)]);
        assert!(epoch_acceptable(&granted, &key, 10));
        assert!(epoch_acceptable(&granted, &key, 11));
        assert!(!epoch_acceptable(&granted, &key, 9));
        assert!(epoch_acceptable(
            &granted,
            &(AGENT.to_owned(), "db2".to_owned()),
            1
        ));
    }
}
