//! License QR payload parsing (the JWS in a verify URL) on arbitrary text.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let jws = kexin_seal::license::payload_from(text);
        let _ = kexin_seal::license::payload_kid(jws);
    }
});
