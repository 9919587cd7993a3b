//! Delta objects: the streaming splitter and element parser (restore's path), the whole-object
//! decoder (with its sha256 trailer) and the in-memory parser never panic, and the splitter
//! agrees with serde_json on how many elements a valid array has.
#![no_main]

use etcdbr::delta_format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = delta_format::decode(data);
    let _ = delta_format::verify(data);
    let parsed = delta_format::parse(data);
    let mut streamed = 0usize;
    let split = delta_format::for_each_event_timed(data, true, |_, _| {
        streamed += 1;
        Ok(())
    });
    if let (Ok(events), Ok(n)) = (&parsed, &split) {
        assert_eq!(events.len(), *n, "the splitter and the parser disagree");
        assert_eq!(streamed, *n);
    }
    if parsed.is_ok() {
        assert!(
            split.is_ok(),
            "the parser takes what the splitter refuses: {split:?}"
        );
    }
});
