//! The plain-HTTP listener's request head and chunked-body parsers on
//! arbitrary bytes: no panic, and what they accept lies inside the input.
#![no_main]
#![allow(dead_code)]

#[path = "../../src/plain_http/head.rs"]
mod head;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(Some(h)) = head::parse_head(data) {
        assert!(h.len <= data.len());
        assert!(h.target.end <= h.len && h.content_type.end <= h.len);
        if let Ok(target) = std::str::from_utf8(&data[h.target.clone()]) {
            let _ = head::target_path(target);
        }
        let mut body = Vec::new();
        if let Ok(head::Chunked::Complete(used)) =
            head::decode_chunked(&data[h.len..], 64 * 1024, &mut body)
        {
            assert!(h.len + used <= data.len());
        }
    }
    let mut body = Vec::new();
    if let Ok(head::Chunked::Complete(used)) = head::decode_chunked(data, 1024, &mut body) {
        assert!(used <= data.len() && body.len() <= 1024);
    }
});
