//! Fixtures shared by Kexin's tests. Every fixture is a real component:
//! a SoftHSM2 token, a PostgreSQL database, the `openssl` CLI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use kexin_hsm::SignatureAlgorithm;

pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const TOKEN_PIN: &str = "123456";
pub const TOKEN_SO_PIN: &str = "12345678";

/// A SoftHSM2 token in its own directory, with its own configuration file.
/// Processes see it through `SOFTHSM2_CONF`.
pub struct SoftHsm {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub label: String,
}

impl SoftHsm {
    pub fn new(label: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kexin-softhsm")
            .tempdir()
            .unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", label])
            .args(["--pin", TOKEN_PIN, "--so-pin", TOKEN_SO_PIN])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .expect("softhsm2-util runs (apt-get install softhsm2)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            dir,
            conf,
            label: label.to_owned(),
        }
    }

    /// `pkcs11-tool --list-objects` as the logged-in user (opensc).
    pub fn list_objects(&self) -> String {
        let out = Command::new("pkcs11-tool")
            .args(["--module", SOFTHSM_MODULE, "--token-label", &self.label])
            .args(["--login", "--pin", TOKEN_PIN, "--list-objects"])
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .expect("pkcs11-tool runs (apt-get install opensc)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// URL of a database to create test databases from.
pub fn postgres_admin_url() -> String {
    std::env::var("KEXIN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Creates an empty PostgreSQL database for one test and returns its URL.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    let admin = postgres_admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is needed for this test: {e}"));
    let name = format!("kexin_t_{}", unique());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap();
    format!("{base}/{name}")
}

fn unique() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `openssl` with `args`, returning (success, stdout + stderr).
pub fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Whether `openssl pkeyutl` accepts `sig` over `msg` under the DER
/// SubjectPublicKeyInfo `spki_der`. SM2 is checked with the GM/T default ID.
pub fn openssl_verifies(
    dir: &Path,
    spki_der: &[u8],
    alg: SignatureAlgorithm,
    msg: &[u8],
    sig: &[u8],
) -> bool {
    let n = unique();
    let (key, m, s) = (
        dir.join(format!("{n}.pub")),
        dir.join(format!("{n}.msg")),
        dir.join(format!("{n}.sig")),
    );
    std::fs::write(&key, spki_der).unwrap();
    std::fs::write(&m, msg).unwrap();
    std::fs::write(&s, sig).unwrap();
    let mut args: Vec<&str> = vec!["pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-rawin"];
    let paths = [
        "-inkey".to_owned(),
        key.display().to_string(),
        "-in".to_owned(),
        m.display().to_string(),
        "-sigfile".to_owned(),
        s.display().to_string(),
    ];
    args.extend(paths.iter().map(String::as_str));
    args.extend(match alg {
        SignatureAlgorithm::EcdsaSha256 | SignatureAlgorithm::RsaPkcs1Sha256 => {
            &["-digest", "sha256"][..]
        }
        SignatureAlgorithm::EcdsaSha384 => &["-digest", "sha384"][..],
        SignatureAlgorithm::RsaPssSha256 => &[
            "-digest",
            "sha256",
            "-pkeyopt",
            "rsa_padding_mode:pss",
            "-pkeyopt",
            "rsa_pss_saltlen:32",
        ][..],
        SignatureAlgorithm::Ed25519 => &[][..],
        SignatureAlgorithm::Sm2Sm3 => {
            &["-digest", "sm3", "-pkeyopt", "distid:1234567812345678"][..]
        }
    });
    openssl(&args).0
}

/// A database for one storage test: a fresh SQLite file in its own
/// directory, or a fresh PostgreSQL database on 127.0.0.1:5432.
pub struct BackendFixture {
    pub db: kexin_ca::storage::Database,
    _dir: tempfile::TempDir,
}

impl BackendFixture {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = kexin_ca::storage::Database::connect(&kexin_ca::storage::Database::sqlite_url(
            &dir.path().join("t.db"),
        ))
        .await
        .unwrap();
        assert_eq!(db.backend(), kexin_ca::storage::Backend::Sqlite);
        Self { db, _dir: dir }
    }

    pub async fn postgres() -> Self {
        let db = kexin_ca::storage::Database::connect(&fresh_postgres_database().await)
            .await
            .unwrap();
        assert_eq!(db.backend(), kexin_ca::storage::Backend::Postgres);
        Self {
            db,
            _dir: tempfile::tempdir().unwrap(),
        }
    }
}

/// Runs each named `async fn case(BackendFixture)` as two tests, one on
/// SQLite and one on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$case($crate::BackendFixture::sqlite().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$case($crate::BackendFixture::postgres().await).await;
            }
        }
    )*};
}
