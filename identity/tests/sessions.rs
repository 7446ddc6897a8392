//! SSO sessions in the database, on SQLite and on PostgreSQL (a fresh
//! database on 127.0.0.1:5432 per test): a session starts in its audit
//! entry's transaction, is found while live, collects the systems that
//! take part (concurrently too), ends once, and ended sessions and expired
//! codes are swept.

use std::sync::Arc;

use kexin_ca::audit::{AuditEvent, AuditLog, ChainStatus};
use kexin_ca::issuance::now;
use kexin_ca::storage::Database;
use kexin_identity::provider::{Official, SessionLifetimes};
use kexin_identity::sessions::Sessions;
use kexin_test_support::{on_both_backends, BackendFixture};

on_both_backends!(
    a_session_starts_with_its_audit_entry_collects_systems_and_ends_once,
    use_moves_a_session_end_on_up_to_its_absolute_lifetime,
    ended_sessions_are_not_found_and_are_swept,
);

fn official() -> Official {
    Official::from_certificate("CN=张三,O=省政府", Some("张三"), Some("省政府"), "0a1b")
}

/// Starts a session under `sid` as a sign-in does: its row in the
/// transaction of its audit entry.
async fn start(db: &Database, sessions: &Sessions, sid: &str, client: Option<&str>) {
    let row = sessions.start(sid.to_owned(), &official(), client);
    AuditLog::new(db.clone())
        .append_unflushed_with(
            AuditEvent {
                actor: "official:test",
                action: "sso.login",
                target: "signed-challenge",
                source: "127.0.0.1",
                detail: serde_json::json!({}),
            },
            vec![row],
        )
        .await
        .unwrap();
}

async fn set(db: &Database, sid: &str, created: i64, expires_at: i64) {
    sqlx::query("UPDATE oidc_sessions SET created = $1, expires_at = $2 WHERE sid = $3")
        .bind(created)
        .bind(expires_at)
        .bind(sid)
        .execute(db.pool())
        .await
        .unwrap();
}

async fn expires_at(db: &Database, sid: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT expires_at FROM oidc_sessions WHERE sid = $1")
        .bind(sid)
        .fetch_optional(db.pool())
        .await
        .unwrap()
}

async fn a_session_starts_with_its_audit_entry_collects_systems_and_ends_once(f: BackendFixture) {
    let sessions = Arc::new(Sessions::new(f.db.clone(), Default::default()));
    assert!(sessions.find("s1").await.unwrap().is_none());
    start(&f.db, &sessions, "s1", Some("kx-first")).await;
    let found = sessions.find("s1").await.unwrap().expect("a live session");
    assert_eq!(found.official.subject, official().subject);
    assert_eq!(found.official.claims, official().claims);
    match AuditLog::new(f.db.clone()).verify().await.unwrap() {
        ChainStatus::Intact { entries, .. } => assert_eq!(entries, 1),
        broken => panic!("{broken:?}"),
    }
    // Ten systems joining at once are all kept; joining twice counts once.
    let joins: Vec<_> = (0..10)
        .map(|i| {
            let sessions = sessions.clone();
            tokio::spawn(async move { sessions.join("s1", &format!("kx-{i}")).await })
        })
        .collect();
    for join in joins {
        assert!(join.await.unwrap().unwrap());
    }
    assert!(sessions.join("s1", "kx-first").await.unwrap());
    assert!(sessions.join("s1", "kx-3").await.unwrap());
    assert!(!sessions.join("no-such-session", "kx-1").await.unwrap());

    let ended = sessions.end("s1").await.unwrap().expect("it was live");
    assert_eq!(ended.subject, official().subject);
    let mut clients = ended.clients.clone();
    clients.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("kx-{i}")).collect();
    expected.push("kx-first".into());
    expected.sort();
    assert_eq!(clients, expected);
    assert!(sessions.find("s1").await.unwrap().is_none());
    assert!(sessions.end("s1").await.unwrap().is_none(), "ends once");
    assert!(!sessions.join("s1", "kx-late").await.unwrap());
}

