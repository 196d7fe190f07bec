//! Little-endian integers, LEB128 varints and bounded reads (FORMAT.md, "Primitive types").

use crate::error::{DecodeError, Section};
use crate::model::MAX_STRING_LEN;

/// Longest LEB128 encoding of a `u64`.
const MAX_VARINT_LEN: usize = 10;

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes `put_varint` writes for `v`.
pub(crate) const fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

pub(crate) const fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) const fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A cursor over untrusted bytes. Every read is bounds-checked and errors carry the
/// absolute offset (`base` + position) in the named section.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    section: Section,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize, section: Section) -> Self {
        Reader {
            buf,
            pos: 0,
            base,
            section,
        }
    }

    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn truncated(&self, what: &'static str, needed: usize) -> DecodeError {
        DecodeError::Truncated {
            section: self.section,
            offset: self.offset(),
            what,
            needed,
            available: self.remaining(),
        }
    }

    pub(crate) fn invalid_at(
        &self,
        offset: usize,
        what: &'static str,
        detail: impl Into<String>,
    ) -> DecodeError {
        DecodeError::Invalid {
            section: self.section,
            offset,
            what,
            detail: detail.into(),
        }
    }

    pub(crate) fn limit_at(
        &self,
        offset: usize,
        what: &'static str,
        value: u64,
        max: u64,
    ) -> DecodeError {
        DecodeError::LimitExceeded {
            section: self.section,
            offset,
            what,
            value,
            max,
        }
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(self.truncated(what, n));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// A `u32` that must be at most `max`; a larger one is a limit error at the
    /// field's offset.
    pub(crate) fn u32_at_most(
        &mut self,
        what: &'static str,
        max: usize,
    ) -> Result<usize, DecodeError> {
        let offset = self.offset();
        let v = self.u32(what)?;
        if v as usize > max {
            return Err(self.limit_at(offset, what, u64::from(v), max as u64));
        }
        Ok(v as usize)
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    /// An unsigned LEB128 varint of at most 10 bytes whose value fits in 64 bits.
    #[inline]
    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut value = 0u64;
        for i in 0..MAX_VARINT_LEN {
            let Some(&byte) = self.buf.get(self.pos) else {
                self.pos = start;
                return Err(self.truncated(what, i + 1));
            };
            self.pos += 1;
            let low = u64::from(byte & 0x7f);
            if i == MAX_VARINT_LEN - 1 && byte > 1 {
                let offset = self.base + start;
                self.pos = start;
                return Err(self.invalid_at(offset, what, "varint overflows 64 bits"));
            }
            value |= low << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        let offset = self.base + start;
        self.pos = start;
        Err(self.invalid_at(offset, what, "varint longer than 10 bytes"))
    }

    /// Steps over `n` varints without decoding them: it only counts their last bytes
    /// (high bit clear), eight bytes at a time.
    pub(crate) fn skip_varints(&mut self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let mut left = n;
        let mut pos = self.pos;
        while left > 0 {
            if let Some(chunk) = self.buf.get(pos..pos + 8) {
                let word = u64::from_le_bytes([
                    chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
                ]);
                let ends = (!word & HIGH).count_ones() as usize;
                if ends < left {
                    left -= ends;
                    pos += 8;
                    continue;
                }
            }
            // Fewer than eight bytes left, or the last varint ends in this word.
            match self.buf.get(pos) {
                Some(&b) => {
                    pos += 1;
                    if b & 0x80 == 0 {
                        left -= 1;
                    }
                }
                None => {
                    self.pos = pos;
                    return Err(self.truncated(what, left));
                }
            }
        }
        self.pos = pos;
        Ok(())
    }

    /// A varint that must not exceed `max`, as a `usize`.
    pub(crate) fn bounded(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let offset = self.offset();
        let v = self.varint(what)?;
        if v > max as u64 {
            return Err(self.limit_at(offset, what, v, max as u64));
        }
        Ok(v as usize)
    }

    /// A count of items that each take at least `min_item_bytes` of the rest of the
    /// input, so the count can size an allocation safely.
    pub(crate) fn count(
        &mut self,
        what: &'static str,
        max: usize,
        min_item_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let offset = self.offset();
        let n = self.bounded(what, max)?;
        let fit = self.remaining() / min_item_bytes.max(1);
        if n > fit {
            return Err(DecodeError::Truncated {
                section: self.section,
                offset,
                what,
                needed: n.saturating_mul(min_item_bytes),
                available: self.remaining(),
            });
        }
        Ok(n)
    }

    pub(crate) fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let offset = self.offset();
        let len = self.bounded(what, MAX_STRING_LEN)?;
        let raw = self.bytes(len, what)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(self.invalid_at(offset, what, format!("not UTF-8: {e}"))),
        }
    }

    pub(crate) fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                section: self.section,
                offset: self.offset(),
                what,
                count: self.remaining(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_length() {
        let mut values = vec![0u64, 1, 127, 128, 300, u64::MAX, u64::MAX - 1];
        values.extend((0..64).map(|s| 1u64 << s));
        for v in values {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut r = Reader::new(&out, 0, Section::Payload);
            assert_eq!(r.varint("v").unwrap(), v);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn overlong_and_overflowing_varints_are_rejected() {
        let eleven = [0x80u8; 11];
        assert!(
            Reader::new(&eleven, 0, Section::Payload)
                .varint("v")
                .is_err()
        );
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(matches!(
            Reader::new(&overflow, 0, Section::Payload).varint("v"),
            Err(DecodeError::Invalid { offset: 0, .. })
        ));
    }

    #[test]
    fn skipping_varints_lands_where_decoding_does() {
        let values: Vec<u64> = (0..200u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (i % 64))
            .collect();
        let mut buf = Vec::new();
        for &v in &values {
            put_varint(&mut buf, v);
        }
        buf.extend_from_slice(&[0xff, 0x01]);
        for n in [1, 7, 8, 9, 100, 200] {
            let mut a = Reader::new(&buf, 0, Section::Payload);
            for _ in 0..n {
                a.varint("v").unwrap();
            }
            let mut b = Reader::new(&buf, 0, Section::Payload);
            b.skip_varints(n, "v").unwrap();
            assert_eq!(a.offset(), b.offset(), "n = {n}");
        }
        let mut r = Reader::new(&buf[..3], 0, Section::Payload);
        assert!(r.skip_varints(10, "v").is_err());
    }

    #[test]
    fn zigzag_round_trips_extremes() {
        for v in [0i64, -1, 1, i64::MIN, i64::MAX, -64, 63] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }
}
