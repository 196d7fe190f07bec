//! Value-column encodings (FORMAT.md, "Value encodings").
//!
//! Each series' values in a block are encoded by whichever of these is smallest
//! for that column; zstd then runs over the whole block payload.

use crate::error::DecodeError;
use crate::wire::{Reader, put_varint, unzigzag, varint_len, zigzag};

/// Every value has the same bit pattern: 8 bytes, the `f64` bits.
pub const ENC_CONSTANT: u8 = 0;
/// Plain `f64` bits, 8 bytes per value.
pub const ENC_RAW: u8 = 1;
/// Gorilla XOR bit stream.
pub const ENC_XOR: u8 = 2;
/// Decimal integers `m / 10^scale`, first value then deltas divided by a common factor.
pub const ENC_DELTA: u8 = 3;
/// Decimal integers, first value, first delta, then delta-of-deltas divided by a common factor.
pub const ENC_DELTA_OF_DELTA: u8 = 4;

/// How a column's values are stored (FORMAT.md, "Value encodings").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueEncoding {
    Constant,
    Raw,
    Xor,
    Delta,
    DeltaOfDelta,
}

impl ValueEncoding {
    pub(crate) fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            ENC_CONSTANT => ValueEncoding::Constant,
            ENC_RAW => ValueEncoding::Raw,
            ENC_XOR => ValueEncoding::Xor,
            ENC_DELTA => ValueEncoding::Delta,
            ENC_DELTA_OF_DELTA => ValueEncoding::DeltaOfDelta,
            _ => return None,
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            ValueEncoding::Constant => "constant",
            ValueEncoding::Raw => "raw",
            ValueEncoding::Xor => "xor",
            ValueEncoding::Delta => "delta",
            ValueEncoding::DeltaOfDelta => "delta_of_delta",
        }
    }
}

/// Largest decimal scale: `10^18` is exact in an `f64`.
pub const MAX_SCALE: u8 = 18;
/// Decimal mantissas stay within ±2^53, where every integer is an exact `f64`.
const MAX_MANTISSA: i64 = 1 << 53;

const POW10: [f64; MAX_SCALE as usize + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18,
];

/// The value a decimal mantissa stands for. Shared by encoder and decoder so the
/// encoder's exactness check is the decoder's computation.
#[inline]
fn decimal_value(m: i64, scale: u8) -> f64 {
    if scale == 0 {
        m as f64
    } else {
        m as f64 / POW10[usize::from(scale)]
    }
}

/// The mantissa of `v` at `scale`, if `v` is exactly that decimal.
#[inline]
fn mantissa_at(v: f64, scale: u8) -> Option<i64> {
    let m = (v * POW10[usize::from(scale)]).round();
    if m.is_nan() || m.abs() > MAX_MANTISSA as f64 {
        return None;
    }
    let m = m as i64;
    (decimal_value(m, scale).to_bits() == v.to_bits()).then_some(m)
}

/// The smallest scale at which every value is an exact decimal, if any.
fn common_scale(values: &[f64]) -> Option<u8> {
    let mut scale = 0u8;
    for &v in values {
        if mantissa_at(v, scale).is_some() {
            continue;
        }
        // A decimal exact at one scale is exact at every larger one, so search upwards.
        scale = (scale + 1..=MAX_SCALE).find(|&s| mantissa_at(v, s).is_some())?;
    }
    Some(scale)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Scratch space reused across columns.
#[derive(Debug, Default)]
pub(crate) struct ValueEncoder {
    mantissas: Vec<i64>,
    xor: Vec<u8>,
}

/// Which encoding a column got, for statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chosen {
    pub tag: u8,
}

