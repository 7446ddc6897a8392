//! PDF signature discovery and verification on arbitrary bytes (what the
//! public verify portal runs on every upload). Inputs starting with a real
//! PDF header reach lopdf's parser and Kexin's byte-range and CMS checks.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let trust = kexin_seal::verify::Trust::default();
    let _ = runtime.block_on(kexin_seal::verify::verify_pdf(data, &trust, None));
    let _ = runtime.block_on(kexin_seal::verify::verify_detached(
        data,
        &mut &b"content"[..],
        &trust,
        None,
    ));
});
