//! Credentials in the original's forms, for every provider that uses them.
//!
//! For a variable such as `AWS_APPLICATION_CREDENTIALS`, with the store's env prefix (`""`,
//! `SOURCE_` or `SECONDARY_`) in front, the original looks in this order:
//!
//! 1. `<prefix><VAR>_JSON`: a JSON file of fields;
//! 2. `<prefix><VAR>`: a directory; its first `*.json` file (sorted by name) is the JSON file;
//! 3. the same directory, one file per field (the file name is the field, its content the value).
//!
//! [`Credentials`] holds the fields found (as strings; JSON booleans and numbers are rendered),
//! where they came from (for messages), and the files read (for rotation: their newest mtime).
//! Values never appear in `Debug` output or in errors.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};

/// Fields of a provider's credentials and where they came from.
#[derive(Clone)]
pub struct Credentials {
    provider: &'static str,
    origin: String,
    fields: BTreeMap<String, String>,
    files: Vec<PathBuf>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("provider", &self.provider)
            .field("origin", &self.origin)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Reads the environment, so tests can pass a map instead.
pub trait Env {
    /// The variable's value, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

fn cred_err(
    provider: &'static str,
    origin: impl Into<String>,
    problem: impl Into<String>,
) -> Error {
    Error::Credentials {
        provider,
        origin: origin.into(),
        problem: problem.into(),
    }
}

impl Credentials {
    /// [`Credentials::locate`] for a provider that has no other source of credentials.
    ///
    /// # Errors
    /// As `locate`, and [`Error::Credentials`] saying which variables to set when neither is.
    pub fn required(
        provider: &'static str,
        var: &str,
        env_prefix: &str,
        env: &dyn Env,
    ) -> Result<Credentials> {
        Credentials::locate(provider, var, env_prefix, env)?.ok_or_else(|| {
            cred_err(
                provider,
                format!("{env_prefix}{var}[_JSON]"),
                "the variable is not set",
            )
        })
    }

    /// Locates and reads the credentials named by `<env_prefix><var>[_JSON]`; `None` when neither
    /// variable is set.
    ///
    /// # Errors
    /// [`Error::Credentials`] naming the provider, the file or directory and the problem.
    pub fn locate(
        provider: &'static str,
        var: &str,
        env_prefix: &str,
        env: &dyn Env,
    ) -> Result<Option<Credentials>> {
        let json_var = format!("{env_prefix}{var}_JSON");
        if let Some(file) = env.var(&json_var).filter(|v| !v.is_empty()) {
            return Credentials::from_json_file(provider, Path::new(&file), &json_var).map(Some);
        }
        let dir_var = format!("{env_prefix}{var}");
        let Some(dir) = env.var(&dir_var).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let dir = PathBuf::from(dir);
        let origin = format!("{} (from {dir_var})", dir.display());
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| cred_err(provider, &origin, format!("cannot read the directory: {e}")))?;
        let mut names: Vec<PathBuf> = entries
            .filter_map(std::result::Result::ok)
            .map(|e| e.path())
            .collect();
        names.sort();
        if let Some(json) = names
            .iter()
            .find(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        {
            return Credentials::from_json_file(provider, json, &dir_var).map(Some);
        }
        let mut fields = BTreeMap::new();
        let mut files = Vec::new();
        for p in names {
            let Some(name) = p.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            // Kubernetes secret volumes hold `..data` links and dot-directories: skip them.
            if name.starts_with('.') || !p.is_file() {
                continue;
            }
            let bytes = std::fs::read(&p).map_err(|e| {
                cred_err(
                    provider,
                    p.display().to_string(),
                    format!("cannot read the file: {e}"),
                )
            })?;
            let mut value = String::from_utf8(bytes).map_err(|_| {
                cred_err(
                    provider,
                    p.display().to_string(),
                    "the file is not UTF-8 text",
                )
            })?;
            while value.ends_with('\n') || value.ends_with('\r') {
                value.pop();
            }
            fields.insert(name, value);
            files.push(p);
        }
        Ok(Some(Credentials {
            provider,
            origin,
            fields,
            files,
        }))
    }

