//! The client side of the pull protocol (storage-format/PROTOCOL.md), without I/O:
//! reading the `Pga-*` headers of a `/v1/blocks` answer, walking its body frame by
//! frame under the protocol's rules, and reading `/v1/series` dictionary frames.

use hyper::HeaderMap;
use pga_format::{AgentId, DecodedBlock, FORMAT_VERSION, SeriesId, SeriesMeta};

/// What a `/v1/blocks` answer's headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlocksHeaders {
    /// `Pga-Agent-Id`.
    pub agent_id: AgentId,
    /// `Pga-Oldest-Sequence` / `Pga-Newest-Sequence`, when the agent holds a
    /// sealed block.
    pub held: Option<(u64, u64)>,
    /// `Pga-Head-Sequence`.
    pub head_sequence: u64,
    /// `Pga-Head: present`.
    pub head_present: bool,
    /// `Pga-More: true`.
    pub more: bool,
    /// `Pga-Gap: FIRST-LAST`.
    pub gap: Option<(u64, u64)>,
    /// `Pga-Last-Sequence`.
    pub last_sequence: Option<u64>,
}

/// An answer that breaks the protocol: it is rejected for that agent and reported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A header's value is not ASCII.
    #[error("header {header} is not ASCII")]
    NotAscii { header: String },
    /// A header the answer must carry is missing.
    #[error("header {header} is missing")]
    Missing { header: String },
    /// A header's value does not read as what it must be.
    #[error("header {header}: \"{value}\"{}", expected_text(expected))]
    BadValue {
        header: String,
        value: String,
        /// What it must be ("a decimal u64", "a UUID"), when that says more.
        expected: Option<&'static str>,
    },
    /// The agent serves another version of the frame format.
    #[error(
        "the agent serves frame format version {served}; this federator reads version \
         {FORMAT_VERSION}: upgrade the federator"
    )]
    FormatVersion { served: String },
    /// The headers contradict each other or the cursor.
    #[error("{0}")]
    Headers(HeadersProblem),
    /// The body's frames break the protocol.
    #[error("{0}")]
    Frames(FramesProblem),
    /// The `/v1/series` answer does not describe the series the blocks use.
    #[error("{0}")]
    Series(SeriesProblem),
    /// The `/v1/status` answer is not a JSON object.
    #[error("/v1/status is not JSON: {0}")]
    StatusNotJson(String),
    #[error("/v1/status is not a JSON object")]
    StatusNotObject,
}

fn expected_text(expected: &Option<&'static str>) -> String {
    expected.map_or_else(String::new, |e| format!(" is not {e}"))
}

/// Headers that contradict each other or the federator's cursor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadersProblem {
    #[error(
        "pga-oldest-sequence {oldest:?} and pga-newest-sequence {newest:?} do not \
         describe a run of sealed blocks"
    )]
    SealedRun {
        oldest: Option<u64>,
        newest: Option<u64>,
    },
    #[error("header pga-gap: {first}-{last} does not start right after the cursor {after}")]
    GapNotAfterCursor { first: u64, last: u64, after: u64 },
    #[error("pga-head-sequence {head} does not follow the newest sealed block {held:?}")]
    HeadNotNext { head: u64, held: Option<(u64, u64)> },
    #[error(
        "the cursor {cursor} is ahead of the agent (its head is {head}): was its store \
         restored from an older copy?"
    )]
    CursorAhead { cursor: u64, head: u64 },
    #[error("/v1/series answered for another agent")]
    SeriesOfAnotherAgent,
}

/// Frames of a `/v1/blocks` body that break the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramesProblem {
    #[error("a frame follows the head frame; the head must be the last")]
    AfterHead,
    #[error("a frame after sequence {after} verifies but does not decode as a block: {reason}")]
    Undecodable { after: u64, reason: String },
    #[error("frame {sequence} carries agent id {found}, the answer says {expected}")]
    OtherAgent {
        sequence: u64,
        found: AgentId,
        expected: AgentId,
    },
    #[error("sealed frame {sequence} where {due} was due: a block would be skipped")]
    Skipped { sequence: u64, due: u64 },
    #[error("the body of {path} holds bytes that do not read as a frame")]
    Unreadable { path: String },
}

/// A `/v1/series` answer that does not describe what the blocks need.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeriesProblem {
    #[error("series body at byte {at}: {reason}")]
    Body { at: usize, reason: String },
    #[error("series frame at byte {at}: {reason}")]
    Frame { at: usize, reason: String },
    #[error("series frame at byte {at} carries agent id {found}, expected {expected}")]
    OtherAgent {
        at: usize,
        found: AgentId,
        expected: AgentId,
    },
    #[error("series {id} is not a valid series: {reason}")]
    Invalid { id: u64, reason: String },
    #[error("the blocks use series id {needed} but /v1/series describes ids only up to {last}")]
    Missing { needed: u64, last: i64 },
}

