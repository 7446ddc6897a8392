//! PKCS#10 parsing and proof-of-possession checking on arbitrary bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = kexin_ca::csr::parse_and_verify(data);
});
