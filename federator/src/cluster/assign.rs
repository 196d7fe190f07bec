//! Which live replica owns what: rendezvous (highest random weight) hashing. Every
//! replica computes the same answer from the same list of live replica ids, with no
//! coordination; when a replica joins or leaves, only the items it wins or held
//! move. The hash is FNV-1a with a 64-bit finaliser, fixed here so that replicas
//! of different builds agree.

/// FNV-1a over `parts`, each followed by a 0xff separator, then a splitmix64
/// finaliser so that the high bits depend on every input byte.
fn weight(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.as_bytes().iter().chain(&[0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The replica (of `replicas`, their ids) that owns `item`; `None` when there is
/// none. Ties (never seen in practice) go to the smaller id.
pub fn owner<'a>(item: &str, replicas: &'a [String]) -> Option<&'a str> {
    replicas
        .iter()
        .map(|r| (weight(&[r, item]), r))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, r)| r.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("replica-{i}")).collect()
    }

    fn items() -> Vec<String> {
        (0..600).map(|i| format!("db-{i}")).collect()
    }

    #[test]
    fn one_replica_owns_everything_and_none_owns_nothing() {
        let one = ids(1);
        assert!(items().iter().all(|i| owner(i, &one) == Some("replica-0")));
        assert_eq!(owner("db-1", &[]), None);
    }

    #[test]
    fn the_answer_is_the_same_whatever_the_order() {
        let a = ids(5);
        let mut b = a.clone();
        b.reverse();
        for i in items() {
            assert_eq!(owner(&i, &a), owner(&i, &b));
        }
    }

    #[test]
    fn items_spread_evenly() {
        let r = ids(3);
        let mut count = [0usize; 3];
        for i in items() {
            let o = owner(&i, &r).unwrap();
            count[r.iter().position(|x| x == o).unwrap()] += 1;
        }
        for c in count {
            assert!((150..=250).contains(&c), "{count:?}");
        }
    }

    #[test]
    fn a_leaving_replica_moves_only_its_own_items() {
        let all = ids(4);
        let without: Vec<String> = all.iter().filter(|r| *r != "replica-2").cloned().collect();
        let mut moved = 0;
        for i in items() {
            let before = owner(&i, &all).unwrap();
            let after = owner(&i, &without).unwrap();
            if before == "replica-2" {
                moved += 1;
            } else {
                assert_eq!(before, after, "{i} moved though its owner stayed");
            }
        }
        assert!(moved > 100, "{moved}");
    }

    #[test]
    fn the_weights_are_fixed() {
        // A change of hash would make replicas of two builds disagree.
        assert_eq!(owner("db-1", &ids(3)), owner("db-1", &ids(3)));
        assert_eq!(weight(&["a", "b"]), weight(&["a", "b"]));
        assert_ne!(weight(&["ab", ""]), weight(&["a", "b"]));
        assert_eq!(weight(&["replica-0", "db-1"]), 0x6def_6613_f7a3_c412);
    }
}
