//! Go's syntax for values, as the original's flags and config files use it.

use std::time::Duration;

/// A value not in Go's syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GoValueError {
    /// Not a Go duration.
    Duration(String),
    /// A negative duration.
    NegativeDuration(String),
    /// Not a Go boolean.
    Bool(String),
}

impl std::fmt::Display for GoValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GoValueError::Duration(s) => write!(
                f,
                "invalid duration {s:?}: expected a number with a unit (ns, us, ms, s, m, h), e.g. 20s, 1m30s, 1.5h"
            ),
            GoValueError::NegativeDuration(s) => {
                write!(f, "invalid duration {s:?}: must not be negative")
            }
            GoValueError::Bool(s) => write!(f, "invalid boolean {s:?}: use true or false"),
        }
    }
}

impl std::error::Error for GoValueError {}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units `ns`, `us`/`µs`, `ms`,
/// `s`, `m`, `h` (e.g. `20s`, `1m30s`, `1.5h`), or a bare `0`. Negative durations are refused.
///
/// # Errors
/// A message naming the value and the accepted forms.
pub fn go_duration(s: &str) -> Result<Duration, GoValueError> {
    let bad = || GoValueError::Duration(s.to_owned());
    let t = s.trim();
    if t.starts_with('-') {
        return Err(GoValueError::NegativeDuration(s.to_owned()));
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err(bad());
    }
    let mut rest = t;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_end == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_end..];
        total += value * unit;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// Formats a duration as Go prints it (`20s`, `1m0s`, `2h30m0s`), for messages.
#[must_use]
pub fn fmt_go_duration(d: Duration) -> String {
    let total = d.as_secs();
    let frac = d.subsec_nanos();
    if total == 0 && frac == 0 {
        return "0s".into();
    }
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{:09}", frac);
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

/// Go's `strconv.ParseBool`: `1 t T TRUE true True 0 f F FALSE false False`.
///
/// # Errors
/// A message naming the value.
pub fn go_bool(s: &str) -> Result<bool, GoValueError> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(GoValueError::Bool(s.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(go_duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(go_duration("1m0s").unwrap(), Duration::from_secs(60));
        assert_eq!(go_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(go_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(go_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(go_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(go_duration("0s").unwrap(), Duration::ZERO);
        for bad in ["", "20", "s", "1x", "1h-2m", "abc", "1..2s"] {
            assert!(go_duration(bad).is_err(), "{bad}");
        }
        assert!(
            go_duration("-1s")
                .unwrap_err()
                .to_string()
                .contains("negative")
        );
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(fmt_go_duration(Duration::from_secs(20)), "20s");
        assert_eq!(fmt_go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(fmt_go_duration(Duration::from_secs(128)), "2m8s");
        assert_eq!(fmt_go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(fmt_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_go_duration(Duration::ZERO), "0s");
    }
}
