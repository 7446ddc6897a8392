//! The refresh-token journal on SQLite and on PostgreSQL (a fresh database
//! on 127.0.0.1:5432 per test): concurrent requests share transactions, and
//! still a token rotates at most once and a code gives at most one token.

use std::sync::Arc;

use kexin_ca::storage::Database;
use kexin_identity::clients;
use kexin_identity::codes::{code_key, new_code, PendingCode};
use kexin_identity::refresh::{
    NewGrant, Redemption, RefreshJournal, CODE_REFUSED, REFRESH_TTL, VERIFIER_REFUSED,
};
use kexin_test_support::{on_both_backends, BackendFixture};

on_both_backends!(
    concurrent_presentations_rotate_each_token_once,
    a_token_rotates_only_for_its_client_and_before_it_expires,
    a_code_gives_one_token_to_its_client_with_its_verifier_before_it_expires,
);

async fn client(db: &Database, name: &str) -> String {
    clients::register(
        db,
        name,
        &["https://rp.example/cb".into()],
        None,
        None,
        None,
    )
    .await
    .unwrap()
    .0
    .client_id
}

fn grant(token: &str, client_id: &str, expires_at: i64) -> NewGrant {
    NewGrant {
        token_sha256: format!("h-{token}"),
        family: format!("sid:{token}"),
        client_id: client_id.into(),
        subject: format!("subject-{token}"),
        claims: r#"{"name":"张三"}"#.into(),
        scope: "openid".into(),
        expires_at,
    }
}

async fn state(db: &Database, hash: &str) -> Option<String> {
    sqlx::query_scalar("SELECT state FROM oidc_refresh_tokens WHERE token_sha256 = $1")
        .bind(hash)
        .fetch_optional(db.pool())
        .await
        .unwrap()
}

