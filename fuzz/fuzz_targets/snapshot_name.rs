//! Snapshot object names: any key parses or is refused, never panics; a parsed name's
//! generated name parses back to the same snapshot.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snapstore::Snapshot;

fuzz_target!(|data: &[u8]| {
    let Ok(key) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(s) = Snapshot::parse(key) else {
        return;
    };
    let _ = (s.key(), s.is_deletable(chrono::DateTime::UNIX_EPOCH));
    if !s.is_chunk {
        let again =
            Snapshot::parse(&format!("v2/{}", s.generate_name())).expect("a generated name parses");
        assert_eq!(
            (
                again.kind,
                again.start_revision,
                again.last_revision,
                again.created_on
            ),
            (s.kind, s.start_revision, s.last_revision, s.created_on),
            "{key:?}"
        );
    }
});
