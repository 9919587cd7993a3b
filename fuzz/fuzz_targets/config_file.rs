//! The server's `--config-file` YAML: any text gives flags or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(flags) = etcdbrctl::config_file::flags_from_yaml(text) {
        for (flag, _) in flags {
            assert!(!flag.is_empty());
        }
    }
});
