//! `mvccpb.KeyValue`, the value of every `key` bucket entry (proto3: zero fields omitted).
//!
//! | field | # | type |
//! |---|---|---|
//! | key | 1 | bytes |
//! | create_revision | 2 | int64 |
//! | mod_revision | 3 | int64 |
//! | version | 4 | int64 |
//! | value | 5 | bytes |
//! | lease | 6 | int64 |

use crate::proto::{DecodeError, Fields, Value, put_bytes, put_uint};

/// One version of a key, as etcd stores it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// Revision that created the key's current generation.
    pub create_revision: i64,
    /// Revision of this version.
    pub mod_revision: i64,
    /// Puts since creation.
    pub version: i64,
    /// The value.
    pub value: Vec<u8>,
    /// Attached lease, 0 for none.
    pub lease: i64,
}

/// A [`KeyValue`] whose bytes are borrowed: encodes without copying key and value first (the
/// restore builder encodes one per applied event).
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyValueRef<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Revision of the key's creation.
    pub create_revision: i64,
    /// Revision of the last change.
    pub mod_revision: i64,
    /// Version.
    pub version: i64,
    /// Value.
    pub value: &'a [u8],
    /// Lease ID, 0 for none.
    pub lease: i64,
}

impl KeyValueRef<'_> {
    /// Appends the encoding to `out`: fields in order, zero and empty fields omitted, as
    /// gogoproto's `Marshal` writes them.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        if !self.key.is_empty() {
            put_bytes(out, 1, self.key);
        }
        for (f, v) in [
            (2, self.create_revision),
            (3, self.mod_revision),
            (4, self.version),
        ] {
            if v != 0 {
                put_uint(out, f, v as u64);
            }
        }
        if !self.value.is_empty() {
            put_bytes(out, 5, self.value);
        }
        if self.lease != 0 {
            put_uint(out, 6, self.lease as u64);
        }
    }
}

impl KeyValue {
    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        KeyValueRef {
            key: &self.key,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            value: &self.value,
            lease: self.lease,
        }
        .encode_into(out);
    }

    /// The encoding.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.key.len() + self.value.len() + 24);
        self.encode_into(&mut v);
        v
    }

    /// The key of a stored value, without copying or decoding the rest.
    ///
    /// # Errors
    /// Malformed protobuf.
    pub fn key_of(b: &[u8]) -> Result<&[u8], DecodeError> {
        for f in Fields::new(b) {
            if let (1, Value::Bytes(x)) = f? {
                return Ok(x);
            }
        }
        Ok(&[])
    }

    /// Decodes a stored value.
    ///
    /// # Errors
    /// Malformed protobuf.
    pub fn decode(b: &[u8]) -> Result<KeyValue, DecodeError> {
        let mut kv = KeyValue::default();
        for f in Fields::new(b) {
            match f? {
                (1, Value::Bytes(x)) => kv.key = x.to_vec(),
                (2, Value::Varint(x)) => kv.create_revision = x as i64,
                (3, Value::Varint(x)) => kv.mod_revision = x as i64,
                (4, Value::Varint(x)) => kv.version = x as i64,
                (5, Value::Bytes(x)) => kv.value = x.to_vec(),
                (6, Value::Varint(x)) => kv.lease = x as i64,
                _ => {}
            }
        }
        Ok(kv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_etcds_bytes() {
        // reference/etcd-formats.md §2.3: key "foo", create 2, mod 3, version 2, value "baz".
        let kv = KeyValue {
            key: b"foo".to_vec(),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            value: b"baz".to_vec(),
            lease: 0,
        };
        assert_eq!(
            kv.encode(),
            [
                0x0a, 3, b'f', b'o', b'o', 0x10, 2, 0x18, 3, 0x20, 2, 0x2a, 3, b'b', b'a', b'z'
            ]
        );
        assert_eq!(KeyValue::decode(&kv.encode()).unwrap(), kv);
        let tomb = KeyValue {
            key: b"foo".to_vec(),
            ..KeyValue::default()
        };
        assert_eq!(tomb.encode(), [0x0a, 0x03, 0x66, 0x6f, 0x6f]);
    }
}
