//! What a bucket writer controls of an encrypted, signed store: any bytes as a manifest give a
//! manifest or an error (never a panic), and any bytes as an `.age` object give plaintext or an
//! error, never an unbounded read. The keys are fixed test keys, not secrets.
#![no_main]

use std::io::Read;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use snapstore::Keyring;
use snapstore::manifest::SigningKeys;

const PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAFg+4y9lQrOT5FkLSeLaFjd/xHmg++DVxXD5Avd4amW8=\n-----END PUBLIC KEY-----\n";
const IDENTITY: &str = "AGE-SECRET-KEY-1HXHJCQ6XUKFAUS554A5DL46EEHJ89X25ZLGXDUQQ9J76LZ3E6C6QSZ4K4C\n";

fn keys() -> &'static (SigningKeys, Keyring) {
    static KEYS: OnceLock<(SigningKeys, Keyring)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (public, identity) = (dir.path().join("pub.pem"), dir.path().join("id.txt"));
        std::fs::write(&public, PUBLIC).unwrap();
        std::fs::write(&identity, IDENTITY).unwrap();
        (
            SigningKeys::load(&public).unwrap(),
            Keyring::from_files(None, Some(&identity)).unwrap(),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (signing, keyring) = keys();
    if which % 2 == 0 {
        if let Err(e) = signing.open("manifests/Full-00000000-00000010-1.gz.json", rest) {
            let _ = e.to_string();
        }
    } else {
        match keyring.open("Full-00000000-00000010-1.gz.age", rest) {
            Ok(mut r) => {
                let mut out = Vec::new();
                let _ = r.by_ref().take(1 << 20).read_to_end(&mut out);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
