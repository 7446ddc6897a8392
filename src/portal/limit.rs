//! How many checks a client of the verify portal may ask for: 20 a minute.
//!
//! On PostgreSQL, where several nodes may serve one instance, checks are
//! counted in the database, in fixed minutes, so that a client behind a
//! balancer gets one allowance and not one per node. The table is
//! `UNLOGGED`: a count need not survive a crash, and so costs no WAL. On
//! SQLite (one node), and whenever the database does not answer, they are
//! counted in this node's memory, in a minute from the client's first
//! check.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kexin_ca::storage::sweep::SweepSchedule;
use kexin_ca::storage::{Backend, Database};

const PER_MINUTE: u32 = 20;

/// Checks per client in the current minute.
#[derive(Default)]
pub struct RateLimit {
    here: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    shared: Option<Shared>,
}

struct Shared {
    db: Database,
    /// Counts of minutes past are deleted once a minute, by one request.
    sweep: SweepSchedule,
}

impl RateLimit {
    /// Counts in `db` when other nodes can reach it too.
    pub fn new(db: &Database) -> Self {
        Self {
            here: Mutex::default(),
            shared: (db.backend() == Backend::Postgres).then(|| Shared {
                db: db.clone(),
                sweep: SweepSchedule::new(Duration::from_secs(60)),
            }),
        }
    }

    /// Counts a check by the client at `ip`; whether it is within the
    /// allowance.
    pub async fn allow(&self, ip: IpAddr) -> bool {
        let client = client(ip);
        if let Some(shared) = &self.shared {
            match shared.count(client).await {
                Ok(checks) => return checks <= i64::from(PER_MINUTE),
                Err(e) => {
                    tracing::warn!(error = %e, "portal checks counted on this node only");
                }
            }
        }
        self.allow_here(client)
    }

    fn allow_here(&self, client: IpAddr) -> bool {
        let now = Instant::now();
        let mut map = self.here.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let entry = map.entry(client).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(60) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= PER_MINUTE
    }
}

impl Shared {
    /// Counts a check by `client` in the current minute; the minute's count.
    async fn count(&self, client: IpAddr) -> Result<i64, sqlx::Error> {
        let minute = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() / 60)
            .unwrap_or(0) as i64;
        if self.sweep.due() {
            let db = self.db.clone();
            tokio::spawn(async move {
                let swept = sqlx::query("DELETE FROM portal_checks WHERE minute < $1")
                    .bind(minute)
                    .execute(db.pool())
                    .await;
                if let Err(e) = swept {
                    tracing::warn!(error = %e, "past portal counts could not be deleted");
                }
            });
        }
        sqlx::query_scalar(
            "INSERT INTO portal_checks (client, minute, checks) VALUES ($1, $2, 1) \
             ON CONFLICT (client, minute) DO UPDATE SET checks = portal_checks.checks + 1 \
             RETURNING checks",
        )
        .bind(client.to_string())
        .bind(minute)
        .fetch_one(self.db.pool())
        .await
    }
}

/// Whom a request is counted against: an IPv4 address (also when it
/// arrives IPv4-mapped), or an IPv6 /64, the network one subscriber gets:
/// within it a client picks any address it likes, and counting addresses
/// would give it 2^64 allowances.
fn client(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(network.into())
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ipv6_network_shares_one_allowance_and_mapped_ipv4_is_ipv4() {
        let limit = RateLimit::default();
        let address =
            |host: u16| -> IpAddr { format!("2001:db8:1:2:{host:x}::1").parse().unwrap() };
        for n in 0..PER_MINUTE as u16 {
            assert!(limit.allow(address(n)).await);
        }
        assert!(
            !limit.allow(address(999)).await,
            "a new address in the /64 was a new client"
        );
        assert!(limit.allow("2001:db8:1:3::1".parse().unwrap()).await);

        for _ in 0..PER_MINUTE {
            assert!(limit.allow("192.0.2.7".parse().unwrap()).await);
        }
        assert!(!limit.allow("::ffff:192.0.2.7".parse().unwrap()).await);
    }
}
