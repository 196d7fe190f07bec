//! A plain-text summary of the format this build speaks, for `format-info` commands.

use crate::frame;

/// One line per property, `name: value`, ending in a newline: the format version,
/// the frame magic and sizes, and every limit a decoder enforces.
pub fn describe() -> String {
    let magic = String::from_utf8_lossy(&frame::MAGIC);
    let lines = [
        format!("format version: {}", crate::FORMAT_VERSION),
        format!("frame magic: {magic:?}"),
        format!("frame header bytes: {}", frame::HEADER_LEN),
        format!("frame trailer (CRC32C) bytes: {}", frame::TRAILER_LEN),
        format!("max payload bytes, compressed: {}", frame::MAX_PAYLOAD_LEN),
        format!("max payload bytes, decompressed: {}", frame::MAX_RAW_LEN),
        format!("max series per frame: {}", frame::MAX_SERIES_PER_FRAME),
        format!("max samples per block: {}", crate::MAX_SAMPLES_PER_BLOCK),
        format!(
            "max log events per block: {}",
            crate::MAX_LOG_EVENTS_PER_BLOCK
        ),
        format!("max labels per series: {}", crate::MAX_LABELS),
        format!("max string bytes: {}", crate::MAX_STRING_LEN),
        format!("default zstd level: {}", crate::DEFAULT_ZSTD_LEVEL),
    ];
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_format_version_and_magic() {
        let info = describe();
        let version = format!("format version: {}\n", crate::FORMAT_VERSION);
        assert!(info.starts_with(&version), "{info}");
        assert!(info.contains("frame magic: \"PGAF\"\n"), "{info}");
        assert!(info.ends_with('\n') && !info.ends_with("\n\n"), "{info:?}");
    }
}
