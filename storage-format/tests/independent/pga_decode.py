#!/usr/bin/env python3
"""Independent decoder for the pgAnalytics block format, version 1.

Written from storage-format/FORMAT.md alone (no crate source), to check that the
page suffices. Standard library only; zstd payloads go through the `zstd` CLI.

Usage:
    pga_decode.py FILE            print the decoded frame(s) as JSON
    pga_decode.py --check DIR     compare every DIR/*.bin with DIR/*.expected.json
"""
import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

MASK64 = (1 << 64) - 1
MiB = 1 << 20
MAX_SERIES, MAX_RANGES, MAX_PAYLOAD = 1 << 24, 16 * MiB, 64 * MiB
MAX_TIMESTAMPS, MAX_SAMPLES, MAX_EVENTS = 1 << 24, 1 << 24, 1 << 20
MAX_STRING, MAX_LABELS, MAX_SCALE = MiB, 256, 18
# Names used in the JSON output (see the "Golden vectors" section).
FRAME_KINDS = {1: "block", 2: "dictionary"}
COMPRESSIONS = {0: "none", 1: "zstd"}
SEVERITIES = ["DEBUG5", "DEBUG4", "DEBUG3", "DEBUG2", "DEBUG1", "LOG", "INFO",
              "NOTICE", "WARNING", "ERROR", "FATAL", "PANIC"]
EVENT_KINDS = ["error", "slow_statement", "checkpoint", "autovacuum", "autoanalyze",
               "lock_wait", "deadlock", "temp_file", "connection", "disconnection",
               "auth_failure", "other"]
SERIES_KINDS = ["counter", "gauge"]
OPTIONAL_STRINGS = ["instance", "user", "database", "application"]  # flag bits 3..6
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
SQLSTATE = re.compile(rb"[0-9A-Z]{5}")


class FormatError(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise FormatError(msg)


def wrap_i64(v):
    """Reduce an integer modulo 2^64 into the signed i64 range."""
    v &= MASK64
    return v - (1 << 64) if v >> 63 else v


def hex64(bits):  # the golden vectors' spelling of f64 bits: 16 lowercase hex digits
    return f"{bits:016x}"


# ---------------------------------------------------------------- CRC-32C
def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):  # reflected Castagnoli polynomial 0x1EDC6F41 -> 0x82F63B78
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC_TABLE = _crc_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the page's check value


