//! In-memory maps whose entries expire (sign-in challenges), swept
//! for expired entries now and then rather than on every insertion: a
//! sweep walks the whole map, and at thousands of sign-ins a second a
//! sweep per sign-in would cost more than the sign-in itself. Lookups
//! check expiry themselves, so an entry not yet swept is never used.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

/// How often the map is swept at most (unless it reaches its bound).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

pub struct ExpiringMap<V> {
    entries: HashMap<String, V>,
    next_sweep: Option<Instant>,
}

impl<V> Default for ExpiringMap<V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            next_sweep: None,
        }
    }
}

impl<V> ExpiringMap<V> {
    /// Drops the entries `live` rejects, if a sweep is due or the map holds
    /// `bound` entries or more.
    pub fn sweep(&mut self, now: Instant, bound: usize, live: impl FnMut(&V) -> bool) {
        let due = self.next_sweep.is_none_or(|at| now >= at);
        if due || self.entries.len() >= bound {
            let mut live = live;
            self.entries.retain(|_, v| live(v));
            self.next_sweep = Some(now + SWEEP_EVERY);
        }
    }
}

impl<V> Deref for ExpiringMap<V> {
    type Target = HashMap<String, V>;
    fn deref(&self) -> &Self::Target {
        &self.entries
    }
}

impl<V> DerefMut for ExpiringMap<V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_when_due_or_full_only() {
        let mut map = ExpiringMap::default();
        let t0 = Instant::now();
        map.insert("a".into(), 1);
        map.sweep(t0, 10, |v| *v > 1);
        assert!(map.is_empty(), "the first sweep is due");
        map.insert("b".into(), 1);
        map.sweep(t0, 10, |v| *v > 1);
        assert_eq!(map.len(), 1, "not due again yet");
        map.sweep(t0, 1, |v| *v > 1);
        assert!(map.is_empty(), "at its bound the map is swept anyway");
        map.insert("c".into(), 1);
        map.sweep(t0 + SWEEP_EVERY, 10, |v| *v > 1);
        assert!(map.is_empty(), "due again after SWEEP_EVERY");
    }
}
