//! The query parameters the API reads, parsed as Go's `url.ParseQuery` + `Get` read them in the
//! original: `&`-separated pairs, `+` and `%XX` decoded, the first value of a key wins; a pair
//! that does not decode is skipped (Go reports it and keeps the others).

use etcdbr::initialize::ValidationMode;

/// Why a parameter's value is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the parameter {name}={value:?} is not a boolean; use {name}=true or {name}=false")]
pub struct BadParameter {
    /// The parameter.
    pub name: &'static str,
    /// Its value.
    pub value: String,
}

/// `%XX` and `+` decoded; `None` for a bad escape or bytes that are not UTF-8.
fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                out.push(v);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The first value of `name` in `query`, if any.
#[must_use]
pub fn get(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (unescape(k)? == name).then(|| unescape(v)).flatten()
    })
}

/// `final` of `/snapshot/full`: absent or empty is false, else Go's boolean syntax.
///
/// # Errors
/// A value that is not a boolean.
pub fn final_flag(query: Option<&str>) -> Result<bool, BadParameter> {
    match get(query, "final") {
        None => Ok(false),
        Some(v) if v.is_empty() => Ok(false),
        Some(v) => etcdbr_types::go::go_bool(&v).map_err(|_| BadParameter {
            name: "final",
            value: v,
        }),
    }
}

/// `mode` of `/initialization/start`: `sanity`, else full validation.
#[must_use]
pub fn validation_mode(query: Option<&str>) -> ValidationMode {
    match get(query, "mode").as_deref() {
        Some("sanity") => ValidationMode::Sanity,
        _ => ValidationMode::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_read_as_go_reads_them() {
        assert_eq!(final_flag(None), Ok(false));
        assert_eq!(final_flag(Some("final=")), Ok(false));
        assert_eq!(final_flag(Some("final=true")), Ok(true));
        assert_eq!(final_flag(Some("x=1&final=T&final=false")), Ok(true));
        assert_eq!(final_flag(Some("%66inal=%74rue")), Ok(true));
        assert!(
            final_flag(Some("final=yes"))
                .unwrap_err()
                .to_string()
                .contains("final=\"yes\"")
        );
        assert_eq!(
            final_flag(Some("final=%zz&final=1")),
            Ok(true),
            "a bad escape is skipped"
        );
        assert_eq!(validation_mode(Some("mode=sanity")), ValidationMode::Sanity);
        assert_eq!(validation_mode(Some("mode=full")), ValidationMode::Full);
        assert_eq!(validation_mode(Some("mode=%")), ValidationMode::Full);
        assert_eq!(get(Some("a=b+c%20d"), "a").as_deref(), Some("b c d"));
        assert_eq!(get(Some("%C3%A9=%FF"), "é"), None, "not UTF-8");
    }
}
