//! Every signature either key store makes is checked by the `openssl` CLI,
//! an implementation that shares no code with the signer. SM2 signatures are
//! checked with the GM/T default user ID, so a wrong ID would fail.

use std::sync::{Arc, OnceLock};

use kexin_test_support::{openssl_verifies, SoftHsm, SOFTHSM_MODULE, TOKEN_PIN};

use kexin_hsm::{
    KdfParams, KeyAlgorithm, KeyKind, KeyStore, Pkcs11KeyStore, Pkcs11Settings, SignatureAlgorithm,
    SoftKeyStore, Zeroizing,
};

fn fast_kdf() -> KdfParams {
    KdfParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    }
}

fn schemes(alg: KeyAlgorithm) -> Vec<SignatureAlgorithm> {
    [
        SignatureAlgorithm::EcdsaSha256,
        SignatureAlgorithm::EcdsaSha384,
        SignatureAlgorithm::RsaPkcs1Sha256,
        SignatureAlgorithm::RsaPssSha256,
        SignatureAlgorithm::Ed25519,
        SignatureAlgorithm::Sm2Sm3,
    ]
    .into_iter()
    .filter(|s| alg.supports(*s))
    .collect()
}

fn check_every_scheme(store: &dyn KeyStore, algs: &[KeyAlgorithm], prefix: &str) {
    let dir = tempfile::tempdir().unwrap();
    for &alg in algs {
        let label = format!("{prefix}-{alg}");
        let public = store.generate(&label, alg).unwrap();
        assert_eq!(public.algorithm, alg);
        assert_eq!(store.public_key(&label).unwrap(), public);
        for scheme in schemes(alg) {
            let msg = format!("kexin {alg} {scheme}").into_bytes();
            let sig = store.sign(&label, scheme, &msg).unwrap();
            assert!(
                openssl_verifies(dir.path(), &public.spki_der, scheme, &msg, &sig),
                "openssl rejected {scheme} by {alg} from {}",
                store.backend()
            );
            assert!(
                !openssl_verifies(dir.path(), &public.spki_der, scheme, b"other message", &sig),
                "openssl accepted {scheme} over the wrong message"
            );
        }
        let wrong = if alg == KeyAlgorithm::Ed25519 {
            SignatureAlgorithm::EcdsaSha256
        } else {
            SignatureAlgorithm::Ed25519
        };
        assert!(store.sign(&label, wrong, b"x").is_err());
    }
    let listed = store.list().unwrap();
    for &alg in algs {
        let label = format!("{prefix}-{alg}");
        assert!(
            listed
                .iter()
                .any(|e| e.label == label && e.kind == KeyKind::KeyPair(alg)),
            "{label} missing from {listed:?}"
        );
    }
}

