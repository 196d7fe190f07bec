//! The text table of `pga-bench codec`.

use std::fmt::Write;

use crate::blocks::Shape;
use crate::codec_cmd::CodecReport;

/// Runs `measure` on a fresh multi-threaded runtime and prints its report: one JSON
/// object with `json`, else the text `render` makes of it.
pub fn run_and_print<R: serde::Serialize>(
    json: bool,
    measure: impl std::future::Future<Output = anyhow::Result<R>>,
    render: impl Fn(&R) -> String,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(measure)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

/// Renders the report as aligned text tables; `corpus` names the input.
pub fn render_text(r: &CodecReport, corpus: &str) -> String {
    let mut out = String::new();
    // Invariant: writing into a String cannot fail.
    write_text(&mut out, r, corpus).expect("writing to a String cannot fail");
    out
}

fn write_text(out: &mut String, r: &CodecReport, corpus: &str) -> std::fmt::Result {
    writeln!(out, "corpus   {corpus}")?;
    writeln!(
        out,
        "         {} bytes of text, {} scrapes ({} failed, skipped), {} samples, {} series",
        group(r.corpus_text_bytes),
        group(r.scrapes),
        group(r.failed_scrapes),
        group(r.samples),
        group(r.series)
    )?;
    writeln!(
        out,
        "blocks   {} of {} s, zstd level {}; round trip {}",
        group(r.blocks),
        r.block_secs,
        r.zstd_level,
        if r.round_trip_exact {
            "bit-exact"
        } else {
            "NOT EXACT"
        }
    )?;

    writeln!(out)?;
    writeln!(out, "{:<28}{:>14}{:>15}", "size", "bytes", "bytes/sample")?;
    size_row(out, "block frames", r.block_bytes, Some(r.bytes_per_sample))?;
    let dict = format!("series dictionary ({} fr.)", r.dict_frames);
    size_row(out, &dict, r.dict_bytes, None)?;
    size_row(
        out,
        "frames + dictionary",
        r.block_bytes + r.dict_bytes,
        Some(r.bytes_per_sample_with_dict),
    )?;

    writeln!(out)?;
    writeln!(
        out,
        "{:<28}{:>14}{:>15}",
        "speed (1 thread, best run)", "samples/s", "runs"
    )?;
    for (what, speed, runs) in [
        (
            "encode (push + encode)",
            r.encode_samples_per_sec,
            r.encode_runs,
        ),
        (
            "decode (to columns)",
            r.decode_samples_per_sec,
            r.decode_runs,
        ),
    ] {
        writeln!(
            out,
            "{what:<28}{:>14}{runs:>15}",
            group(speed.round() as u64)
        )?;
    }

    writeln!(out)?;
    writeln!(
        out,
        "{:<10}{:>9}{:>12}{:>14}{:>15}",
        "shape", "series", "samples", "block bytes", "bytes/sample"
    )?;
    for shape in Shape::ALL {
        let s = r.shapes.get(shape);
        writeln!(
            out,
            "{:<10}{:>9}{:>12}{:>14}{:>15.3}",
            shape.as_str(),
            group(s.series),
            group(s.samples),
            group(s.block_bytes),
            s.bytes_per_sample
        )?;
    }

    if let Some(b) = &r.baselines {
        writeln!(out)?;
        writeln!(
            out,
            "{:<28}{:>14}{:>15}",
            "baseline (same samples)", "bytes", "bytes/sample"
        )?;
        size_row(
            out,
            "pga-format blocks",
            r.block_bytes,
            Some(r.bytes_per_sample),
        )?;
        size_row(
            out,
            "postcard rows + zstd 19",
            b.postcard_zstd.bytes,
            Some(b.postcard_zstd.bytes_per_sample),
        )?;
        size_row(
            out,
            "tsz Gorilla chunks",
            b.tsz_gorilla.bytes,
            Some(b.tsz_gorilla.bytes_per_sample),
        )?;
        size_row(
            out,
            "zstd 22 over corpus text",
            b.zstd_text.bytes,
            Some(b.zstd_text.bytes_per_sample),
        )?;
        if !b.tsz_gorilla.round_trip_exact {
            writeln!(out, "note: tsz chunks did NOT decode back bit-exactly")?;
        }
    }
    Ok(())
}

fn size_row(out: &mut String, what: &str, bytes: u64, per: Option<f64>) -> std::fmt::Result {
    match per {
        Some(per) => writeln!(out, "{what:<28}{:>14}{per:>15.3}", group(bytes)),
        None => writeln!(out, "{what:<28}{:>14}", group(bytes)),
    }
}

/// `1234567` → `1,234,567`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(12_345_678), "12,345,678");
    }
}