async fn concurrent_presentations_rotate_each_token_once(f: BackendFixture) {
    let id = client(&f.db, "档案系统").await;
    let journal = Arc::new(RefreshJournal::new(&f.db));
    let later = kexin_ca::issuance::now() + REFRESH_TTL;
    let issued: Vec<_> = (0..30)
        .map(|i| {
            let (journal, id) = (journal.clone(), id.clone());
            tokio::spawn(async move { journal.issue(grant(&i.to_string(), &id, later)).await })
        })
        .collect();
    for t in issued {
        t.await.unwrap().unwrap();
    }
    // Every token presented twice at once (a replay racing the owner).
    let presented: Vec<_> = (0..60)
        .map(|n| {
            let (journal, id) = (journal.clone(), id.clone());
            let token = n % 30;
            tokio::spawn(async move {
                let grant = journal
                    .rotate(format!("h-{token}"), id, format!("h-{token}-next-{n}"))
                    .await
                    .unwrap();
                (token, n, grant)
            })
        })
        .collect();
    let mut winners = vec![Vec::new(); 30];
    for t in presented {
        let (token, n, grant) = t.await.unwrap();
        if let Some(g) = grant {
            assert_eq!(g.family, format!("sid:{token}"));
            assert_eq!(g.subject, format!("subject-{token}"));
            assert_eq!(g.claims, r#"{"name":"张三"}"#);
            winners[token].push(n);
        }
    }
    for (token, won) in winners.iter().enumerate() {
        assert_eq!(won.len(), 1, "token {token} rotated {} times", won.len());
        assert_eq!(
            state(&f.db, &format!("h-{token}")).await.as_deref(),
            Some("rotated")
        );
        let successor = format!("h-{token}-next-{}", won[0]);
        assert_eq!(state(&f.db, &successor).await.as_deref(), Some("active"));
        let lost = if won[0] == token { token + 30 } else { token };
        assert_eq!(state(&f.db, &format!("h-{token}-next-{lost}")).await, None);
    }
    // The successor rotates in turn, carrying the same grant.
    let next = journal
        .rotate(
            format!("h-0-next-{}", winners[0][0]),
            id,
            "h-0-third".into(),
        )
        .await
        .unwrap()
        .expect("the successor is active");
    assert_eq!(next.family, "sid:0");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM oidc_refresh_tokens")
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    assert_eq!(count, 30 + 30 + 1);
}

async fn a_token_rotates_only_for_its_client_and_before_it_expires(f: BackendFixture) {
    let mine = client(&f.db, "档案系统").await;
    let theirs = client(&f.db, "审批系统").await;
    let journal = RefreshJournal::new(&f.db);
    let now = kexin_ca::issuance::now();
    journal
        .issue(grant("live", &mine, now + 600))
        .await
        .unwrap();
    journal.issue(grant("old", &mine, now - 1)).await.unwrap();
    let stolen = journal
        .rotate("h-live".into(), theirs, "h-stolen".into())
        .await
        .unwrap();
    assert!(stolen.is_none(), "another client cannot rotate the token");
    assert_eq!(state(&f.db, "h-live").await.as_deref(), Some("active"));
    assert_eq!(state(&f.db, "h-stolen").await, None);
    let expired = journal
        .rotate("h-old".into(), mine.clone(), "h-old-next".into())
        .await
        .unwrap();
    assert!(expired.is_none(), "an expired token does not rotate");
    assert_eq!(state(&f.db, "h-old-next").await, None);
    assert!(journal
        .rotate("h-live".into(), mine, "h-live-next".into())
        .await
        .unwrap()
        .is_some());
}

/// RFC 7636's example verifier and its S256 challenge.
const VERIFIER_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A stored code for `client_id` in the session `sid-1`.
async fn code(db: &Database, client_id: &str) -> (String, PendingCode) {
    let pending = PendingCode {
        client_id: client_id.into(),
        redirect_uri: "https://rp.example/cb".into(),
        code_challenge: VERIFIER_CHALLENGE.into(),
        nonce: Some("n-0S6_WzA2Mj".into()),
        scope: "openid".into(),
        subject: "subject-1".into(),
        claims: serde_json::json!({ "name": "张三" }),
        session: "sid-1".into(),
    };
    let (code, row) = new_code(&pending).unwrap();
    let mut connection = db.pool().acquire().await.unwrap();
    kexin_ca::storage::rows::insert(&mut connection, &[&row])
        .await
        .unwrap();
    (code, pending)
}

fn redemption(code: &str, client_id: &str, n: usize) -> Redemption {
    Redemption {
        code_key: code_key(code),
        client_id: client_id.into(),
        redirect_uri: "https://rp.example/cb".into(),
        verifier_challenge: VERIFIER_CHALLENGE.into(),
        refresh_sha256: format!("r-{n}"),
        family_suffix: format!("f{n}"),
    }
}

async fn codes_left(db: &Database) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM oidc_codes")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

async fn a_code_gives_one_token_to_its_client_with_its_verifier_before_it_expires(
    f: BackendFixture,
) {
    let mine = client(&f.db, "档案系统").await;
    let theirs = client(&f.db, "审批系统").await;
    let journal = Arc::new(RefreshJournal::new(&f.db));

    // Ten presentations of one code at once: one token.
    let (good, pending) = code(&f.db, &mine).await;
    let presented: Vec<_> = (0..10)
        .map(|n| {
            let (journal, r) = (journal.clone(), redemption(&good, &mine, n));
            tokio::spawn(async move { journal.redeem(r).await.unwrap() })
        })
        .collect();
    let mut given = Vec::new();
    for (n, p) in presented.into_iter().enumerate() {
        match p.await.unwrap() {
            Ok(p) => {
                assert_eq!(p, pending);
                given.push(n);
            }
            Err(why) => assert_eq!(why, CODE_REFUSED),
        }
    }
    assert_eq!(given.len(), 1, "{given:?}");
    assert_eq!(
        state(&f.db, &format!("r-{}", given[0])).await.as_deref(),
        Some("active")
    );
    let family: String =
        sqlx::query_scalar("SELECT family FROM oidc_refresh_tokens WHERE token_sha256 = $1")
            .bind(format!("r-{}", given[0]))
            .fetch_one(f.db.pool())
            .await
            .unwrap();
    assert_eq!(family, format!("sid-1:f{}", given[0]));

    // Another client's code, a wrong redirect URI or verifier, an expired
    // code: no token, and the code is spent all the same.
    let (stolen, _) = code(&f.db, &mine).await;
    let refused = journal
        .redeem(redemption(&stolen, &theirs, 20))
        .await
        .unwrap();
    assert_eq!(refused, Err(CODE_REFUSED));
    let (elsewhere, _) = code(&f.db, &mine).await;
    let mut r = redemption(&elsewhere, &mine, 21);
    r.redirect_uri = "https://evil.example/cb".into();
    assert_eq!(journal.redeem(r).await.unwrap(), Err(CODE_REFUSED));
    let (guessed, _) = code(&f.db, &mine).await;
    let mut r = redemption(&guessed, &mine, 22);
    r.verifier_challenge = "x".repeat(43);
    assert_eq!(journal.redeem(r).await.unwrap(), Err(VERIFIER_REFUSED));
    let (old, _) = code(&f.db, &mine).await;
    sqlx::query("UPDATE oidc_codes SET expires_at = $1 WHERE code_key = $2")
        .bind(kexin_ca::issuance::now())
        .bind(code_key(&old))
        .execute(f.db.pool())
        .await
        .unwrap();
    let expired = journal.redeem(redemption(&old, &mine, 23)).await.unwrap();
    assert_eq!(expired, Err(CODE_REFUSED));
    assert_eq!(codes_left(&f.db).await, 0);
    for n in 20..24 {
        assert_eq!(state(&f.db, &format!("r-{n}")).await, None);
    }
    // Each spent code stays spent, even for its own client.
    let replayed = journal
        .redeem(redemption(&stolen, &mine, 24))
        .await
        .unwrap();
    assert_eq!(replayed, Err(CODE_REFUSED));
}
