//! Value parsers with Go's syntax, so command lines written for the original keep working.

pub use etcdbr_types::go::{fmt_go_duration, go_bool, go_duration};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools_parse_like_go() {
        assert!(go_bool("True").unwrap());
        assert!(!go_bool("0").unwrap());
        assert!(go_bool("yes").is_err());
    }
}