# ---------------------------------------------------------------- byte reader
class Reader:
    def __init__(self, data, what):
        self.data, self.pos, self.what = data, 0, what

    def remaining(self):
        return len(self.data) - self.pos

    def take(self, n):
        check(n <= self.remaining(), f"{self.what}: truncated (need {n} bytes)")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def u8(self):
        return self.take(1)[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def varint(self):
        value = 0
        for i in range(10):
            b = self.u8()
            if i == 9:
                check(b <= 1, f"{self.what}: varint exceeds 64 bits")
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                return value
        raise FormatError(f"{self.what}: varint longer than 10 bytes")

    def zz(self):
        u = self.varint()
        return (u >> 1) ^ -(u & 1)  # already within i64 because u < 2^64

    def string(self):
        n = self.varint()
        check(n <= MAX_STRING, f"{self.what}: string longer than 1 MiB")
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{self.what}: invalid UTF-8") from None

    def count(self, n, min_bytes, limit, name):
        """Check a count against its limit and against the bytes that remain."""
        check(n <= limit, f"{self.what}: {name} {n} exceeds limit {limit}")
        check(min_bytes == 0 or n <= self.remaining() // min_bytes,
              f"{self.what}: {name} {n} exceeds remaining bytes")
        return n

    def done(self):
        check(self.remaining() == 0, f"{self.what}: {self.remaining()} trailing bytes")


class BitReader:
    """Bit stream for the XOR encoding: most significant bit first."""

    def __init__(self, reader):
        self.r, self.start, self.nbits = reader, reader.pos, 0

    def bits(self, n):
        v = 0
        for _ in range(n):
            byte_i, bit_i = divmod(self.nbits, 8)
            check(self.start + byte_i < len(self.r.data), "XOR stream: truncated")
            v = (v << 1) | ((self.r.data[self.start + byte_i] >> (7 - bit_i)) & 1)
            self.nbits += 1
        return v

    def finish(self):
        """Consume the used bytes; the padding bits of the last byte must be zero."""
        pad = (-self.nbits) % 8
        check(self.bits(pad) == 0, "XOR stream: non-zero padding bits")
        self.r.pos = self.start + self.nbits // 8


# ---------------------------------------------------------------- zstd
def zstd_frame_length(buf):
    """Walk one zstd frame (RFC 8878) and return (length, declared content size)."""
    r = Reader(buf, "zstd frame")
    check(r.take(4) == b"\x28\xb5\x2f\xfd", "zstd: bad magic (not one zstd frame)")
    fhd = r.u8()
    fcs_flag, single, checksum, dict_flag = fhd >> 6, (fhd >> 5) & 1, (fhd >> 2) & 1, fhd & 3
    check(not fhd & 0x08, "zstd: reserved bit set")
    if not single:
        r.u8()  # window descriptor
    r.take([0, 1, 2, 4][dict_flag])
    fcs_size = [1 if single else 0, 2, 4, 8][fcs_flag]
    check(fcs_size > 0, "zstd: frame header does not state the content size")
    size = int.from_bytes(r.take(fcs_size), "little") + (256 if fcs_size == 2 else 0)
    while True:
        hdr = int.from_bytes(r.take(3), "little")
        last, btype, bsize = hdr & 1, (hdr >> 1) & 3, hdr >> 3
        check(btype != 3, "zstd: reserved block type")
        r.take(1 if btype == 1 else bsize)
        if last:
            break
    if checksum:
        r.take(4)
    return r.pos, size


def decompress(payload, raw_len):
    length, size = zstd_frame_length(payload)
    check(length == len(payload), "zstd: bytes after the zstd frame")
    check(size == raw_len, f"zstd: declared content size {size} != raw_len {raw_len}")
    exe = shutil.which("zstd")
    if exe is None:
        sys.exit("error: the `zstd` command-line tool is needed for compressed frames")
    proc = subprocess.run([exe, "-d", "-c", "-q"], input=payload, capture_output=True)
    check(proc.returncode == 0, f"zstd: {proc.stderr.decode(errors='replace').strip()}")
    check(len(proc.stdout) == raw_len, "zstd: decompressed size != raw_len")
    return proc.stdout


# ---------------------------------------------------------------- frame
def decode_frame(buf, pos):
    """Decode the frame starting at buf[pos]; return (json object, frame length)."""
    check(len(buf) - pos >= 64, "frame: fewer than 64 bytes for the header")
    (magic, version, kind, compression, agent_id, sequence, min_ts, max_ts, series_count,
     ranges_len, payload_len, raw_len) = struct.unpack_from("<4sHBB16sQqqIIII", buf, pos)
    check(magic == b"PGAF", "frame: bad magic")
    check(version == 1, f"frame: unknown version {version}")
    check(kind in FRAME_KINDS, f"frame: unknown kind {kind}")
    check(compression in COMPRESSIONS, f"frame: unknown compression {compression}")
    check(min_ts <= max_ts, "frame: min_ts > max_ts")
    check(kind == 1 or min_ts == max_ts == 0, "dictionary frame: min_ts/max_ts must be 0")
    for name, value, limit in [("series_count", series_count, MAX_SERIES),
                               ("ranges_len", ranges_len, MAX_RANGES),
                               ("payload_len", payload_len, MAX_PAYLOAD),
                               ("raw_len", raw_len, MAX_PAYLOAD)]:
        check(value <= limit, f"frame: {name} {value} over limit {limit}")
    check(compression != 0 or raw_len == payload_len, "frame: raw_len != payload_len")
    total = 64 + ranges_len + payload_len + 4
    check(len(buf) - pos >= total, "frame: truncated")
    body = buf[pos:pos + total - 4]
    stored_crc = struct.unpack_from("<I", buf, pos + total - 4)[0]
    check(crc32c(body) == stored_crc, "frame: CRC-32C mismatch")

    ids = decode_ranges(Reader(body[64:64 + ranges_len], "series ranges"), series_count)
    payload = body[64 + ranges_len:]
    if compression == 1:
        payload = decompress(payload, raw_len)
    u = agent_id.hex()
    out = {"kind": FRAME_KINDS[kind], "version": version,
           "compression": COMPRESSIONS[compression],
           "agent_id": f"{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}",
           "sequence": sequence, "min_ts": min_ts, "max_ts": max_ts, "series": ids}
    if kind == 1:
        out.update(decode_block(Reader(payload, "block"), ids, min_ts, max_ts))
    else:
        out["entries"] = decode_dictionary(Reader(payload, "dictionary"), ids)
    return out, total


def decode_ranges(r, series_count):
    ids, next_min = [], 0
    while r.remaining():
        start = next_min + r.varint()
        length = r.varint() + 1
        last = start + length - 1
        check(last <= MASK64, "series ranges: id past 2^64 - 1")
        check(len(ids) + length <= series_count, "series ranges: more ids than series_count")
        ids.extend(range(start, last + 1))
        next_min = last + 2
    check(len(ids) == series_count, "series ranges: fewer ids than series_count")
    return ids


# ---------------------------------------------------------------- block
def decode_block(r, ids, min_ts, max_ts):
    n_series = len(ids)
    # Timestamps: first relative to min_ts, then strictly positive deltas (no wrapping).
    t_count = r.count(r.varint(), 1, MAX_TIMESTAMPS, "timestamp_count")
    ts, prev = [], None
    for i in range(t_count):
        d = r.varint()
        if i == 0:
            cur = min_ts + d
        else:
            check(d >= 1, "block: timestamp delta 0")
            cur = prev + d
        check(min_ts <= cur <= max_ts, "block: timestamp outside min_ts..=max_ts")
        ts.append(cur)
        prev = cur

    # Presence patterns.
    pbytes = (t_count + 7) // 8
    p_count = r.varint()
    check(p_count <= n_series, "block: pattern_count > series_count")
    check((p_count == 0) == (n_series == 0), "block: pattern_count 0 iff series_count 0")
    r.count(p_count, pbytes, MAX_SERIES, "pattern_count")
    patterns = []
    for _ in range(p_count):
        bm = int.from_bytes(r.take(pbytes), "little")  # bit i = bit i%8 of byte i/8
        check(bm != 0, "block: empty pattern")
        check(bm >> t_count == 0, "block: pattern bits set past T")
        patterns.append([i for i in range(t_count) if bm >> i & 1])

    r.count(n_series, 1, MAX_SERIES, "pattern_index")
    index = [r.varint() for _ in range(n_series)]
    check(all(p < p_count for p in index), "block: pattern index out of range")
    r.count(n_series, 1, MAX_SERIES, "encoding")
    encodings = list(r.take(n_series))
    check(all(e <= 4 for e in encodings), "block: unknown value encoding")
    check(sum(len(patterns[p]) for p in index) <= MAX_SAMPLES, "block: too many samples")

    samples = []
    for sid, p, enc in zip(ids, index, encodings):
        positions = patterns[p]
        values = decode_values(r, enc, len(positions))
        samples.extend([sid, ts[i], hex64(v)] for i, v in zip(positions, values))

    events = decode_log_events(r, min_ts, max_ts)
    r.done()  # nothing may follow the log events

    # Time range rule: min/max over timestamps and event timestamps equals the header's.
    all_ts = ts + [e["timestamp_ms"] for e in events]
    lo, hi = (min(all_ts), max(all_ts)) if all_ts else (0, 0)
    check((lo, hi) == (min_ts, max_ts), "block: min_ts/max_ts do not match the contents")
    samples.sort(key=lambda s: (s[0], s[1]))
    return {"samples": samples, "log_events": events}


def decode_values(r, enc, n):
    """Return the n values of one series as raw 64-bit patterns."""
    if enc == 0:  # constant
        return [r.u64()] * n
    if enc == 1:  # raw
        r.count(n, 8, MAX_SAMPLES, "raw values")
        return [r.u64() for _ in range(n)]
    if enc == 2:
        return decode_xor(r, n)
    return decode_decimal(r, enc, n)


def decode_xor(r, n):
    br = BitReader(r)
    values = [br.bits(64)]
    window = None  # (leading zeros l, meaningful bits m)
    for _ in range(n - 1):
        if br.bits(1) == 0:
            x = 0
        else:
            if br.bits(1) == 0:
                check(window is not None, "XOR: window reused before being set")
            else:
                lead, m = br.bits(5), br.bits(6) + 1
                check(lead + m <= 64, "XOR: l + m > 64")
                window = (lead, m)
            lead, m = window
            x = br.bits(m) << (64 - lead - m)
        values.append(values[-1] ^ x)
    br.finish()
    return values


def decode_decimal(r, enc, n):
    scale = r.u8()
    check(scale <= MAX_SCALE, "decimal: scale > 18")
    g = r.varint()
    check(g >= 1, "decimal: factor 0")
    m = [r.zz()]
    if enc == 3:  # delta
        for _ in range(n - 1):
            m.append(wrap_i64(m[-1] + r.zz() * g))
    elif n >= 2:  # delta-of-delta; first_delta is not divided by g
        delta = r.zz()
        m.append(wrap_i64(m[0] + delta))
        for _ in range(n - 2):
            delta = wrap_i64(delta + r.zz() * g)
            m.append(wrap_i64(m[-1] + delta))
    out = []
    for mant in m:
        check(abs(mant) <= 1 << 53, "decimal: |mantissa| > 2^53")
        v = float(mant) if scale == 0 else float(mant) / float(10 ** scale)
        out.append(struct.unpack("<Q", struct.pack("<d", v))[0])
    return out


# ---------------------------------------------------------------- log events
def decode_log_events(r, min_ts, max_ts):
    e_count = r.count(r.varint(), 5, MAX_EVENTS, "log event count")  # >= 5 bytes each
    if e_count == 0:
        return []
    ts = []
    for i in range(e_count):
        if i == 0:
            cur = wrap_i64(min_ts + r.varint())
        else:
            cur = wrap_i64(ts[-1] + r.zz())
        check(min_ts <= cur <= max_ts, "log events: timestamp outside min_ts..=max_ts")
        ts.append(cur)
    severity, kind, flags = r.take(e_count), r.take(e_count), r.take(e_count)
    check(all(s < len(SEVERITIES) for s in severity), "log events: unknown severity")
    check(all(k < len(EVENT_KINDS) for k in kind), "log events: unknown kind")
    check(all(f & 0x80 == 0 for f in flags), "log events: flag bit 7 set")
    # The page sets no limit on S; only the remaining-bytes rule applies.
    s_count = r.count(r.varint(), 1, MASK64, "string table size")
    strings = [r.string() for _ in range(s_count)]
    check(len(set(strings)) == len(strings), "log events: duplicate string in table")

    events = [{"timestamp_ms": t, "severity": SEVERITIES[s], "kind": EVENT_KINDS[k],
               "sqlstate": None, "pid": None, "duration_ms": None, "instance": None,
               "user": None, "database": None, "application": None, "message": None}
              for t, s, k in zip(ts, severity, kind)]
    # Optional columns, each over the events that have the corresponding flag bit.
    for bit in range(7):
        for ev, f in zip(events, flags):
            if not f >> bit & 1:
                continue
            if bit == 0:
                code = r.take(5)
                check(SQLSTATE.fullmatch(code) is not None, "log events: bad SQLSTATE")
                ev["sqlstate"] = code.decode("ascii")
            elif bit == 1:
                ev["pid"] = r.varint()
                check(ev["pid"] <= 0xFFFFFFFF, "log events: pid > 2^32 - 1")
            elif bit == 2:
                ev["duration_ms"] = hex64(r.u64())
            else:
                idx = r.varint()
                check(idx < len(strings), "log events: string index out of range")
                ev[OPTIONAL_STRINGS[bit - 3]] = strings[idx]
    for ev in events:
        ev["message"] = r.string()
    return events


# ---------------------------------------------------------------- dictionary
def decode_dictionary(r, ids):
    count = r.varint()
    check(count == len(ids), "dictionary: count != series_count")
    r.count(count, 5, MAX_SERIES, "dictionary entries")  # kind + 4 empty-ish fields
    entries = []
    for sid in ids:
        kind = r.u8()
        check(kind < len(SERIES_KINDS), "dictionary: unknown series kind")
        name, unit, help_text = r.string(), r.string(), r.string()
        check(METRIC_NAME.fullmatch(name) is not None, f"dictionary: bad metric name {name!r}")
        n_labels = r.count(r.varint(), 2, MAX_LABELS, "label_count")
        labels = [[r.string(), r.string()] for _ in range(n_labels)]
        for i, (lname, _) in enumerate(labels):
            check(LABEL_NAME.fullmatch(lname) is not None and not lname.startswith("__"),
                  f"dictionary: bad label name {lname!r}")
            check(i == 0 or labels[i - 1][0] < lname,
                  "dictionary: label names not sorted and distinct")
        entries.append({"id": sid, "name": name, "kind": SERIES_KINDS[kind],
                        "unit": unit, "help": help_text, "labels": labels})
    r.done()  # nothing may follow the last entry
    return entries


# ---------------------------------------------------------------- driver
def decode_file(data):
    """Decode concatenated frames; one frame gives an object, none or several a list.

    (The page does not say how a multi-frame file is shown; the golden vectors each
    hold one frame and expect a single object.)"""
    frames, pos = [], 0
    while pos < len(data):
        frame, length = decode_frame(data, pos)
        frames.append(frame)
        pos += length
    return frames[0] if len(frames) == 1 else frames


def first_difference(a, b, path="$"):
    """Describe the first place where decoded `a` and expected `b` differ, or None."""
    if type(a) is not type(b) or not isinstance(a, (dict, list)):
        return None if a == b else f"{path}: decoded {a!r}, expected {b!r}"
    if isinstance(a, dict):
        pairs = [(f"{path}.{k}", a.get(k, "<missing>"), b.get(k, "<missing>"))
                 for k in sorted(set(a) | set(b))]
    else:
        pairs = [(f"{path}[{i}]", x, y) for i, (x, y) in enumerate(zip(a, b))]
        pairs.append((f"{path} length", len(a), len(b)))
    return next(filter(None, (first_difference(x, y, p) for p, x, y in pairs)), None)


def run_check(directory):
    """Decode every *.bin in directory and compare it with its *.expected.json."""
    bins = sorted(Path(directory).glob("*.bin"))
    failed = not bins
    for path in bins:
        name = path.name[:-len(".bin")]
        try:
            got = decode_file(path.read_bytes())
            want = json.loads(path.with_name(name + ".expected.json").read_text("utf-8"))
            diff = first_difference(got, want)
        except (FormatError, OSError, ValueError) as e:
            diff = f"decode error: {e}"
        print(f"MISMATCH {name}: first difference {diff}" if diff else f"ok {name}")
        failed |= diff is not None
    if not bins:
        print(f"no *.bin files in {directory}")
    return 1 if failed else 0


def main(argv):
    if len(argv) == 3 and argv[1] == "--check":
        return run_check(argv[2])
    if len(argv) == 2 and not argv[1].startswith("-"):
        try:
            out = decode_file(Path(argv[1]).read_bytes())
        except FormatError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
