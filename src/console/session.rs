//! Console sessions: random identifiers bound to a client certificate,
//! with idle and absolute expiry. The CSRF token is per session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(15 * 60);
/// A session ends this long after sign-in however busy it is.
pub const ABSOLUTE: Duration = Duration::from_secs(8 * 3600);

struct Session {
    serial: String,
    csrf: String,
    created: Instant,
    last_seen: Instant,
}

#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

impl Sessions {
    /// Starts a session for the certificate `serial`; returns its id.
    pub fn create(&self, serial: &str) -> Result<String, kexin_ca::Error> {
        let (id, csrf) = (random_token()?, random_token()?);
        let now = Instant::now();
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| live(s, now));
        map.insert(
            id.clone(),
            Session {
                serial: serial.to_owned(),
                csrf,
                created: now,
                last_seen: now,
            },
        );
        Ok(id)
    }

    /// The CSRF token of session `id` if it is live and belongs to the
    /// certificate `serial`; marks it used.
    pub fn touch(&self, id: &str, serial: &str) -> Option<String> {
        let now = Instant::now();
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let s = map.get_mut(id)?;
        if !live(s, now) {
            map.remove(id);
            return None;
        }
        if s.serial != serial {
            return None;
        }
        s.last_seen = now;
        Some(s.csrf.clone())
    }

    pub fn end(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_seen) < IDLE && now.duration_since(s.created) < ABSOLUTE
}

fn random_token() -> Result<String, kexin_ca::Error> {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| kexin_ca::Error::Crypto("no randomness".into()))?;
    Ok(hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_belongs_to_one_certificate_and_ends() {
        let sessions = Sessions::default();
        let id = sessions.create("aa").unwrap();
        assert!(sessions.touch(&id, "bb").is_none());
        assert!(sessions.touch(&id, "aa").is_some());
        sessions.end(&id);
        assert!(sessions.touch(&id, "aa").is_none());
        let id = sessions.create("aa").unwrap();
        if let Some(long_ago) = Instant::now().checked_sub(IDLE) {
            sessions.0.lock().unwrap().get_mut(&id).unwrap().last_seen = long_ago;
            assert!(sessions.touch(&id, "aa").is_none(), "idle session lived on");
        }
    }
}
