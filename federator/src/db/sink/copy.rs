//! PostgreSQL's binary `COPY` format, for samples `(bigint, timestamptz, float8)` and
//! rollup rows.
//!
//! The format (PostgreSQL documentation, "COPY", "Binary Format"): an 11-byte
//! signature `PGCOPY\n\377\r\n\0`, a 32-bit flags field (0) and a 32-bit header
//! extension length (0); then one tuple per row: a 16-bit field count followed by
//! each field as a 32-bit length and that many bytes in the type's binary send
//! format; then a 16-bit `-1` trailer. Every integer is big-endian (network order).
//!
//! * `bigint`: 8 bytes, two's complement;
//! * `timestamptz`: 8 bytes, microseconds since 2000-01-01 00:00:00 UTC;
//! * `double precision`: the 8 bytes of the IEEE 754 value;
//! * `boolean`: 1 byte, 0 or 1;
//! * a one-dimensional array (`array_send`): the number of dimensions (1), a
//!   has-NULLs flag (0), the element type's OID, the length and the lower bound (1),
//!   then each element as a 32-bit length and its bytes;
//! * NULL: a field length of −1 and no bytes.

/// Milliseconds from the Unix epoch to the PostgreSQL epoch (2000-01-01 UTC).
pub const PG_EPOCH_UNIX_MS: i64 = 946_684_800_000;

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Bytes per `(bigint, timestamptz, float8)` tuple: field count + 3 × (length + 8).
const ROW_LEN: usize = 2 + 3 * (4 + 8);

/// A binary `COPY` payload being written: the header, then rows, then the trailer.
#[derive(Debug)]
struct Payload {
    buf: Vec<u8>,
    rows: usize,
}

impl Payload {
    /// The header, with room for `bytes` bytes of rows.
    fn with_capacity(bytes: usize) -> Payload {
        let mut buf = Vec::with_capacity(SIGNATURE.len() + 8 + bytes + 2);
        buf.extend_from_slice(SIGNATURE);
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        Payload { buf, rows: 0 }
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

/// A binary `COPY` payload of `(series_id bigint, ts timestamptz, value float8)` rows.
#[derive(Debug)]
pub struct SampleCopy {
    p: Payload,
}

impl SampleCopy {
    /// An empty payload with room for `rows` rows.
    pub fn with_capacity(rows: usize) -> Self {
        SampleCopy {
            p: Payload::with_capacity(rows * ROW_LEN),
        }
    }

    /// Appends one row. `ts_ms` is milliseconds since the Unix epoch; every `i64`
    /// millisecond value converts without overflow except the extreme ends, which
    /// saturate (PostgreSQL rejects them as out of range).
    pub fn push(&mut self, series_id: i64, ts_ms: i64, value: f64) {
        let micros = ts_ms.saturating_sub(PG_EPOCH_UNIX_MS).saturating_mul(1000);
        self.p.buf.extend_from_slice(&3i16.to_be_bytes());
        self.p.buf.extend_from_slice(&8i32.to_be_bytes());
        self.p.buf.extend_from_slice(&series_id.to_be_bytes());
        self.p.buf.extend_from_slice(&8i32.to_be_bytes());
        self.p.buf.extend_from_slice(&micros.to_be_bytes());
        self.p.buf.extend_from_slice(&8i32.to_be_bytes());
        self.p.buf.extend_from_slice(&value.to_bits().to_be_bytes());
        self.p.rows += 1;
    }

    /// Rows appended so far.
    pub fn rows(&self) -> usize {
        self.p.rows
    }

    /// The complete payload, trailer included.
    pub fn finish(self) -> Vec<u8> {
        self.p.finish()
    }
}

/// One rollup row: `(series_id, bucket, count, sum, min, max, last, increase,
/// increase_secs, after_gap)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollupRow {
    pub series_id: i64,
    /// Bucket start, ms since the Unix epoch.
    pub bucket_ms: i64,
    pub count: i64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
    /// `None` for gauges, and for counters when nothing is known (SQL NULL).
    pub increase: Option<f64>,
    /// The time the increase covers, in seconds; `None` with `increase`.
    pub increase_secs: Option<f64>,
    /// A sample of the bucket follows a recorded gap or a long silence.
    pub after_gap: bool,
}

/// A binary `COPY` payload of [`RollupRow`]s, in the column order of
/// `samples_1m (series_id, bucket, count, sum, min, max, last, increase,
/// increase_secs, after_gap)`.
#[derive(Debug)]
pub struct RollupCopy {
    p: Payload,
}

impl RollupCopy {
    pub fn new() -> Self {
        RollupCopy {
            p: Payload::with_capacity(0),
        }
    }

