//! Whether the TSA may trust its clock.
//!
//! The TSA states an accuracy (one second by default) and must not stamp
//! when it cannot keep it. It knows two things:
//! - the operating system's own verdict: on Linux, `timedatectl`'s
//!   synchronisation flag is mirrored by systemd-timesyncd in
//!   `/run/systemd/timesync/synchronized`; when `require_sync_file` names
//!   such a file, its absence means "not synchronised";
//! - its own observation: the wall clock may only advance as the monotonic
//!   clock does. A step of the wall clock larger than the stated accuracy
//!   (someone set the time, a VM was restored from a snapshot) makes the
//!   clock untrusted until the TSA is restarted by an operator, who is
//!   expected to check the time source first.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::request::{FailureInfo, Rejection};

#[derive(Debug)]
pub struct ClockGuard {
    accuracy: Duration,
    require_sync_file: Option<PathBuf>,
    anchor: Mutex<(Instant, SystemTime)>,
    stepped: AtomicBool,
}

impl ClockGuard {
    pub fn new(accuracy: Duration, require_sync_file: Option<PathBuf>) -> Self {
        Self {
            accuracy,
            require_sync_file,
            anchor: Mutex::new((Instant::now(), SystemTime::now())),
            stepped: AtomicBool::new(false),
        }
    }

    /// `Ok` when a token may carry the current time.
    pub fn check(&self) -> Result<(), Rejection> {
        let unavailable = |why: &str| Err(Rejection::new(FailureInfo::TimeNotAvailable, why));
        if self.stepped.load(Ordering::Relaxed) {
            return unavailable("the clock was stepped; the TSA waits for an operator");
        }
        if let Some(f) = &self.require_sync_file {
            if !f.exists() {
                return unavailable("the system clock is not synchronised");
            }
        }
        let mut anchor = self
            .anchor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mono, wall) = *anchor;
        let expected = wall + mono.elapsed();
        let now = SystemTime::now();
        let drift = match now.duration_since(expected) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        if drift > self.accuracy {
            self.stepped.store(true, Ordering::Relaxed);
            tracing::error!(
                drift_ms = drift.as_millis() as u64,
                "wall clock stepped; time-stamping suspended"
            );
            return unavailable("the clock was stepped; the TSA waits for an operator");
        }
        // Re-anchor so slow NTP slewing (well under the accuracy per
        // interval) is not mistaken for a step.
        *anchor = (Instant::now(), now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_clock_is_trusted_and_missing_sync_flag_is_not() {
        let g = ClockGuard::new(Duration::from_secs(1), None);
        assert!(g.check().is_ok());
        let g = ClockGuard::new(
            Duration::from_secs(1),
            Some("/nonexistent/synchronized".into()),
        );
        assert_eq!(
            g.check().unwrap_err().failure,
            FailureInfo::TimeNotAvailable
        );
    }

    #[test]
    fn a_step_suspends_stamping() {
        let g = ClockGuard::new(Duration::from_secs(1), None);
        // Pretend the wall clock was an hour behind when last seen.
        *g.anchor.lock().unwrap() = (
            Instant::now(),
            SystemTime::now() - Duration::from_secs(3600),
        );
        assert_eq!(
            g.check().unwrap_err().failure,
            FailureInfo::TimeNotAvailable
        );
        assert!(g.check().is_err(), "stays suspended");
    }
}