fn check_concurrent_signing(store: Arc<dyn KeyStore>, label: &str, alg: KeyAlgorithm) {
    store.generate(label, alg).unwrap();
    let public = store.public_key(label).unwrap();
    let scheme = alg.default_signature();
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            let label = label.to_owned();
            std::thread::spawn(move || {
                (0..40)
                    .map(|i| {
                        let msg = format!("thread {t} message {i}").into_bytes();
                        let sig = store.sign(&label, scheme, &msg).unwrap();
                        (msg, sig)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(results.len(), 320);
    let verifier = match alg {
        KeyAlgorithm::EcdsaP256 => &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        _ => unreachable!("concurrency is tested with P-256"),
    };
    let spki = spki::SubjectPublicKeyInfoRef::try_from(public.spki_der.as_slice()).unwrap();
    let key =
        aws_lc_rs::signature::UnparsedPublicKey::new(verifier, spki.subject_public_key.raw_bytes());
    for (msg, sig) in &results {
        key.verify(msg, sig).expect("concurrent signature verifies");
    }
    let dir = tempfile::tempdir().unwrap();
    for (msg, sig) in results.iter().step_by(40) {
        assert!(openssl_verifies(
            dir.path(),
            &public.spki_der,
            scheme,
            msg,
            sig
        ));
    }
}

fn soft_store() -> (tempfile::TempDir, SoftKeyStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SoftKeyStore::create(dir.path(), b"a long test passphrase", fast_kdf()).unwrap();
    (dir, store)
}

#[test]
fn soft_signatures_verify_with_openssl() {
    let (_dir, store) = soft_store();
    check_every_scheme(
        &store,
        &[
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Rsa3072,
            KeyAlgorithm::Ed25519,
            KeyAlgorithm::Sm2,
        ],
        "soft",
    );
}

#[test]
fn soft_keys_survive_reopen() {
    let (dir, store) = soft_store();
    let public = store.generate("persisted", KeyAlgorithm::Sm2).unwrap();
    drop(store);
    let store = SoftKeyStore::open(dir.path(), b"a long test passphrase").unwrap();
    let sig = store
        .sign("persisted", SignatureAlgorithm::Sm2Sm3, b"after reopen")
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    assert!(openssl_verifies(
        tmp.path(),
        &public.spki_der,
        SignatureAlgorithm::Sm2Sm3,
        b"after reopen",
        &sig
    ));
}

#[test]
fn soft_concurrent_signing() {
    let (_dir, store) = soft_store();
    check_concurrent_signing(Arc::new(store), "busy", KeyAlgorithm::EcdsaP256);
}

/// One SoftHSM2 token per test process: SOFTHSM2_CONF is read once, at
/// C_Initialize, so every PKCS#11 test of the process shares it.
fn softhsm_token() -> &'static SoftHsm {
    static TOKEN: OnceLock<SoftHsm> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let token = SoftHsm::new("kexin-test");
        // Set once, before any thread of this process loads the module.
        std::env::set_var("SOFTHSM2_CONF", &token.conf);
        token
    })
}

fn pkcs11_store() -> Pkcs11KeyStore {
    softhsm_token();
    Pkcs11KeyStore::open(&Pkcs11Settings {
        module: SOFTHSM_MODULE.into(),
        token_label: "kexin-test".into(),
        pin: Zeroizing::new(TOKEN_PIN.into()),
        max_sessions: 4,
    })
    .unwrap()
}

#[test]
fn pkcs11_signatures_verify_with_openssl() {
    let store = pkcs11_store();
    check_every_scheme(
        &store,
        &[
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Rsa3072,
            KeyAlgorithm::Ed25519,
        ],
        "hsm",
    );
    let err = store.generate("hsm-sm2", KeyAlgorithm::Sm2).unwrap_err();
    assert!(err.to_string().contains("SM2"), "{err}");
}

#[test]
fn pkcs11_concurrent_signing() {
    check_concurrent_signing(
        Arc::new(pkcs11_store()),
        "hsm-busy",
        KeyAlgorithm::EcdsaP256,
    );
}

#[test]
fn pkcs11_wrong_pin_is_refused() {
    softhsm_token();
    let err = Pkcs11KeyStore::open(&Pkcs11Settings {
        module: SOFTHSM_MODULE.into(),
        token_label: "kexin-test".into(),
        pin: Zeroizing::new("000000".into()),
        max_sessions: 1,
    });
    // A second store in the same process shares the login state of the
    // first if one is open; only assert on a fresh login.
    if let Err(e) = err {
        assert!(e.to_string().contains("PIN"), "{e}");
    }
}

#[test]
fn pkcs11_wrap_round_trip() {
    let store = pkcs11_store();
    store.generate_wrapping_key("hsm-kek").unwrap();
    let wrapped = store.wrap("hsm-kek", b"escrowed key bytes").unwrap();
    assert_ne!(&wrapped[12..], b"escrowed key bytes");
    assert_eq!(
        store.unwrap("hsm-kek", &wrapped).unwrap().as_slice(),
        b"escrowed key bytes"
    );
    let mut bad = wrapped.clone();
    bad[20] ^= 1;
    assert!(store.unwrap("hsm-kek", &bad).is_err());
    assert!(store
        .list()
        .unwrap()
        .iter()
        .any(|e| e.label == "hsm-kek" && e.kind == KeyKind::WrappingKey));
}

#[test]
fn pkcs11_refuses_duplicate_label() {
    let store = pkcs11_store();
    store.generate("hsm-dup", KeyAlgorithm::EcdsaP256).unwrap();
    assert!(matches!(
        store.generate("hsm-dup", KeyAlgorithm::EcdsaP256),
        Err(kexin_hsm::Error::KeyExists(_))
    ));
}
