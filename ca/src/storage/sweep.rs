//! Deleting expired rows in the background, now and then: rows keyed by
//! their issue time (12 hex digits of milliseconds first, as codes and
//! claims of stamped tokens are) are deleted by the key's order, so their
//! table needs no index besides its key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{storage, Database};
use crate::secrets::now_ms;
use crate::Error;

/// When a sweep is next due: once in its period at most, whichever of
/// many callers asks first.
pub struct SweepSchedule {
    every: Duration,
    /// Unix milliseconds.
    next: AtomicU64,
}

impl SweepSchedule {
    /// The first sweep is due `every` from now.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            next: AtomicU64::new(now_ms() + every.as_millis() as u64),
        }
    }

    /// Whether a sweep is due now; true for one caller per period.
    pub fn due(&self) -> bool {
        let (now, due) = (now_ms(), self.next.load(Ordering::Relaxed));
        now >= due
            && self
                .next
                .compare_exchange(
                    due,
                    now + self.every.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

/// Deletes up to `at_most` rows of `table` whose time-ordered `key` sorts
/// before `before` (12 hex digits of milliseconds).
pub async fn delete_keys_before(
    db: &Database,
    table: &'static str,
    key: &'static str,
    before: &str,
    at_most: i64,
) -> Result<(), Error> {
    sqlx::query(&format!(
        "DELETE FROM {table} WHERE {key} IN \
         (SELECT {key} FROM {table} WHERE {key} < $1 ORDER BY {key} LIMIT $2)"
    ))
    .bind(before)
    .bind(at_most)
    .execute(db.pool())
    .await
    .map_err(storage)?;
    Ok(())
}