    fn from_json_file(provider: &'static str, path: &Path, var: &str) -> Result<Credentials> {
        let origin = format!("{} (from {var})", path.display());
        let text = std::fs::read(path)
            .map_err(|e| cred_err(provider, &origin, format!("cannot read the file: {e}")))?;
        let mut c = Credentials::from_json(provider, &origin, &text)?;
        c.files.push(path.to_path_buf());
        Ok(c)
    }

    /// Credentials from the JSON form's bytes (an object of string or boolean fields), read from
    /// `origin` (for messages).
    ///
    /// # Errors
    /// [`Error::Credentials`] naming the origin and what is wrong, never the values.
    pub fn from_json(provider: &'static str, origin: &str, text: &[u8]) -> Result<Credentials> {
        let value: serde_json::Value = serde_json::from_slice(text)
            .map_err(|e| cred_err(provider, origin, format!("not valid JSON: {e}")))?;
        let serde_json::Value::Object(map) = value else {
            return Err(cred_err(
                provider,
                origin,
                "expected a JSON object of fields",
            ));
        };
        let mut fields = BTreeMap::new();
        for (k, v) in map {
            // The original's structs hold strings and bools only; Go refuses a number for a
            // string field, and so do we, for any field (naming it).
            let s = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Null => continue,
                serde_json::Value::Number(_) => {
                    return Err(cred_err(
                        provider,
                        origin,
                        format!("field {k:?} is a number; write it as a JSON string"),
                    ));
                }
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                    return Err(cred_err(
                        provider,
                        origin,
                        format!("field {k:?} must be a string, not a JSON array or object"),
                    ));
                }
            };
            fields.insert(k, s);
        }
        Ok(Credentials {
            provider,
            origin: origin.to_owned(),
            fields,
            files: Vec::new(),
        })
    }

    /// Builds credentials from known fields (for env-only providers such as ECS).
    #[must_use]
    pub fn from_fields(
        provider: &'static str,
        origin: &str,
        fields: BTreeMap<String, String>,
    ) -> Credentials {
        Credentials {
            provider,
            origin: origin.to_owned(),
            fields,
            files: Vec::new(),
        }
    }

    /// Where the credentials were read.
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// A field, if present and non-empty.
    #[must_use]
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields
            .get(field)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A required field.
    ///
    /// # Errors
    /// [`Error::Credentials`] naming the missing field.
    pub fn require(&self, field: &str) -> Result<&str> {
        self.get(field).ok_or_else(|| {
            cred_err(
                self.provider,
                &self.origin,
                format!("missing field {field:?}"),
            )
        })
    }

    /// A boolean field (Go's `strconv.ParseBool` forms).
    ///
    /// # Errors
    /// [`Error::Credentials`] when the value is not a boolean.
    pub fn get_bool(&self, field: &str) -> Result<Option<bool>> {
        match self.get(field) {
            None => Ok(None),
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(Some(true)),
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(Some(false)),
            Some(_) => Err(cred_err(
                self.provider,
                &self.origin,
                format!("field {field:?} is not true or false"),
            )),
        }
    }

    /// An error about these credentials.
    #[must_use]
    pub fn error(&self, problem: impl Into<String>) -> Error {
        cred_err(self.provider, &self.origin, problem)
    }

    /// The file a field was read from, in the directory form (one file per field); `None` for
    /// the JSON form and the environment. The original passes some files by path rather than
    /// by content (S3's web identity `token`, re-read on every exchange).
    #[must_use]
    pub fn file(&self, field: &str) -> Option<&Path> {
        self.files
            .iter()
            .find(|p| p.file_name().is_some_and(|n| n == field))
            .map(PathBuf::as_path)
    }

