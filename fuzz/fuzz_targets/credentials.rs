//! Credentials in the JSON form: any bytes give credentials or an error naming the problem;
//! an error never carries a field's value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snapstore::credentials::Credentials;

fuzz_target!(|data: &[u8]| {
    match Credentials::from_json("S3", "fuzz", data) {
        Ok(c) => {
            for field in [
                "accessKeyID",
                "secretAccessKey",
                "region",
                "endpoint",
                "s3ForcePathStyle",
            ] {
                let _ = c.get(field);
                let _ = c.get_bool(field);
                let _ = c.require(field);
            }
            let _ = format!("{c:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
