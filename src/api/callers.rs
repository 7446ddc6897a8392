//! API callers recently confirmed against the database, so that a busy
//! caller's certificate is not looked up on every request.
//!
//! An entry is trusted for at most [`CONFIRMED_FOR`], and only while no
//! certificate was revoked, held or released through this process: a
//! revocation made here takes effect on the caller's next request, one made
//! by another process (`kexin cert revoke`, another node) within a second.
//! Only acceptances are kept; refusals are looked up (and audited) each time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kexin_ca::principal::Role;

pub const CONFIRMED_FOR: Duration = Duration::from_secs(1);

/// More entries than this and the cache starts over: it holds the callers
/// of the last second, a handful of officers and systems.
const MAX_ENTRIES: usize = 4096;

/// A caller as the database confirmed it: principal name and role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

#[derive(Default)]
pub struct ConfirmedCallers {
    entries: Mutex<HashMap<String, Confirmed>>,
}

struct Confirmed {
    at: Instant,
    generation: u64,
    principal: Principal,
}

impl ConfirmedCallers {
    /// The principal confirmed for certificate `serial`, if that was less
    /// than [`CONFIRMED_FOR`] ago and at status generation `generation`.
    pub fn get(&self, serial: &str, generation: u64) -> Option<Principal> {
        let entries = self.lock();
        let entry = entries.get(serial)?;
        (entry.generation == generation && entry.at.elapsed() < CONFIRMED_FOR)
            .then(|| entry.principal.clone())
    }

    /// Records that the database, read at status generation `generation`
    /// (taken before the read), said `serial` is issued to `principal`.
    pub fn confirm(&self, serial: &str, generation: u64, principal: Principal) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            serial.to_owned(),
            Confirmed {
                at: Instant::now(),
                generation,
                principal,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Confirmed>> {
        // Plain data: a panic elsewhere cannot leave it torn.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Principal {
        Principal {
            name: "alice".into(),
            role: Role::RaOfficer,
        }
    }

    #[test]
    fn a_confirmation_holds_only_for_its_generation() {
        let callers = ConfirmedCallers::default();
        assert_eq!(callers.get("0a", 3), None);
        callers.confirm("0a", 3, alice());
        assert_eq!(callers.get("0a", 3), Some(alice()));
        assert_eq!(callers.get("0b", 3), None);
        assert_eq!(callers.get("0a", 4), None, "a status changed since");
    }

    #[test]
    fn a_confirmation_expires() {
        let callers = ConfirmedCallers::default();
        callers.confirm("0a", 0, alice());
        callers.lock().get_mut("0a").unwrap().at -= CONFIRMED_FOR;
        assert_eq!(callers.get("0a", 0), None);
    }
}
