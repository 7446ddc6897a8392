//! Stamped tokens (SSO challenge ids, ACME nonces) on arbitrary text: a
//! refusal, never a panic, and nothing but a token of this key accepted.
#![no_main]

use kexin_ca::secrets::{StampKey, StampRefused};

const NOW_MS: u64 = 1_800_000_000_000;
const LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let key = StampKey::new(&[7u8; 32], "fuzz");
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(
            key.check(text, NOW_MS, LIFETIME).map(|_| ()),
            Err(StampRefused::Unknown),
            "an input no key issued was accepted or found merely expired"
        );
    }
    // A genuine token with the input as payload round-trips, unless the
    // payload is too long to make one.
    match key.issue(data, NOW_MS) {
        Ok((token, nonce)) => {
            let opened = key.check(&token, NOW_MS, LIFETIME).expect("a fresh token");
            assert_eq!((opened.nonce, opened.payload.as_slice()), (nonce, data));
        }
        Err(_) => assert!(data.len() > 700, "refused a {}-byte payload", data.len()),
    }
});
