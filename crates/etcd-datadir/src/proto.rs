//! The few protobuf wire-format primitives etcd's on-disk records need, written by hand so the
//! output is byte-identical to gogo-protobuf's (fields in number order; `nullable=false`
//! scalars always written, proto3 zero values omitted by the callers that want that).

/// Wire type of varint fields.
pub const VARINT: u8 = 0;
/// Wire type of length-delimited fields.
pub const BYTES: u8 = 2;

/// Appends a base-128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a varint field (always, even when zero).
pub fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    put_varint(out, u64::from(field << 3) | u64::from(VARINT));
    put_varint(out, v);
}

/// Appends a length-delimited field.
pub fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_varint(out, u64::from(field << 3) | u64::from(BYTES));
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// One decoded field value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// A varint.
    Varint(u64),
    /// A length-delimited byte string.
    Bytes(&'a [u8]),
    /// A fixed 64-bit value.
    Fixed64(u64),
    /// A fixed 32-bit value.
    Fixed32(u32),
}

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed protobuf message: {0}")]
pub struct DecodeError(pub &'static str);

/// Iterates over the fields of a message.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    /// Fields of `buf`.
    #[must_use]
    pub fn new(buf: &'a [u8]) -> Fields<'a> {
        Fields { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or(DecodeError("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError("field runs past the end"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let r = (|| {
            let key = self.varint()?;
            let field =
                u32::try_from(key >> 3).map_err(|_| DecodeError("field number too large"))?;
            let v = match key & 7 {
                0 => Value::Varint(self.varint()?),
                1 => Value::Fixed64(u64::from_le_bytes(
                    self.take(8)?
                        .try_into()
                        .map_err(|_| DecodeError("fixed64"))?,
                )),
                2 => {
                    let n = usize::try_from(self.varint()?)
                        .map_err(|_| DecodeError("length too large"))?;
                    Value::Bytes(self.take(n)?)
                }
                5 => Value::Fixed32(u32::from_le_bytes(
                    self.take(4)?
                        .try_into()
                        .map_err(|_| DecodeError("fixed32"))?,
                )),
                _ => return Err(DecodeError("unsupported wire type")),
            };
            Ok((field, v))
        })();
        if r.is_err() {
            self.pos = self.buf.len();
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut b = Vec::new();
        put_uint(&mut b, 1, 0);
        put_uint(&mut b, 2, 300);
        put_bytes(&mut b, 3, b"abc");
        assert_eq!(b, [0x08, 0x00, 0x10, 0xac, 0x02, 0x1a, 3, b'a', b'b', b'c']);
        let f: Vec<_> = Fields::new(&b).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            f,
            [
                (1, Value::Varint(0)),
                (2, Value::Varint(300)),
                (3, Value::Bytes(b"abc"))
            ]
        );
        assert!(Fields::new(&[0x1a, 5, 1]).next().unwrap().is_err());
        assert!(Fields::new(&[0x80]).next().unwrap().is_err());
    }
}
