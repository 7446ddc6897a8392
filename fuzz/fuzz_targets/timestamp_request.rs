//! RFC 3161 TimeStampReq parsing and checks on arbitrary bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let policy = kexin_timestamp_policy();
    let _ = kexin_timestamp::request::parse(data, &[policy]);
});

fn kexin_timestamp_policy() -> const_oid::ObjectIdentifier {
    const_oid::ObjectIdentifier::new_unwrap("0.4.0.2023.1.1")
}
