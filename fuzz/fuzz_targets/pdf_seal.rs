//! Preparing a seal's signature on arbitrary bytes: what `sign-pdf` does
//! with a document an officer or a system brings, before the seal signs.
//! The first byte picks the page and whether to certify; the rest is the
//! document. Whatever is prepared must read back as a PDF with exactly
//! one more signature field than the original had.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&choice, pdf)) = data.split_first() else {
        return;
    };
    let page = match choice & 0x0f {
        0 => None,
        n => Some(u32::from(n)),
    };
    let certify = choice & 0x10 != 0;
    let Ok(sealed) = kexin_seal::pades::lay_out_sample_seal(pdf, page, certify) else {
        return;
    };
    let before = kexin_seal::pades::signature_fields_for_fuzzing(pdf)
        .expect("a document that could be prepared parses");
    let after = kexin_seal::pades::signature_fields_for_fuzzing(&sealed)
        .expect("the prepared document parses");
    assert_eq!(after, before + 1, "the update adds one signature field");
});
