//! The HTTP API's query parsing (`final`, `mode`, percent-decoding): never panics, and a value
//! read back is what was encoded.
#![no_main]

use etcdbr_server::query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    let _ = query::final_flag(Some(q));
    let _ = query::validation_mode(Some(q));
    let _ = query::get(Some(q), q);
    // Round trip: a value percent-encoded byte for byte decodes to itself.
    let encoded: String = q.bytes().map(|b| format!("%{b:02X}")).collect();
    assert_eq!(
        query::get(Some(&format!("k={encoded}")), "k").as_deref(),
        Some(q)
    );
});