impl ValueEncoder {
    /// Appends the chosen encoding's parameters and data for `values` (at least one)
    /// to `out`, returning the tag the column header records.
    pub(crate) fn encode(&mut self, values: &[f64], out: &mut Vec<u8>) -> Chosen {
        debug_assert!(!values.is_empty());
        let first = values[0].to_bits();
        if values.iter().all(|v| v.to_bits() == first) {
            out.extend_from_slice(&first.to_le_bytes());
            return Chosen { tag: ENC_CONSTANT };
        }
        let raw_size = values.len() * 8;
        let mut best_int = None;
        self.mantissas.clear();
        let scale = common_scale(values);
        if let Some(scale) = scale {
            // A value exact at a smaller scale can still miss at `scale` when its
            // mantissa there outgrows ±2^53, so every value is checked again.
            self.mantissas
                .extend(values.iter().map_while(|&v| mantissa_at(v, scale)));
        }
        if let Some(scale) = scale.filter(|_| self.mantissas.len() == values.len()) {
            let (delta_size, delta_gcd) = delta_cost(&self.mantissas);
            let (dod_size, dod_gcd) = dod_cost(&self.mantissas);
            best_int = Some(if dod_size < delta_size {
                (dod_size, ENC_DELTA_OF_DELTA, scale, dod_gcd)
            } else {
                (delta_size, ENC_DELTA, scale, delta_gcd)
            });
        }
        if let Some((size, tag, scale, g)) = best_int {
            // Integers rarely lose to XOR; only try it when the varints are long.
            if size <= values.len() * 4 {
                write_int(out, tag, scale, g, &self.mantissas);
                return Chosen { tag };
            }
        }
        self.xor.clear();
        xor_encode(values, &mut self.xor);
        let xor_size = self.xor.len();
        match best_int {
            Some((size, tag, scale, g)) if size <= xor_size && size <= raw_size => {
                write_int(out, tag, scale, g, &self.mantissas);
                Chosen { tag }
            }
            _ if xor_size < raw_size => {
                out.extend_from_slice(&self.xor);
                Chosen { tag: ENC_XOR }
            }
            _ => {
                for v in values {
                    out.extend_from_slice(&v.to_bits().to_le_bytes());
                }
                Chosen { tag: ENC_RAW }
            }
        }
    }
}

/// Size of the delta encoding's parameters and data, and its common factor.
fn delta_cost(m: &[i64]) -> (usize, u64) {
    let g = m
        .windows(2)
        .fold(0, |g, w| gcd(g, w[1].wrapping_sub(w[0]).unsigned_abs()))
        .max(1);
    let body: usize = m
        .windows(2)
        .map(|w| varint_len(zigzag(w[1].wrapping_sub(w[0]) / g as i64)))
        .sum();
    (2 + varint_len(g) + varint_len(zigzag(m[0])) + body, g)
}

/// Size of the delta-of-delta encoding's parameters and data, and its common factor.
fn dod_cost(m: &[i64]) -> (usize, u64) {
    let dod = |w: &[i64]| (w[2] - w[1]) - (w[1] - w[0]);
    let g = m
        .windows(3)
        .fold(0, |g, w| gcd(g, dod(w).unsigned_abs()))
        .max(1);
    let body: usize = m
        .windows(3)
        .map(|w| varint_len(zigzag(dod(w) / g as i64)))
        .sum();
    let first_delta = m.get(1).map_or(0, |m1| varint_len(zigzag(m1 - m[0])));
    (
        2 + varint_len(g) + varint_len(zigzag(m[0])) + first_delta + body,
        g,
    )
}

/// Writes the parameters and data of `ENC_DELTA` or `ENC_DELTA_OF_DELTA`.
/// Mantissas are within ±2^53, so no difference below overflows.
fn write_int(out: &mut Vec<u8>, tag: u8, scale: u8, g: u64, m: &[i64]) {
    out.push(scale);
    put_varint(out, g);
    put_varint(out, zigzag(m[0]));
    let g = g as i64;
    if tag == ENC_DELTA {
        for w in m.windows(2) {
            put_varint(out, zigzag((w[1] - w[0]) / g));
        }
    } else {
        if m.len() >= 2 {
            put_varint(out, zigzag(m[1] - m[0]));
        }
        for w in m.windows(3) {
            put_varint(out, zigzag(((w[2] - w[1]) - (w[1] - w[0])) / g));
        }
    }
}

