//! Bearer tokens on arbitrary text, as userinfo, introspection, revocation
//! and a logout's `id_token_hint` parse them: anything the provider's key
//! did not sign is refused, never a panic; and an access token the key
//! signs over the input verifies, with the input as its subject, as an
//! access token only.
#![no_main]

use std::sync::{Arc, OnceLock};

use kexin_hsm::{KdfParams, SoftKeyStore};
use kexin_identity::jwt::{KeySet, TokenType};

struct Provider {
    keys: KeySet,
    runtime: tokio::runtime::Runtime,
}

fn provider() -> &'static Provider {
    static PROVIDER: OnceLock<Provider> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kexin-fuzz-oidc-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cheap = KdfParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        SoftKeyStore::create(&dir, b"fuzzing passphrase", cheap).expect("a key store");
        let store = SoftKeyStore::open(&dir, b"fuzzing passphrase").expect("the key store");
        Provider {
            keys: KeySet::open(Arc::new(store), "kx-oidc-es256").expect("a token key"),
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime"),
        }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let provider = provider();
    if let Ok(text) = std::str::from_utf8(data) {
        for typ in [TokenType::Access, TokenType::Jwt] {
            assert!(
                provider.keys.verify(text, typ).is_err(),
                "accepted a token the key did not sign: {text}"
            );
        }
    }
    let claims = serde_json::json!({
        "sub": String::from_utf8_lossy(data),
        "exp": 4_000_000_000i64,
    });
    let token = provider
        .runtime
        .block_on(provider.keys.current().sign(&claims, TokenType::Access))
        .expect("the key signs");
    let verified = provider.keys.verify(&token, TokenType::Access);
    assert_eq!(verified.expect("its own token"), claims);
    assert!(provider.keys.verify(&token, TokenType::Jwt).is_err());
});
