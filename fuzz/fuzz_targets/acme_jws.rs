//! ACME request bodies on arbitrary bytes: the flattened JWS, its
//! protected header, the JWK in it and the signature check; and the same
//! bytes as an external account binding. No panic, and a key that parses
//! has a 43-character thumbprint.
#![no_main]
#![allow(dead_code)]

use std::sync::OnceLock;

#[path = "../../src/acme/jws.rs"]
mod jws;

const NEW_ACCOUNT: &str = "https://localhost:8443/acme/new-account";

/// The account key a binding must name: the seed `binding`'s.
fn account_key() -> &'static jws::AccountKey {
    static KEY: OnceLock<jws::AccountKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        });
        jws::AccountKey::from_jwk(&jwk).expect("the fixed key parses")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(binding) = jws::ExternalBinding::parse(&value, NEW_ACCOUNT, account_key()) {
            let _ = binding.verify("c2VjcmV0LWtleS1mb3ItZnV6emluZw");
        }
    }
    let Ok((body, header)) = jws::parse(data) else {
        return;
    };
    let Some(jwk) = &header.jwk else { return };
    let Ok(key) = jws::AccountKey::from_jwk(jwk) else {
        return;
    };
    assert_eq!(key.thumbprint().len(), 43);
    let _ = key.public_key_bytes();
    let _ = jws::verify(&body, &header, key);
});