/// Gorilla XOR encoding, bits most significant first, zero-padded to a byte.
fn xor_encode(values: &[f64], out: &mut Vec<u8>) {
    let mut w = BitWriter::new(out);
    let mut prev = values[0].to_bits();
    w.write(prev, 64);
    let mut window: Option<(u32, u32)> = None; // (leading, trailing) of the last stored bits
    for v in &values[1..] {
        let bits = v.to_bits();
        let x = bits ^ prev;
        prev = bits;
        if x == 0 {
            w.write(0, 1);
            continue;
        }
        let leading = x.leading_zeros().min(31);
        let trailing = x.trailing_zeros();
        match window {
            Some((l, t)) if leading >= l && trailing >= t => {
                w.write(0b10, 2);
                w.write(x >> t, 64 - l - t);
            }
            _ => {
                let meaningful = 64 - leading - trailing;
                w.write(0b11, 2);
                w.write(u64::from(leading), 5);
                w.write(u64::from(meaningful - 1), 6);
                w.write(x >> trailing, meaningful);
                window = Some((leading, trailing));
            }
        }
    }
    w.finish();
}

struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    used: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter {
            out,
            acc: 0,
            used: 0,
        }
    }

    /// Writes the low `n` bits of `v` (1 ≤ n ≤ 64), most significant first.
    fn write(&mut self, v: u64, n: u32) {
        let v = if n == 64 { v } else { v & ((1u64 << n) - 1) };
        let free = 64 - self.used;
        if n < free {
            self.acc |= v << (free - n);
            self.used += n;
        } else {
            let spill = n - free;
            self.acc |= v >> spill;
            self.out.extend_from_slice(&self.acc.to_be_bytes());
            self.acc = if spill == 0 { 0 } else { v << (64 - spill) };
            self.used = spill;
        }
    }

    fn finish(self) {
        let bytes = self.used.div_ceil(8) as usize;
        self.out.extend_from_slice(&self.acc.to_be_bytes()[..bytes]);
    }
}

struct BitReader<'r, 'a> {
    r: &'r mut Reader<'a>,
    acc: u64,
    avail: u32,
}

impl<'r, 'a> BitReader<'r, 'a> {
    fn new(r: &'r mut Reader<'a>) -> Self {
        BitReader {
            r,
            acc: 0,
            avail: 0,
        }
    }

    /// Reads `n` bits (1 ≤ n ≤ 64), most significant first.
    fn read(&mut self, n: u32) -> Result<u64, DecodeError> {
        let mut out = 0u64;
        let mut need = n;
        while need > 0 {
            if self.avail == 0 {
                self.acc = u64::from(self.r.u8("XOR bit stream")?);
                self.avail = 8;
            }
            let take = need.min(self.avail);
            let shift = self.avail - take;
            let chunk = (self.acc >> shift) & ((1u64 << take) - 1);
            out = if take == 64 {
                chunk
            } else {
                (out << take) | chunk
            };
            self.avail -= take;
            need -= take;
        }
        Ok(out)
    }
}

/// Decodes `n` values (at least one) of encoding `tag` from `r`, appending to `out`.
/// `out` must have room reserved by the caller, which bounds `n`.
pub(crate) fn decode(
    r: &mut Reader<'_>,
    tag: u8,
    n: usize,
    out: &mut Vec<f64>,
) -> Result<(), DecodeError> {
    let Some(encoding) = ValueEncoding::from_tag(tag) else {
        let offset = r.offset();
        return Err(r.invalid_at(
            offset,
            "value encoding",
            format!(
                "{tag} is not one of 0 (constant), 1 (raw), 2 (xor), 3 (delta), 4 (delta of delta)"
            ),
        ));
    };
    match encoding {
        ValueEncoding::Constant => {
            let v = f64::from_bits(r.u64("constant value")?);
            out.extend(std::iter::repeat_n(v, n));
        }
        ValueEncoding::Raw => {
            let bytes = r.bytes(n * 8, "raw values")?;
            out.extend(bytes.chunks_exact(8).map(|c| {
                f64::from_bits(u64::from_le_bytes([
                    c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
                ]))
            }));
        }
        ValueEncoding::Xor => decode_xor(r, n, out)?,
        ValueEncoding::Delta | ValueEncoding::DeltaOfDelta => decode_int(r, tag, n, out)?,
    }
    Ok(())
}