    pub fn push(&mut self, r: &RollupRow) {
        let micros = r
            .bucket_ms
            .saturating_sub(PG_EPOCH_UNIX_MS)
            .saturating_mul(1000);
        self.p.buf.extend_from_slice(&10i16.to_be_bytes());
        for field in [
            r.series_id.to_be_bytes(),
            micros.to_be_bytes(),
            r.count.to_be_bytes(),
        ] {
            self.p.buf.extend_from_slice(&8i32.to_be_bytes());
            self.p.buf.extend_from_slice(&field);
        }
        for v in [r.sum, r.min, r.max, r.last] {
            self.p.buf.extend_from_slice(&8i32.to_be_bytes());
            self.p.buf.extend_from_slice(&v.to_bits().to_be_bytes());
        }
        for v in [r.increase, r.increase_secs] {
            match v {
                Some(v) => {
                    self.p.buf.extend_from_slice(&8i32.to_be_bytes());
                    self.p.buf.extend_from_slice(&v.to_bits().to_be_bytes());
                }
                None => self.p.buf.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        // boolean: 1 byte.
        self.p.buf.extend_from_slice(&1i32.to_be_bytes());
        self.p.buf.push(u8::from(r.after_gap));
        self.p.rows += 1;
    }

    pub fn rows(&self) -> usize {
        self.p.rows
    }

    pub fn finish(self) -> Vec<u8> {
        self.p.finish()
    }
}

/// OIDs of the array element types sent.
const INT4_OID: i32 = 23;
const FLOAT8_OID: i32 = 701;

impl Payload {
    fn int8(&mut self, v: i64) {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn timestamptz(&mut self, ms: i64) {
        self.int8(ms.saturating_sub(PG_EPOCH_UNIX_MS).saturating_mul(1000));
    }

    /// A one-dimensional array of `n` elements of `width` bytes each, written by
    /// `elements` (each element's bytes only; the lengths are written here).
    fn array(&mut self, oid: i32, width: usize, n: usize, elements: impl Fn(usize, &mut Vec<u8>)) {
        let len = 20 + n * (4 + width);
        self.buf.extend_from_slice(&(len as i32).to_be_bytes());
        for v in [1i32, 0, oid, n as i32, 1] {
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
        for i in 0..n {
            self.buf.extend_from_slice(&(width as i32).to_be_bytes());
            elements(i, &mut self.buf);
        }
    }
}

/// A binary `COPY` payload of `sample_times (id, lo, agent_id, offsets)` rows
/// (migration 0080): one window's timestamps as milliseconds after `lo`.
#[derive(Debug)]
pub struct TimesCopy {
    p: Payload,
}

impl TimesCopy {
    pub fn new() -> Self {
        TimesCopy {
            p: Payload::with_capacity(0),
        }
    }

    /// `ts_ms` ascending, the first being `lo`, all within `i32` milliseconds of it.
    pub fn push(&mut self, id: i64, agent_id: i64, ts_ms: &[i64]) {
        let lo = ts_ms[0];
        self.p.buf.extend_from_slice(&4i16.to_be_bytes());
        self.p.int8(id);
        self.p.timestamptz(lo);
        self.p.int8(agent_id);
        self.p.array(INT4_OID, 4, ts_ms.len(), |i, buf| {
            buf.extend_from_slice(&((ts_ms[i] - lo) as i32).to_be_bytes());
        });
        self.p.rows += 1;
    }

    pub fn finish(self) -> Vec<u8> {
        self.p.finish()
    }
}

impl Default for TimesCopy {
    fn default() -> Self {
        Self::new()
    }
}

/// A binary `COPY` payload of `samples_packed (series_id, lo, hi, times_id, vals)`
/// rows (migration 0080).
#[derive(Debug)]
pub struct PackedCopy {
    p: Payload,
}

impl PackedCopy {
    pub fn new() -> Self {
        PackedCopy {
            p: Payload::with_capacity(0),
        }
    }

    /// One series' samples of one window, `(ts_ms, value)` ascending, timestamps
    /// `times_id`'s: the values go as one element when all are bitwise equal.
    pub fn push(&mut self, series_id: i64, times_id: i64, samples: &[(i64, f64)]) {
        let (lo, hi) = (samples[0].0, samples[samples.len() - 1].0);
        let first = samples[0].1.to_bits();
        let constant = samples.iter().all(|s| s.1.to_bits() == first);
        let n = if constant { 1 } else { samples.len() };
        self.p.buf.extend_from_slice(&5i16.to_be_bytes());
        self.p.int8(series_id);
        self.p.timestamptz(lo);
        self.p.timestamptz(hi);
        self.p.int8(times_id);
        self.p.array(FLOAT8_OID, 8, n, |i, buf| {
            buf.extend_from_slice(&samples[i].1.to_bits().to_be_bytes());
        });
        self.p.rows += 1;
    }

    pub fn finish(self) -> Vec<u8> {
        self.p.finish()
    }
}

impl Default for PackedCopy {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for RollupCopy {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_matches_the_documented_layout() {
        let mut copy = SampleCopy::with_capacity(1);
        // 2000-01-01 00:00:01.5 UTC
        copy.push(7, PG_EPOCH_UNIX_MS + 1500, 1.0);
        assert_eq!(copy.rows(), 1);
        let bytes = copy.finish();
        let mut want = b"PGCOPY\n\xff\r\n\0".to_vec();
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[0, 3]);
        want.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]);
        want.extend_from_slice(&[0, 0, 0, 8]);
        want.extend_from_slice(&1_500_000i64.to_be_bytes());
        want.extend_from_slice(&[0, 0, 0, 8, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(bytes, want);
    }

    #[test]
    fn times_before_2000_are_negative_microseconds() {
        let mut copy = SampleCopy::with_capacity(1);
        copy.push(1, 0, 0.0); // the Unix epoch
        let bytes = copy.finish();
        let micros = i64::from_be_bytes(bytes[19 + 18..19 + 26].try_into().unwrap());
        assert_eq!(micros, -PG_EPOCH_UNIX_MS * 1000);
    }
}
