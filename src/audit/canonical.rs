//! The canonical bytes of an audit entry: what its hash covers.
//!
//! A hash chain needs one byte string per value, the same on every machine and after
//! the value's round trip through the host's store. The entries are serde data, so
//! this is a serde `Serializer` that writes a small deterministic encoding instead of
//! a general format: no dependency on `serde_json` (a dev-dependency only), no
//! whitespace or number-formatting choices, map entries sorted so that a map's
//! iteration order cannot change a hash.
//!
//! # Encoding
//!
//! Every value starts with a tag byte, and every value is self-delimiting (fixed
//! widths, length prefixes, or an end tag), so a sequence of values decodes one way
//! only: two different values never write the same bytes.
//!
//! | value | bytes |
//! |---|---|
//! | `bool` | `b`, 0 or 1 |
//! | signed integers | `i`, as `i64` little-endian (`I` and 16 bytes for `i128`) |
//! | unsigned integers | `u`, as `u64` little-endian (`U` and 16 bytes for `u128`) |
//! | floats | `f`, the `f64` bits little-endian (an `f32` widened first) |
//! | `char` | `c`, its scalar value as `u32` |
//! | string, bytes | `s` or `y`, the length as `u64`, the bytes |
//! | `None`, `Some(v)`, `()` | `N`; `S` then `v`; `0` |
//! | unit variant | `v`, its name as a string |
//! | newtype struct, newtype variant | `n` then the value; `V`, the name, the value |
//! | sequence, tuple | `[`, the elements, `]` |
//! | tuple variant | `T`, the name, the elements, `]` |
//! | struct, struct variant | `{` (or `W` and the name), then for each field `F`, its name and its value, then `}` |
//! | map | `M`, the entries sorted by their key's bytes (key, value), `}` |
//!
//! Names of types are left out (a renamed struct keeps its hashes); names of fields and
//! variants are in (they are what a store records). A `Serialize` impl that fails
//! writes `E` and its message, so the bytes are still a function of the value.

use std::fmt;

use serde::ser::{self, Serialize};

/// The canonical bytes of `value`.
pub(crate) fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    if let Err(e) = value.serialize(Writer { out: &mut out }) {
        out.push(b'E');
        put_str(&mut out, &e.0);
    }
    out
}

#[derive(Debug)]
pub(crate) struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(b);
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn tag(&mut self, tag: u8) {
        self.out.push(tag);
    }
}

/// A sequence, tuple, struct or their variants: the elements follow, then `]` or `}`.
struct Compound<'a> {
    out: &'a mut Vec<u8>,
    end: u8,
}

impl Compound<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(Writer { out: self.out })
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), Error> {
        // Tagged, so that a field never reads as the end tag (a field skipped when
        // empty would otherwise be told from the end by its name's length byte).
        self.out.push(b'F');
        put_str(self.out, name);
        self.element(value)
    }

    fn finish(self) {
        self.out.push(self.end);
    }
}

/// A map: entries are encoded apart and written sorted by key when it ends.
struct Map<'a> {
    out: &'a mut Vec<u8>,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    key: Option<Vec<u8>>,
}

