//! ACME request bodies on arbitrary bytes: the flattened JWS, its
//! protected header, the JWK in it and the signature check. No panic, and
//! a key that parses has a 43-character thumbprint.
#![no_main]
#![allow(dead_code)]

#[path = "../../src/acme/jws.rs"]
mod jws;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
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
