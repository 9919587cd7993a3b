//! Cutting a delta's JSON array into its elements as it streams in, so that each element is
//! parsed from a slice (serde_json's fast path) while memory holds one element, not the delta.
//!
//! The scanner only tracks what delimits elements: strings (with their escapes) and the
//! nesting of objects and arrays. Everything inside an element is left to serde_json.

use std::io::Read;

/// Bytes read from the input at a time.
const READ: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the opening `[`.
    Start,
    /// After `[`: an element or `]`.
    FirstElement,
    /// After `,`: an element.
    NextElement,
    /// Inside an element.
    Element,
    /// After an element: `,` or `]`.
    AfterElement,
}

/// Why the array could not be cut into elements.
#[derive(Debug)]
pub(super) enum SplitError<E> {
    /// Reading the input failed.
    Io(std::io::Error),
    /// The bytes are not a JSON array of objects.
    Syntax(String),
    /// The element handler failed.
    Element(E),
}

/// Reads a JSON array of objects from `input` and calls `element` with each element's bytes, in
/// order; returns the number of elements. Reads `input` to its end: bytes after the closing
/// bracket (a delta's sha256 trailer) are not looked at.
pub(super) fn for_each_element<E>(
    mut input: impl Read,
    mut element: impl FnMut(usize, &[u8]) -> Result<(), E>,
) -> Result<usize, SplitError<E>> {
    let mut buf: Vec<u8> = Vec::with_capacity(2 * READ);
    let mut pos = 0; // next byte to scan
    let mut start = 0; // start of the current element
    let mut state = State::Start;
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut count = 0;
    loop {
        if pos == buf.len() {
            // Keep the unfinished element, drop what was consumed, read more.
            let keep = if state == State::Element { start } else { pos };
            buf.drain(..keep);
            pos -= keep;
            start -= keep.min(start);
            let filled = buf.len();
            buf.resize(filled + READ, 0);
            let n = read_some(&mut input, &mut buf[filled..]).map_err(SplitError::Io)?;
            buf.truncate(filled + n);
            if n == 0 {
                return Err(SplitError::Syntax(
                    "the JSON array ends before its closing bracket".into(),
                ));
            }
        }
        match state {
            State::Element if in_string => {
                if escaped {
                    escaped = false;
                    pos += 1;
                    continue;
                }
                match memchr::memchr2(b'"', b'\\', &buf[pos..]) {
                    None => pos = buf.len(),
                    Some(i) => {
                        if buf[pos + i] == b'"' {
                            in_string = false;
                        } else {
                            escaped = true;
                        }
                        pos += i + 1;
                    }
                }
            }
            State::Element => {
                let b = buf[pos];
                pos += 1;
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            element(count, &buf[start..pos]).map_err(SplitError::Element)?;
                            count += 1;
                            state = State::AfterElement;
                        }
                    }
                    _ => {}
                }
            }
            _ => {
                let b = buf[pos];
                pos += 1;
                if b.is_ascii_whitespace() {
                    continue;
                }
                state = match (state, b) {
                    (State::Start, b'[') => State::FirstElement,
                    (State::FirstElement | State::NextElement, b'{') => {
                        start = pos - 1;
                        depth = 1;
                        State::Element
                    }
                    (State::FirstElement | State::AfterElement, b']') => {
                        std::io::copy(&mut input, &mut std::io::sink()).map_err(SplitError::Io)?;
                        return Ok(count);
                    }
                    (State::AfterElement, b',') => State::NextElement,
                    (s, b) => {
                        let want = match s {
                            State::Start => "'['",
                            State::FirstElement => "an object or ']'",
                            State::NextElement => "an object",
                            State::AfterElement | State::Element => "',' or ']'",
                        };
                        return Err(SplitError::Syntax(format!(
                            "expected {want} after {count} elements, found {:?}",
                            char::from(b)
                        )));
                    }
                };
            }
        }
    }
}

fn read_some(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match input.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out `step` bytes per read, to cut the input at every position.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn split(data: &[u8], step: usize) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for_each_element(Trickle { data, step }, |_, e| {
            out.push(String::from_utf8_lossy(e).into_owned());
            Ok::<(), ()>(())
        })
        .map_err(|e| match e {
            SplitError::Syntax(s) => s,
            other => format!("{other:?}"),
        })?;
        Ok(out)
    }

    #[test]
    fn elements_with_nesting_strings_and_escapes() {
        let json = br#" [ {"a":{"b":[1,{"c":"}]"}]}} , {"s":"x\"}\\"},{"e":"\\\""} ]TRAILER"#;
        for step in [1, 2, 3, 7, 1000] {
            assert_eq!(
                split(json, step).unwrap(),
                vec![
                    r#"{"a":{"b":[1,{"c":"}]"}]}}"#,
                    r#"{"s":"x\"}\\"}"#,
                    r#"{"e":"\\\""}"#
                ],
                "step {step}"
            );
        }
        assert_eq!(split(b"[]", 1).unwrap(), Vec::<String>::new());
        assert_eq!(split(b"[\n]\n", 1).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn malformed_arrays_are_errors() {
        for bad in [
            &b""[..],
            b"{}",
            b"[",
            b"[{}",
            b"[{},",
            b"[{},]",
            b"[1]",
            b"[{} {}]",
            br#"[{"a":"}"#,
        ] {
            assert!(split(bad, 3).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