/// Steps over `n` values (at least one) of encoding `tag` without materialising
/// them, checking only what is needed to find their end (their mantissas are not
/// range-checked: nobody reads them).
pub(crate) fn skip(
    r: &mut Reader<'_>,
    tag: u8,
    n: usize,
    scratch: &mut Vec<f64>,
) -> Result<(), DecodeError> {
    match ValueEncoding::from_tag(tag) {
        Some(ValueEncoding::Constant) => r.bytes(8, "constant value").map(drop),
        Some(ValueEncoding::Raw) => r.bytes(n * 8, "raw values").map(drop),
        Some(ValueEncoding::Delta | ValueEncoding::DeltaOfDelta) => {
            // Scale and factor, then the first value and n - 1 differences.
            r.u8("decimal scale")?;
            r.varint("common factor")?;
            r.skip_varints(n, "delta")
        }
        _ => {
            scratch.clear();
            decode(r, tag, n, scratch)
        }
    }
}

fn decode_int(
    r: &mut Reader<'_>,
    tag: u8,
    n: usize,
    out: &mut Vec<f64>,
) -> Result<(), DecodeError> {
    let scale_offset = r.offset();
    let scale = r.u8("decimal scale")?;
    if scale > MAX_SCALE {
        return Err(r.limit_at(
            scale_offset,
            "decimal scale",
            u64::from(scale),
            u64::from(MAX_SCALE),
        ));
    }
    mantissas(r, tag, n, |m| out.push(decimal_value(m, scale)))
}

/// Reads the factor and the `n` mantissas of a decimal column (after its scale),
/// handing each to `sink`; every mantissa must lie within ±2^53.
#[inline]
fn mantissas(
    r: &mut Reader<'_>,
    tag: u8,
    n: usize,
    mut sink: impl FnMut(i64),
) -> Result<(), DecodeError> {
    let g_offset = r.offset();
    let g = r.varint("common factor")?;
    if g == 0 {
        return Err(r.invalid_at(g_offset, "common factor", "0; it must be at least 1"));
    }
    let g = g as i64;
    // `at` is where the difference just read began.
    let check = |r: &Reader<'_>, m: i64, at: usize| {
        if m.unsigned_abs() > MAX_MANTISSA as u64 {
            Err(r.invalid_at(at, "decimal mantissa", format!("{m} is outside ±2^53")))
        } else {
            Ok(m)
        }
    };
    let mut at = r.offset();
    let mut m = unzigzag(r.varint("first value")?);
    sink(check(r, m, at)?);
    if n == 1 {
        return Ok(());
    }
    if tag == ENC_DELTA {
        for _ in 1..n {
            at = r.offset();
            m = m.wrapping_add(unzigzag(r.varint("delta")?).wrapping_mul(g));
            sink(check(r, m, at)?);
        }
    } else {
        at = r.offset();
        let mut d = unzigzag(r.varint("first delta")?);
        m = m.wrapping_add(d);
        sink(check(r, m, at)?);
        for _ in 2..n {
            at = r.offset();
            d = d.wrapping_add(unzigzag(r.varint("delta of delta")?).wrapping_mul(g));
            m = m.wrapping_add(d);
            sink(check(r, m, at)?);
        }
    }
    Ok(())
}

