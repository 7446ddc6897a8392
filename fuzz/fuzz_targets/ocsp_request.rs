//! OCSP request parsing and bounds checks on arbitrary bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = kexin_ca::ocsp::parse_request(data);
});
