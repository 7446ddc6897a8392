//! The PROXY protocol header parser (what a trusted load balancer's
//! connections begin with) on arbitrary bytes: no panic; a header it
//! accepts lies inside the input, and the same header with anything
//! after it is read the same.
#![no_main]

#[path = "../../src/proxy_protocol/header.rs"]
mod header;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(header::Header::Complete { len, client }) = header::parse(data) {
        assert!(len <= data.len() && len >= 15);
        let mut longer = data[..len].to_vec();
        longer.extend_from_slice(b"\x16\x03\x01 GET");
        assert_eq!(
            header::parse(&longer),
            Ok(header::Header::Complete { len, client })
        );
        for cut in 0..len {
            assert!(!matches!(
                header::parse(&data[..cut]),
                Ok(header::Header::Complete { .. })
            ));
        }
    }
});