    /// The newest modification time of the files read (None for env-only credentials).
    #[must_use]
    pub fn modified(&self) -> Option<SystemTime> {
        self.files
            .iter()
            .filter_map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &Path)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.display().to_string()))
            .collect()
    }

    #[test]
    fn json_file_then_json_in_dir_then_files_per_field() {
        let tmp = tempfile::tempdir().unwrap();
        let json = tmp.path().join("creds.json");
        std::fs::write(&json, r#"{"accessKeyID":"AK","secretAccessKey":"SK","region":"eu-1","s3ForcePathStyle":true,"x":null}"#).unwrap();
        let c = Credentials::locate(
            "S3",
            "AWS_APPLICATION_CREDENTIALS",
            "",
            &env(&[("AWS_APPLICATION_CREDENTIALS_JSON", &json)]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.require("accessKeyID").unwrap(), "AK");
        assert_eq!(c.get_bool("s3ForcePathStyle").unwrap(), Some(true));
        assert_eq!(c.get("x"), None);

        let dir = tmp.path().join("dir");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("accessKeyID"), "AK2\n").unwrap();
        std::fs::write(dir.join("secretAccessKey"), "S3cretKey2").unwrap();
        std::fs::create_dir(dir.join("..data")).unwrap();
        let e = env(&[("SOURCE_AWS_APPLICATION_CREDENTIALS", &dir)]);
        let c = Credentials::locate("S3", "AWS_APPLICATION_CREDENTIALS", "SOURCE_", &e)
            .unwrap()
            .unwrap();
        assert_eq!(
            c.require("accessKeyID").unwrap(),
            "AK2",
            "a trailing newline is dropped"
        );
        assert!(c.modified().is_some());
        let missing = c.require("region").unwrap_err().to_string();
        assert!(
            missing.contains("S3")
                && missing.contains("\"region\"")
                && missing.contains(&dir.display().to_string()),
            "{missing}"
        );
        assert!(
            !format!("{c:?}").contains("S3cretKey2"),
            "no secret in Debug"
        );

        std::fs::write(dir.join("z.json"), r#"{"accessKeyID":"AK3"}"#).unwrap();
        let c = Credentials::locate("S3", "AWS_APPLICATION_CREDENTIALS", "SOURCE_", &e)
            .unwrap()
            .unwrap();
        assert_eq!(
            c.require("accessKeyID").unwrap(),
            "AK3",
            "a JSON file in the directory wins"
        );
        assert!(
            Credentials::locate("S3", "AWS_APPLICATION_CREDENTIALS", "", &e)
                .unwrap()
                .is_none(),
            "other prefix"
        );
    }

    #[test]
    fn malformed_credentials_say_what_is_wrong_without_the_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let bad = tmp.path().join("bad.json");
        std::fs::write(&bad, r#"{"storageKey": "SUPERSECRET", "#).unwrap();
        let e = Credentials::locate(
            "ABS",
            "AZURE_APPLICATION_CREDENTIALS",
            "",
            &env(&[("AZURE_APPLICATION_CREDENTIALS_JSON", &bad)]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ABS") && e.contains("not valid JSON") && e.contains("bad.json"),
            "{e}"
        );
        assert!(!e.contains("SUPERSECRET"), "{e}");
        let arr = tmp.path().join("arr.json");
        std::fs::write(&arr, "[1,2]").unwrap();
        let e = Credentials::locate(
            "ABS",
            "AZURE_APPLICATION_CREDENTIALS",
            "",
            &env(&[("AZURE_APPLICATION_CREDENTIALS_JSON", &arr)]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("JSON object"));
        // A number where the original's structs have a string: refused, as Go refuses it.
        let num = tmp.path().join("num.json");
        std::fs::write(
            &num,
            r#"{"accessKeyID": 5, "secretAccessKey": "SUPERSECRET"}"#,
        )
        .unwrap();
        let e = Credentials::locate(
            "S3",
            "AWS_APPLICATION_CREDENTIALS",
            "",
            &env(&[("AWS_APPLICATION_CREDENTIALS_JSON", &num)]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"accessKeyID\" is a number"), "{e}");
        assert!(!e.contains("SUPERSECRET"), "{e}");
        let missing = tmp.path().join("nope");
        let e = Credentials::locate(
            "Swift",
            "OPENSTACK_APPLICATION_CREDENTIALS",
            "",
            &env(&[("OPENSTACK_APPLICATION_CREDENTIALS", &missing)]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cannot read the directory")
                && e.contains("OPENSTACK_APPLICATION_CREDENTIALS"),
            "{e}"
        );
        let f = tmp.path().join("f.json");
        std::fs::write(&f, r#"{"s3ForcePathStyle":"maybe"}"#).unwrap();
        let c = Credentials::locate(
            "S3",
            "AWS_APPLICATION_CREDENTIALS",
            "",
            &env(&[("AWS_APPLICATION_CREDENTIALS_JSON", &f)]),
        )
        .unwrap()
        .unwrap();
        assert!(
            c.get_bool("s3ForcePathStyle")
                .unwrap_err()
                .to_string()
                .contains("not true or false")
        );
    }
}
