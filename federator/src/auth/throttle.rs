//! Login throttling: per account and per source address, a delay that doubles
//! with each failure in a row.
//!
//! After the n-th failed login in a row for an account (or from an address), the
//! next attempt for it is refused until `initial × 2^(n−1)` has passed, capped at
//! `max` (defaults 1 s and 15 min: 1, 2, 4, … 512 s, then 900 s). A refused attempt
//! does not hash a password and does not extend the delay. A success clears the
//! account and the address. A key quiet for twice `max` after its last failure
//! starts over. Unknown user names are keyed like known ones, so a throttled
//! answer does not tell whether an account exists.
//!
//! The state is in memory, bounded by `max_keys` (past it the entries whose delay
//! has passed are dropped first, then the oldest).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// What is throttled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A user name as typed, lower-cased (whether or not the account exists).
    Account(String),
    /// A source address.
    Source(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    locked_until: Instant,
}

/// The throttle's state.
#[derive(Debug)]
pub struct Throttle {
    initial: Duration,
    max: Duration,
    max_keys: usize,
    entries: HashMap<Key, Entry>,
}

impl Throttle {
    pub fn new(initial: Duration, max: Duration, max_keys: usize) -> Throttle {
        Throttle {
            initial,
            max: max.max(initial),
            max_keys: max_keys.max(16),
            entries: HashMap::new(),
        }
    }

    /// The delay after `failures` failures in a row.
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// How long until an attempt for these keys is allowed (`None`: allowed now).
    pub fn check(&self, keys: &[Key], now: Instant) -> Option<Duration> {
        keys.iter()
            .filter_map(|k| self.entries.get(k))
            .filter(|e| e.locked_until > now)
            .map(|e| e.locked_until - now)
            .max()
    }

    /// Records a failed attempt for each key; returns the longest delay now set.
    pub fn failed(&mut self, keys: &[Key], now: Instant) -> Duration {
        let quiet = self.max.saturating_mul(2);
        let mut longest = Duration::ZERO;
        for k in keys {
            let e = self.entries.entry(k.clone()).or_insert(Entry {
                failures: 0,
                last_failure: now,
                locked_until: now,
            });
            if now.saturating_duration_since(e.last_failure) > quiet {
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            e.last_failure = now;
            let failures = e.failures;
            let d = self.delay(failures);
            if let Some(e) = self.entries.get_mut(k) {
                e.locked_until = now + d;
            }
            longest = longest.max(d);
        }
        self.bound(now);
        longest
    }

    /// Clears the keys after a successful login.
    pub fn succeeded(&mut self, keys: &[Key]) {
        for k in keys {
            self.entries.remove(k);
        }
    }

    /// Failures in a row recorded for `key`.
    pub fn failures(&self, key: &Key) -> u32 {
        self.entries.get(key).map_or(0, |e| e.failures)
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn bound(&mut self, now: Instant) {
        if self.entries.len() <= self.max_keys {
            return;
        }
        let quiet = self.max.saturating_mul(2);
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last_failure) <= quiet);
        if self.entries.len() > self.max_keys {
            self.entries.retain(|_, e| e.locked_until > now);
        }
        while self.entries.len() > self.max_keys {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_failure)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(user: &str) -> Vec<Key> {
        vec![
            Key::Account(user.to_owned()),
            Key::Source("192.0.2.7".parse().unwrap()),
        ]
    }

    #[test]
    fn a_thousand_failures_double_the_delay_from_one_second_to_fifteen_minutes() {
        let mut t = Throttle::new(Duration::from_secs(1), Duration::from_secs(900), 1000);
        let k = keys("admin");
        let mut now = Instant::now();
        let mut delays = Vec::new();
        let mut refused = 0;
        for _ in 0..1000 {
            match t.check(&k, now) {
                Some(wait) => {
                    refused += 1;
                    // A refused attempt changes nothing; move on to the end of the wait.
                    assert!(t.check(&k, now).is_some());
                    now += wait;
                }
                None => {
                    delays.push(t.failed(&k, now).as_secs());
                }
            }
        }
        assert_eq!(
            &delays[..12],
            &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]
        );
        assert!(delays[12..].iter().all(|&d| d == 900));
        assert_eq!(delays.len() + refused, 1000);
        // One more failure locks for the longest delay; once it has passed, an
        // attempt is allowed again.
        if t.check(&k, now).is_none() {
            t.failed(&k, now);
        }
        let wait = t.check(&k, now).unwrap();
        assert_eq!(wait, Duration::from_secs(900));
        assert!(t.check(&k, now + wait).is_none());
        t.succeeded(&k);
        assert!(t.check(&k, now).is_none());
        assert_eq!(t.failures(&k[0]), 0);
    }

    #[test]
    fn unknown_and_known_accounts_are_throttled_alike_and_sources_count_across_accounts() {
        let mut t = Throttle::new(Duration::from_secs(1), Duration::from_secs(900), 1000);
        let now = Instant::now();
        let a = t.failed(&keys("exists"), now);
        let b = t.failed(&[Key::Account("nobody".into())], now);
        assert_eq!(a, b);
        // The address failed once already (with "exists"): another account from it
        // waits too.
        assert!(
            t.check(
                &[
                    Key::Account("third".into()),
                    Key::Source("192.0.2.7".parse().unwrap())
                ],
                now
            )
            .is_some()
        );
    }

    #[test]
    fn a_long_quiet_period_starts_over_and_the_map_is_bounded() {
        let mut t = Throttle::new(Duration::from_secs(1), Duration::from_secs(4), 16);
        let mut now = Instant::now();
        let k = [Key::Account("a".into())];
        for _ in 0..5 {
            t.failed(&k, now);
            now += Duration::from_secs(5);
        }
        assert_eq!(t.failures(&k[0]), 5);
        now += Duration::from_secs(60);
        assert_eq!(t.failed(&k, now), Duration::from_secs(1));
        for i in 0..100 {
            t.failed(&[Key::Account(format!("u{i}"))], now);
        }
        assert!(t.len() <= 16, "{}", t.len());
    }
}