fn decode_xor(r: &mut Reader<'_>, n: usize, out: &mut Vec<f64>) -> Result<(), DecodeError> {
    let mut b = BitReader::new(r);
    let mut prev = b.read(64)?;
    out.push(f64::from_bits(prev));
    let mut window: Option<(u32, u32)> = None;
    for _ in 1..n {
        if b.read(1)? == 0 {
            out.push(f64::from_bits(prev));
            continue;
        }
        let (leading, meaningful) = if b.read(1)? == 0 {
            match window {
                Some((l, m)) => (l, m),
                None => {
                    let offset = b.r.offset();
                    return Err(b.r.invalid_at(
                        offset,
                        "XOR bit stream",
                        "reuses a bit window before any was set",
                    ));
                }
            }
        } else {
            let leading = b.read(5)? as u32;
            let meaningful = b.read(6)? as u32 + 1;
            if leading + meaningful > 64 {
                let offset = b.r.offset();
                return Err(b.r.invalid_at(
                    offset,
                    "XOR bit stream",
                    format!("{leading} leading zeros plus {meaningful} meaningful bits exceed 64"),
                ));
            }
            window = Some((leading, meaningful));
            (leading, meaningful)
        };
        let x = b.read(meaningful)? << (64 - leading - meaningful);
        prev ^= x;
        out.push(f64::from_bits(prev));
    }
    if b.avail > 0 && b.acc & ((1u64 << b.avail) - 1) != 0 {
        let offset = b.r.offset() - 1;
        return Err(b.r.invalid_at(
            offset,
            "XOR bit stream",
            "padding bits after the last value are not zero",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Section;

    fn round_trip(values: &[f64]) -> u8 {
        round_trip_sized(values).0
    }

    /// Round-trips `values`, returning the chosen tag and the encoded size.
    fn round_trip_sized(values: &[f64]) -> (u8, usize) {
        let mut enc = ValueEncoder::default();
        let mut out = Vec::new();
        let chosen = enc.encode(values, &mut out);
        let mut r = Reader::new(&out, 0, Section::Payload);
        let mut back = Vec::new();
        decode(&mut r, chosen.tag, values.len(), &mut back).unwrap();
        assert!(r.is_empty(), "trailing bytes for tag {}", chosen.tag);
        let a: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
        let b: Vec<u64> = back.iter().map(|v| v.to_bits()).collect();
        assert_eq!(a, b, "tag {}", chosen.tag);
        (chosen.tag, out.len())
    }

    #[test]
    fn picks_the_encoding_that_fits() {
        assert_eq!(round_trip(&[5.0; 10]), ENC_CONSTANT);
        assert_eq!(round_trip(&[f64::NAN; 3]), ENC_CONSTANT);
        let linear: Vec<f64> = (0..100).map(|i| 1000.0 + 8192.0 * f64::from(i)).collect();
        // A common factor of 8192 makes every step one byte, whichever integer form wins.
        let (tag, size) = round_trip_sized(&linear);
        assert!(matches!(tag, ENC_DELTA | ENC_DELTA_OF_DELTA));
        assert!(size <= linear.len() + 8, "{size} bytes");
        let counter: Vec<f64> = (0..100).map(|i| f64::from(i * i % 97) * 3.0).collect();
        assert!(matches!(
            round_trip(&counter),
            ENC_DELTA | ENC_DELTA_OF_DELTA
        ));
        let decimal: Vec<f64> = [12.34, 12.35, 12.5, 13.01, 12.99].to_vec();
        assert!(matches!(
            round_trip(&decimal),
            ENC_DELTA | ENC_DELTA_OF_DELTA
        ));
        let noise: Vec<f64> = (0..100)
            .map(|i| (f64::from(i) * 0.7).sin() * 1e-3)
            .collect();
        assert!(matches!(round_trip(&noise), ENC_XOR | ENC_RAW));
    }

    #[test]
    fn special_values_survive_bit_exact() {
        round_trip(&[0.0, -0.0, 0.0, -0.0]);
        round_trip(&[f64::INFINITY, f64::NEG_INFINITY, 1.0]);
        round_trip(&[
            f64::from_bits(0x7ff8_0000_0000_0001),
            f64::from_bits(0xfff0_0000_dead_beef),
            2.0,
        ]);
        round_trip(&[f64::MAX, f64::MIN, f64::MIN_POSITIVE, 5e-324]);
        round_trip(&[9007199254740992.0, 9007199254740993.0, -9007199254740992.0]);
        round_trip(&[1.0, 1e300, 1.0]);
        round_trip(&[0.1 + 0.2, 0.3]);
    }

    #[test]
    fn decimals_whose_common_scale_overflows_are_not_stored_as_decimals() {
        // -1291.39 is exact at scale 2 but its mantissa at scale 13 (needed by
        // 282.5495208672624) is past 2^53: found by the round-trip property test.
        round_trip(&[-5.32135, -1291.39, 282.5495208672624]);
        round_trip(&[282.5495208672624, -1291.39]);
    }

    #[test]
    fn common_scale_finds_the_smallest_decimal_scale() {
        assert_eq!(common_scale(&[1.0, 2.0]), Some(0));
        assert_eq!(common_scale(&[1.5, 2.25]), Some(2));
        assert_eq!(common_scale(&[0.001, 3.0]), Some(3));
        assert_eq!(common_scale(&[-0.0]), None);
        assert_eq!(common_scale(&[f64::NAN]), None);
        assert_eq!(common_scale(&[1e300]), None);
    }
}
