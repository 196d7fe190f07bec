//! `pga-federator format-info`: the block format this build reads, from `pga_format`'s
//! own constants.

use pga_format::frame;

/// One line per property, `name: value`, ending in a newline.
pub fn render() -> String {
    let magic = String::from_utf8_lossy(&frame::MAGIC);
    let lines = [
        format!("format version: {}", pga_format::FORMAT_VERSION),
        format!("frame magic: {magic:?}"),
        format!("frame header bytes: {}", frame::HEADER_LEN),
        format!("frame trailer (CRC32C) bytes: {}", frame::TRAILER_LEN),
        format!("max payload bytes, compressed: {}", frame::MAX_PAYLOAD_LEN),
        format!("max payload bytes, decompressed: {}", frame::MAX_RAW_LEN),
        format!("max series per frame: {}", frame::MAX_SERIES_PER_FRAME),
        format!(
            "max samples per block: {}",
            pga_format::MAX_SAMPLES_PER_BLOCK
        ),
        format!(
            "max log events per block: {}",
            pga_format::MAX_LOG_EVENTS_PER_BLOCK
        ),
        format!("max labels per series: {}", pga_format::MAX_LABELS),
        format!("max string bytes: {}", pga_format::MAX_STRING_LEN),
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
        let info = render();
        let version = format!("format version: {}\n", pga_format::FORMAT_VERSION);
        assert!(info.starts_with(&version), "{info}");
        assert!(info.contains("frame magic: \"PGAF\"\n"), "{info}");
        assert!(info.ends_with('\n') && !info.ends_with("\n\n"), "{info:?}");
    }
}
