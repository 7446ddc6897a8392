//! The certificate of a signed-challenge answer: PEM text from anyone.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = kexin_ca::certificate::first_certificate_from_pem(data);
});