fn bad_value(header: &str, value: &str, expected: Option<&'static str>) -> ProtocolError {
    ProtocolError::BadValue {
        header: header.to_owned(),
        value: value.to_owned(),
        expected,
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ProtocolError> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| ProtocolError::NotAscii {
                header: name.to_owned(),
            }),
    }
}

fn required<'a>(h: &'a HeaderMap, name: &str) -> Result<&'a str, ProtocolError> {
    header(h, name)?.ok_or_else(|| ProtocolError::Missing {
        header: name.to_owned(),
    })
}

fn number(name: &str, v: &str) -> Result<u64, ProtocolError> {
    v.parse()
        .map_err(|_| bad_value(name, v, Some("a decimal u64")))
}

fn optional_number(h: &HeaderMap, name: &str) -> Result<Option<u64>, ProtocolError> {
    header(h, name)?.map(|v| number(name, v)).transpose()
}

/// Parses a hyphenated UUID (`87edd2b1-bff9-4639-996e-144fff6def85`).
pub fn parse_agent_id(s: &str) -> Option<AgentId> {
    let hex: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
    if hex.len() != 32 || s.len() != 36 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        id[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(AgentId(id))
}

/// Checks `Pga-Agent-Id` and `Pga-Format-Version`, common to every `/v1` answer.
pub fn identity(h: &HeaderMap) -> Result<AgentId, ProtocolError> {
    let version = required(h, "pga-format-version")?;
    if version != FORMAT_VERSION.to_string() {
        return Err(ProtocolError::FormatVersion {
            served: version.to_owned(),
        });
    }
    let id = required(h, "pga-agent-id")?;
    parse_agent_id(id).ok_or_else(|| bad_value("pga-agent-id", id, Some("a UUID")))
}

/// Reads the headers of a `/v1/blocks?after=after` answer and checks them against
/// each other and against `after`.
pub fn blocks_headers(h: &HeaderMap, after: u64) -> Result<BlocksHeaders, ProtocolError> {
    let agent_id = identity(h)?;
    let oldest = optional_number(h, "pga-oldest-sequence")?;
    let newest = optional_number(h, "pga-newest-sequence")?;
    let held = match (oldest, newest) {
        (Some(o), Some(n)) if 1 <= o && o <= n => Some((o, n)),
        (None, None) => None,
        _ => {
            return Err(ProtocolError::Headers(HeadersProblem::SealedRun {
                oldest,
                newest,
            }));
        }
    };
    let head_sequence = number("pga-head-sequence", required(h, "pga-head-sequence")?)?;
    let head_present = match required(h, "pga-head")? {
        "present" => true,
        "absent" => false,
        v => return Err(bad_value("pga-head", v, None)),
    };
    let more = match required(h, "pga-more")? {
        "true" => true,
        "false" => false,
        v => return Err(bad_value("pga-more", v, None)),
    };
    let gap = match header(h, "pga-gap")? {
        None => None,
        Some(v) => {
            let (a, b) = v
                .split_once('-')
                .ok_or_else(|| bad_value("pga-gap", v, None))?;
            let (first, last) = (number("pga-gap", a)?, number("pga-gap", b)?);
            if first != after.saturating_add(1) || last < first {
                return Err(ProtocolError::Headers(HeadersProblem::GapNotAfterCursor {
                    first,
                    last,
                    after,
                }));
            }
            Some((first, last))
        }
    };
    let last_sequence = optional_number(h, "pga-last-sequence")?;
    if held.is_some_and(|(_, n)| head_sequence != n + 1) || (held.is_none() && head_sequence == 0) {
        return Err(ProtocolError::Headers(HeadersProblem::HeadNotNext {
            head: head_sequence,
            held,
        }));
    }
    Ok(BlocksHeaders {
        agent_id,
        held,
        head_sequence,
        head_present,
        more,
        gap,
        last_sequence,
    })
}

/// The result of walking a `/v1/blocks` body.
#[derive(Debug, Default)]
pub struct Walk {
    /// Sealed blocks received whole and verified, consecutive from the cursor + 1.
    pub sealed: Vec<DecodedBlock>,
    /// The head block, when received whole.
    pub head: Option<DecodedBlock>,
    /// The walk stopped at bytes that do not read as a whole frame (the body was
    /// cut short, or they are damaged): those bytes and everything after were
    /// dropped.
    pub stopped_early: bool,
    /// A frame that verifies but breaks a protocol rule (or whose payload does not
    /// decode): it and what follows were dropped; the answer is reported.
    pub violation: Option<ProtocolError>,
}

/// Walks the body of a `/v1/blocks?after=cursor` answer (PROTOCOL.md, "The client
/// algorithm", step 4), `cursor` already moved past a declared gap.
pub fn walk_blocks(body: &[u8], h: &BlocksHeaders, cursor: u64) -> Walk {
    let mut walk = Walk::default();
    let mut c = cursor;
    for item in pga_format::frame::frames(body) {
        let bytes = match item {
            Ok((_, bytes)) => bytes,
            Err(_) => {
                walk.stopped_early = true;
                break;
            }
        };
        if walk.head.is_some() {
            walk.violation = Some(ProtocolError::Frames(FramesProblem::AfterHead));
            break;
        }
        let block = match pga_format::decode_block(bytes) {
            Ok(b) => b,
            Err(e) => {
                walk.violation = Some(ProtocolError::Frames(FramesProblem::Undecodable {
                    after: c,
                    reason: e.to_string(),
                }));
                break;
            }
        };
        let hd = &block.header;
        if hd.agent_id != h.agent_id {
            walk.violation = Some(ProtocolError::Frames(FramesProblem::OtherAgent {
                sequence: hd.sequence,
                found: hd.agent_id,
                expected: h.agent_id,
            }));
            break;
        }
        if h.head_present && hd.sequence == h.head_sequence {
            walk.head = Some(block);
            continue;
        }
        if hd.sequence != c.saturating_add(1) {
            walk.violation = Some(ProtocolError::Frames(FramesProblem::Skipped {
                sequence: hd.sequence,
                due: c.saturating_add(1),
            }));
            break;
        }
        c = hd.sequence;
        walk.sealed.push(block);
    }
    walk
}

/// The dictionary entries of a `/v1/series` body with an id of at least `from`,
/// in id order, checked: every frame whole and of this agent, every entry valid.
/// A body that does not read whole is an error (unlike blocks, nothing of a
/// partial dictionary is kept: it is small and asked for again).
pub fn read_series(
    body: &[u8],
    agent_id: AgentId,
    from: u64,
) -> Result<Vec<(SeriesId, SeriesMeta)>, ProtocolError> {
    let mut out: Vec<(SeriesId, SeriesMeta)> = Vec::new();
    for item in pga_format::frame::frames(body) {
        let (at, bytes) = item.map_err(|(at, e)| {
            ProtocolError::Series(SeriesProblem::Body {
                at,
                reason: e.to_string(),
            })
        })?;
        let (header, entries) = pga_format::dictionary::decode(bytes).map_err(|e| {
            ProtocolError::Series(SeriesProblem::Frame {
                at,
                reason: e.to_string(),
            })
        })?;
        if header.agent_id != agent_id {
            return Err(ProtocolError::Series(SeriesProblem::OtherAgent {
                at,
                found: header.agent_id,
                expected: agent_id,
            }));
        }
        for meta in entries {
            if meta.id.0 < from || out.last().is_some_and(|(id, _)| *id >= meta.id) {
                continue;
            }
            meta.validate().map_err(|e| {
                ProtocolError::Series(SeriesProblem::Invalid {
                    id: meta.id.0,
                    reason: e.to_string(),
                })
            })?;
            out.push((meta.id, meta));
        }
    }
    Ok(out)
}

/// The highest series id the blocks reference, if any.
pub fn max_series_id<'a>(blocks: impl IntoIterator<Item = &'a DecodedBlock>) -> Option<u64> {
    blocks
        .into_iter()
        .filter_map(|b| {
            b.header
                .series_ranges
                .last()
                .map(|r| r.start + r.len.saturating_sub(1))
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ids_round_trip() {
        let id = AgentId([
            0x87, 0xed, 0xd2, 0xb1, 0xbf, 0xf9, 0x46, 0x39, 0x99, 0x6e, 0x14, 0x4f, 0xff, 0x6d,
            0xef, 0x85,
        ]);
        assert_eq!(parse_agent_id(&id.to_string()), Some(id));
        assert_eq!(parse_agent_id("87edd2b1bff94639996e144fff6def85"), None);
        assert_eq!(parse_agent_id("87edd2b1-bff9-4639-996e-144fff6def8g"), None);
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const ID: &str = "87edd2b1-bff9-4639-996e-144fff6def85";

    #[test]
    fn headers_are_read_and_checked() {
        let base = [
            ("pga-agent-id", ID),
            ("pga-format-version", "1"),
            ("pga-oldest-sequence", "10"),
            ("pga-newest-sequence", "15"),
            ("pga-head-sequence", "16"),
            ("pga-head", "absent"),
            ("pga-more", "true"),
            ("pga-gap", "4-9"),
            ("pga-last-sequence", "12"),
        ];
        let h = blocks_headers(&headers(&base), 3).unwrap();
        assert_eq!(h.gap, Some((4, 9)));
        assert_eq!(h.held, Some((10, 15)));
        assert!(h.more && !h.head_present);
        // A gap that does not start after the cursor is refused.
        assert!(blocks_headers(&headers(&base), 5).is_err());
        let mut bad = base;
        bad[1] = ("pga-format-version", "2");
        let e = blocks_headers(&headers(&bad), 3).unwrap_err();
        assert!(e.to_string().contains("upgrade the federator"), "{e}");
        let mut bad = base;
        bad[4] = ("pga-head-sequence", "20");
        assert!(blocks_headers(&headers(&bad), 3).is_err());
        assert!(blocks_headers(&headers(&base[1..]), 3).is_err());
    }
}