impl Map<'_> {
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
        let mut buf = Vec::new();
        value.serialize(Writer { out: &mut buf })?;
        Ok(buf)
    }
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Map<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(mut self, v: bool) -> Result<(), Error> {
        self.tag(b'b');
        self.out.push(u8::from(v));
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }

    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }

    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }

    fn serialize_i64(mut self, v: i64) -> Result<(), Error> {
        self.tag(b'i');
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_i128(mut self, v: i128) -> Result<(), Error> {
        self.tag(b'I');
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }

    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }

    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }

    fn serialize_u64(mut self, v: u64) -> Result<(), Error> {
        self.tag(b'u');
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_u128(mut self, v: u128) -> Result<(), Error> {
        self.tag(b'U');
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.serialize_f64(v.into())
    }

    fn serialize_f64(mut self, v: f64) -> Result<(), Error> {
        self.tag(b'f');
        self.out.extend_from_slice(&v.to_bits().to_le_bytes());
        Ok(())
    }

    fn serialize_char(mut self, v: char) -> Result<(), Error> {
        self.tag(b'c');
        self.out.extend_from_slice(&u32::from(v).to_le_bytes());
        Ok(())
    }

    fn serialize_str(mut self, v: &str) -> Result<(), Error> {
        self.tag(b's');
        put_str(self.out, v);
        Ok(())
    }

    fn serialize_bytes(mut self, v: &[u8]) -> Result<(), Error> {
        self.tag(b'y');
        put_bytes(self.out, v);
        Ok(())
    }

    fn serialize_none(mut self) -> Result<(), Error> {
        self.tag(b'N');
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(mut self, value: &T) -> Result<(), Error> {
        self.tag(b'S');
        value.serialize(self)
    }

    fn serialize_unit(mut self) -> Result<(), Error> {
        self.tag(b'0');
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.tag(b'v');
        put_str(self.out, variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        mut self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.tag(b'n');
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.tag(b'V');
        put_str(self.out, variant);
        value.serialize(self)
    }

    fn serialize_seq(mut self, _len: Option<usize>) -> Result<Compound<'a>, Error> {
        self.tag(b'[');
        Ok(Compound {
            out: self.out,
            end: b']',
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>, Error> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, Error> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, Error> {
        self.tag(b'T');
        put_str(self.out, variant);
        Ok(Compound {
            out: self.out,
            end: b']',
        })
    }

    fn serialize_map(mut self, _len: Option<usize>) -> Result<Map<'a>, Error> {
        self.tag(b'M');
        Ok(Map {
            out: self.out,
            entries: Vec::new(),
            key: None,
        })
    }

    fn serialize_struct(mut self, _name: &'static str, _len: usize) -> Result<Compound<'a>, Error> {
        self.tag(b'{');
        Ok(Compound {
            out: self.out,
            end: b'}',
        })
    }

    fn serialize_struct_variant(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, Error> {
        self.tag(b'W');
        put_str(self.out, variant);
        Ok(Compound {
            out: self.out,
            end: b'}',
        })
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish();
        Ok(())
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish();
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish();
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish();
        Ok(())
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish();
        Ok(())
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish();
        Ok(())
    }
}

impl ser::SerializeMap for Map<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(Map::encode(key)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| Error("a map value without its key".to_owned()))?;
        self.entries.push((key, Map::encode(value)?));
        Ok(())
    }

    fn end(mut self) -> Result<(), Error> {
        // Sorted, so that a map whose iteration order varies (a `HashMap`) hashes the
        // same every time; equal keys keep their order (a stable sort).
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (k, v) in &self.entries {
            self.out.extend_from_slice(k);
            self.out.extend_from_slice(v);
        }
        self.out.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    struct Pair {
        a: String,
        b: String,
    }

    #[derive(Serialize)]
    enum Shape {
        Unit,
        New(u8),
        Tuple(u8, u8),
        Named { x: u8 },
    }

    #[test]
    fn field_boundaries_cannot_be_moved() {
        let one = to_bytes(&Pair {
            a: "ab".into(),
            b: "c".into(),
        });
        let two = to_bytes(&Pair {
            a: "a".into(),
            b: "bc".into(),
        });
        assert_ne!(one, two);
        assert_ne!(
            to_bytes(&vec![vec![1u8], vec![]]),
            to_bytes(&vec![vec![], vec![1u8]])
        );
        assert_ne!(to_bytes(&Some(())), to_bytes(&None::<()>));
        assert_ne!(to_bytes(&0u64), to_bytes(&0i64));
    }

    #[test]
    fn variants_are_told_apart_by_name_and_shape() {
        let all = [
            to_bytes(&Shape::Unit),
            to_bytes(&Shape::New(1)),
            to_bytes(&Shape::Tuple(1, 2)),
            to_bytes(&Shape::Named { x: 1 }),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn maps_hash_the_same_whatever_their_order() {
        let mut h1 = HashMap::new();
        let mut h2 = HashMap::new();
        for i in 0..64u32 {
            h1.insert(i, i * 2);
        }
        for i in (0..64u32).rev() {
            h2.insert(i, i * 2);
        }
        let b: BTreeMap<u32, u32> = h1.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(to_bytes(&h1), to_bytes(&h2));
        assert_eq!(to_bytes(&h1), to_bytes(&b));
    }

    #[test]
    fn the_encoding_is_pinned() {
        // A change here orphans every stored chain: its hashes no longer verify.
        assert_eq!(
            to_bytes(&Pair {
                a: "x".into(),
                b: String::new(),
            }),
            [
                &b"{F"[..],
                &1u64.to_le_bytes(),
                b"a",
                b"s",
                &1u64.to_le_bytes(),
                b"x",
                b"F",
                &1u64.to_le_bytes(),
                b"b",
                b"s",
                &0u64.to_le_bytes(),
                b"}",
            ]
            .concat()
        );
        assert_eq!(
            to_bytes(&Shape::New(7)),
            [
                &b"V"[..],
                &3u64.to_le_bytes(),
                b"New",
                b"u",
                &7u64.to_le_bytes()
            ]
            .concat()
        );
    }
}