async fn use_moves_a_session_end_on_up_to_its_absolute_lifetime(f: BackendFixture) {
    let lifetimes = SessionLifetimes {
        idle: std::time::Duration::from_secs(1200),
        absolute: std::time::Duration::from_secs(7200),
    };
    let sessions = Sessions::new(f.db.clone(), lifetimes);
    let (idle, absolute) = (1200, 7200);
    start(&f.db, &sessions, "fresh", None).await;
    let fresh_end = expires_at(&f.db, "fresh").await.unwrap();
    assert!((fresh_end - (now() + idle)).abs() <= 2, "{fresh_end}");

    // Idle for a while: a use moves its end to a full idle time from now.
    let t = now();
    set(&f.db, "fresh", t - 600, t + idle - 600).await;
    let live = sessions.find("fresh").await.unwrap().unwrap();
    sessions.touch("fresh", &live).await.unwrap();
    let moved = expires_at(&f.db, "fresh").await.unwrap();
    assert!((moved - (now() + idle)).abs() <= 2, "{moved}");

    // Near its absolute end, a use moves it no further than that.
    let created = t - absolute + 100;
    set(&f.db, "fresh", created, t + 20).await;
    let live = sessions.find("fresh").await.unwrap().unwrap();
    sessions.touch("fresh", &live).await.unwrap();
    assert_eq!(expires_at(&f.db, "fresh").await, Some(created + absolute));
}

async fn ended_sessions_are_not_found_and_are_swept(f: BackendFixture) {
    let sessions = Sessions::new(f.db.clone(), Default::default());
    for sid in ["ended-1", "ended-2", "live"] {
        start(&f.db, &sessions, sid, Some("kx-a")).await;
    }
    // Found live a while after its last use, then ended before the use
    // is written: the write does not revive it.
    let t = now();
    let idle = SessionLifetimes::default().idle.as_secs() as i64;
    set(&f.db, "ended-2", t - 600, t + idle - 600).await;
    let seen = sessions.find("ended-2").await.unwrap().unwrap();
    set(&f.db, "ended-1", t - 100, t).await;
    set(&f.db, "ended-2", t - 100, t - 1).await;
    sessions.touch("ended-2", &seen).await.unwrap();
    for sid in ["ended-1", "ended-2"] {
        assert!(sessions.find(sid).await.unwrap().is_none(), "{sid}");
        assert!(!sessions.join(sid, "kx-b").await.unwrap(), "{sid}");
    }
    assert_eq!(
        expires_at(&f.db, "ended-2").await,
        Some(t - 1),
        "not revived"
    );
    // Codes: one issued two minutes ago (its key begins with its issue
    // time) is swept, a fresh one is not.
    for n in 0..2 {
        let (_, row) = kexin_identity::codes::new_code(&kexin_identity::codes::PendingCode {
            client_id: "kx-a".into(),
            redirect_uri: "https://rp.example/cb".into(),
            code_challenge: "c".repeat(43),
            nonce: None,
            scope: "openid".into(),
            subject: official().subject,
            claims: official().claims,
            session: format!("code-session-{n}"),
        })
        .unwrap();
        let mut connection = f.db.pool().acquire().await.unwrap();
        kexin_ca::storage::rows::insert(&mut connection, &[&row])
            .await
            .unwrap();
    }
    sqlx::query("UPDATE oidc_codes SET code_key = $1 WHERE sid = 'code-session-0'")
        .bind(format!("{:012x}{}", (t - 120) * 1000, "0".repeat(20)))
        .execute(f.db.pool())
        .await
        .unwrap();
    // Claims of answered challenges: kept for 3 minutes after the
    // challenge's issue (its 2 minutes and the nodes' clock skew).
    for age in [240, 150] {
        sqlx::query("INSERT INTO oidc_spent_challenges (challenge_key) VALUES ($1)")
            .bind(format!("{:012x}{}", (t - age) * 1000, "0".repeat(32)))
            .execute(f.db.pool())
            .await
            .unwrap();
    }
    // (A sweep the starts began in the background may have been first.)
    sessions.sweep().await.unwrap();
    let claims: Vec<String> = sqlx::query_scalar("SELECT challenge_key FROM oidc_spent_challenges")
        .fetch_all(f.db.pool())
        .await
        .unwrap();
    assert_eq!(
        claims,
        vec![format!("{:012x}{}", (t - 150) * 1000, "0".repeat(32))]
    );
    assert_eq!(expires_at(&f.db, "ended-2").await, None);
    let codes: Vec<String> = sqlx::query_scalar("SELECT sid FROM oidc_codes")
        .fetch_all(f.db.pool())
        .await
        .unwrap();
    assert_eq!(codes, vec!["code-session-1".to_owned()]);
    assert_eq!(expires_at(&f.db, "ended-1").await, None);
    assert!(sessions.find("live").await.unwrap().is_some());
    assert!(sessions.end("ended-2").await.unwrap().is_none());
}
