//! Terminal line charts drawn with Braille dots.
//!
//! One chart per series, separated by a blank line, each `height` lines tall and at
//! most `width` columns wide (but never smaller than 5 lines, or than the y labels plus
//! 8 cells):
//!
//! ```text
//! pg_up{pg_instance="db1"}  last 1
//! 1 ┤⠉⠉⠉⠉⠉⠉⠉⠉⢆        ⢀⠎⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉⠉
//!   │         ⢣      ⡰⠁
//! 0 ┤          ⠱⣀⣀⣀⣀⠎
//!   └─────────────────────────────────────
//!   2026-11-24T08:00:00Z         08:10:00Z
//! ```
//!
//! - The title holds the series, its minimum, maximum and last value and its unit
//!   (the last value only, or the series alone, when the width is short).
//! - The y axis is labelled with the minimum (bottom row) and maximum (top row) of the
//!   series' finite values; a constant series is drawn as a flat line in the middle,
//!   labelled with its value.
//! - The x axis spans [`RenderOptions::range`] or, without one, the data of all series
//!   (so stacked charts line up), and is labelled with its start and end times (time of
//!   day only when the full times do not fit).
//! - Each Braille cell holds 2 × 4 dots. Consecutive points are joined by a line,
//!   except across a `NaN` or `±Inf` value (not drawn) or a gap in time longer than 1.5
//!   times the typical (median) spacing of the series: missing data shows as a break.
//!   A point with no joined neighbour is drawn as a single dot.
//! - A series without points says `no data in this range`; when no series has a
//!   point, the output is the single line `no data`.

use std::io::{self, Write};

use super::output::{RenderOptions, SeriesResult, format_value, series_text};
use super::time::{format_rfc3339, format_time_of_day};

/// The narrowest plot area, whatever the width asked for.
const MIN_PLOT_WIDTH: usize = 8;
/// The fewest plot rows, whatever the height asked for.
const MIN_PLOT_HEIGHT: usize = 2;
/// Lines of a chart that are not plot rows: title, axis, time labels.
const FRAME_LINES: usize = 3;
/// A time gap longer than this many median spacings breaks the line.
const GAP_FACTOR: f64 = 1.5;

/// Writes one chart per series.
pub(crate) fn render_charts(
    results: &[SeriesResult],
    out: &mut dyn Write,
    opts: &RenderOptions,
) -> io::Result<()> {
    let data_range = results
        .iter()
        .flat_map(|r| r.points.iter().map(|p| p.0))
        .fold(None, |acc: Option<(i64, i64)>, t| {
            Some(acc.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))))
        });
    let Some(x_range) = opts.range.or(data_range) else {
        return writeln!(out, "no data");
    };
    if data_range.is_none() {
        return writeln!(out, "no data");
    }
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        for line in chart_lines(r, x_range, opts) {
            writeln!(out, "{}", line.trim_end())?;
        }
    }
    Ok(())
}

/// The lines of one series' chart.
fn chart_lines(r: &SeriesResult, (x0, x1): (i64, i64), opts: &RenderOptions) -> Vec<String> {
    let finite = || r.points.iter().filter(|p| p.1.is_finite());
    let lo = finite().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = finite().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let series = series_text(&r.meta);
    let Some(&(_, last)) = finite().next_back() else {
        let why = if r.points.is_empty() {
            "no data in this range".to_owned()
        } else {
            format!(
                "nothing to draw: all {} points are NaN or infinite",
                r.points.len()
            )
        };
        return vec![fit(&series, opts.width), format!("  {why}")];
    };
    let unit = if r.meta.unit.is_empty() {
        String::new()
    } else {
        format!("  ({})", r.meta.unit)
    };
    // The whole summary if it fits, else the last value, else the series alone.
    let title = [
        format!(
            "{series}  min {}  max {}  last {}{unit}",
            short(lo),
            short(hi),
            short(last)
        ),
        format!("{series}  last {}{unit}", short(last)),
        series.clone(),
    ]
    .into_iter()
    .find(|t| t.chars().count() <= opts.width)
    .unwrap_or_else(|| fit(&series, opts.width));

    let flat = lo == hi;
    let (top, bottom) = if flat {
        (String::new(), String::new())
    } else {
        (short(hi), short(lo))
    };
    let middle = short(lo);
    let label_width = [&top, &bottom, &middle]
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0);
    let plot_w = opts
        .width
        .saturating_sub(label_width + 2)
        .max(MIN_PLOT_WIDTH);
    let plot_h = opts.height.saturating_sub(FRAME_LINES).max(MIN_PLOT_HEIGHT);
    let flat_row = (plot_h - 1) / 2;

    let mut canvas = Canvas::new(plot_w, plot_h);
    let (pw, ph) = (canvas.dots_wide(), canvas.dots_high());
    let to_x = |t: i64| -> Option<usize> {
        if t < x0 || t > x1 {
            return None;
        }
        if x1 == x0 {
            return Some(pw / 2);
        }
        let frac = (t - x0) as f64 / (x1 - x0) as f64;
        Some((frac * (pw - 1) as f64).round() as usize)
    };
    let to_y = |v: f64| -> usize {
        if flat {
            return flat_row * 4 + 1;
        }
        // Halve first so that hi - lo cannot overflow.
        let frac = (hi / 2.0 - v / 2.0) / (hi / 2.0 - lo / 2.0);
        (frac * (ph - 1) as f64).round() as usize
    };

    let max_gap = median_spacing(&r.points).map(|m| m * GAP_FACTOR);
    let mut prev: Option<(i64, usize, usize)> = None;
    for &(t, v) in &r.points {
        let Some(x) = to_x(t).filter(|_| v.is_finite()) else {
            prev = None;
            continue;
        };
        let y = to_y(v);
        match prev {
            Some((pt, px, py)) if max_gap.is_none_or(|g| (t - pt) as f64 <= g) => {
                canvas.line(px, py, x, y);
            }
            _ => canvas.set(x, y),
        }
        prev = Some((t, x, y));
    }

    let mut lines = vec![fit(&title, opts.width)];
    for row in 0..plot_h {
        let label = match row {
            _ if flat && row == flat_row => middle.as_str(),
            0 => top.as_str(),
            r if r == plot_h - 1 => bottom.as_str(),
            _ => "",
        };
        let axis = if label.is_empty() { '│' } else { '┤' };
        lines.push(format!("{label:>label_width$} {axis}{}", canvas.row(row)));
    }
    lines.push(format!("{:label_width$} └{}", "", "─".repeat(plot_w)));
    lines.push(time_labels(x0, x1, label_width, plot_w, opts));
    lines
}

/// The start and end times under the x axis: the start under the axis corner, the end
/// flush with the last column.
fn time_labels(
    x0: i64,
    x1: i64,
    label_width: usize,
    plot_w: usize,
    opts: &RenderOptions,
) -> String {
    let zone = opts.zone();
    let full = |t: i64| format_rfc3339(t, zone, false);
    let short = |t: i64| format_time_of_day(t, zone);
    let room = plot_w + 1;
    let indent = " ".repeat(label_width + 1);
    if x0 == x1 {
        let text = Some(full(x0))
            .filter(|s| s.len() <= room)
            .unwrap_or_else(|| short(x0));
        return format!("{indent}{text}");
    }
    let candidates = [
        (full(x0), full(x1)),
        (full(x0), short(x1)),
        (short(x0), short(x1)),
    ];
    match candidates
        .into_iter()
        .find(|(a, b)| a.len() + 1 + b.len() <= room)
    {
        Some((a, b)) => format!("{indent}{a}{b:>w$}", w = room - a.len()),
        None => format!("{indent}{}", short(x0)),
    }
}

/// The median time between consecutive points, if there are two distinct times.
fn median_spacing(points: &[(i64, f64)]) -> Option<f64> {
    let mut gaps: Vec<i64> = points
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .filter(|d| *d > 0)
        .collect();
    if gaps.is_empty() {
        return None;
    }
    let mid = gaps.len() / 2;
    let (_, median, _) = gaps.select_nth_unstable(mid);
    Some(*median as f64)
}

/// A compact label: about six significant digits, `NaN`/`±Inf` as in the table.
fn short(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format_value(v);
    }
    let exp = v.abs().log10().floor() as i32;
    if (-4..15).contains(&exp) {
        let decimals = usize::try_from(5 - exp).unwrap_or(0);
        trim_fraction(&format!("{v:.decimals$}")).to_owned()
    } else {
        let text = format!("{v:.5e}");
        match text.split_once('e') {
            Some((mantissa, e)) => format!("{}e{e}", trim_fraction(mantissa)),
            None => text,
        }
    }
}

/// `1.2500` → `1.25`, `3.000` → `3`; integers unchanged.
fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// `s` cut to `width` characters, ending in `…` when cut.
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A grid of Braille cells, each 2 dots wide and 4 high.
struct Canvas {
    width: usize,
    height: usize,
    cells: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Self {
        Canvas {
            width,
            height,
            cells: vec![0; width * height],
        }
    }

    fn dots_wide(&self) -> usize {
        self.width * 2
    }

    fn dots_high(&self) -> usize {
        self.height * 4
    }

    /// Sets the dot at `(x, y)`, `y = 0` at the top; dots outside are ignored.
    fn set(&mut self, x: usize, y: usize) {
        // Bit of each dot in a cell, by [row][column] (Unicode Braille numbering).
        const BITS: [[u8; 2]; 4] = [[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]];
        if x < self.dots_wide() && y < self.dots_high() {
            self.cells[(y / 4) * self.width + x / 2] |= BITS[y % 4][x % 2];
        }
    }

    /// Draws a straight line of dots from `(x0, y0)` to `(x1, y1)` (Bresenham).
    fn line(&mut self, x0: usize, y0: usize, x1: usize, y1: usize) {
        let (mut x, mut y) = (x0 as i64, y0 as i64);
        let (tx, ty) = (x1 as i64, y1 as i64);
        let dx = (tx - x).abs();
        let dy = -(ty - y).abs();
        let sx = if x < tx { 1 } else { -1 };
        let sy = if y < ty { 1 } else { -1 };
        let mut err = dx + dy;
        loop {
            // x and y stay between the two end points, which are valid usizes.
            self.set(x as usize, y as usize);
            if x == tx && y == ty {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// One row of cells as text; empty cells are spaces.
    fn row(&self, row: usize) -> String {
        self.cells[row * self.width..(row + 1) * self.width]
            .iter()
            .map(|&bits| match bits {
                0 => ' ',
                bits => char::from_u32(0x2800 + u32::from(bits)).unwrap_or('?'),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pga_format::{MetricKind, SeriesId, SeriesMeta};

    const T0: i64 = 1_795_507_200_000; // 2026-11-24T08:00:00Z
    const MIN: i64 = 60_000;

    fn series(name: &str, points: Vec<(i64, f64)>) -> SeriesResult {
        SeriesResult {
            meta: SeriesMeta::new(
                SeriesId(1),
                name,
                vec![("pg_instance".into(), "db1".into())],
                MetricKind::Gauge,
                "",
                "",
            )
            .unwrap(),
            points,
        }
    }

    fn chart(results: &[SeriesResult], width: usize, height: usize) -> String {
        let opts = RenderOptions {
            width,
            height,
            ..RenderOptions::default()
        };
        let mut buf = Vec::new();
        render_charts(results, &mut buf, &opts).unwrap();
        String::from_utf8(buf).unwrap()
    }

    fn assert_fits(text: &str, width: usize) {
        for line in text.lines() {
            assert!(line.chars().count() <= width, "too wide: {line:?}");
            assert_eq!(line, line.trim_end(), "trailing space: {line:?}");
        }
    }

    #[test]
    fn golden_small_chart() {
        let values = [1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0];
        let points = (0..=10)
            .map(|i| (T0 + i * MIN, values[i as usize]))
            .collect();
        let text = chart(&[series("pg_up", points)], 24, 7);
        assert_eq!(
            text,
            "\
pg_up{pg_instance=\"db1\"}
1 ┤⠉⠉⠉⠉⠱⡀          ⡜⠉⠉⠉⠉
  │     ⠱⡀        ⡜
  │      ⠱⡀     ⢀⠎
0 ┤       ⠱⣀⣀⣀⣀⣀⠎
  └─────────────────────
  08:00:00Z    08:10:00Z
"
        );
        assert_fits(&text, 24);
        assert_eq!(text.lines().count(), 7);
    }

    #[test]
    fn golden_wide_chart_with_times_and_gap() {
        // 08:00–08:04, nothing until 08:08–08:10: the line breaks over the gap.
        let points = vec![
            (T0, 10.0),
            (T0 + MIN, 20.0),
            (T0 + 2 * MIN, 30.0),
            (T0 + 3 * MIN, 20.0),
            (T0 + 4 * MIN, 10.0),
            (T0 + 8 * MIN, 10.0),
            (T0 + 9 * MIN, 30.0),
            (T0 + 10 * MIN, 30.0),
        ];
        let text = chart(&[series("pg_stat_activity_count", points)], 66, 8);
        assert_eq!(
            text,
            "\
pg_stat_activity_count{pg_instance=\"db1\"}  min 10  max 30  last 30
30 ┤          ⢀⠤⠊⠢⣀                                       ⢀⠎⠉⠉⠉⠉⠉⠉
   │        ⡠⠒⠁    ⠑⢄                                    ⡠⠃
   │     ⣀⠔⠉         ⠉⠢⡀                               ⢀⠔⠁
   │  ⢀⠤⠊              ⠈⠑⢄⡀                           ⢠⠊
10 ┤⡠⠒⠁                   ⠈⠢⢄                        ⡰⠁
   └──────────────────────────────────────────────────────────────
   2026-11-24T08:00:00Z                       2026-11-24T08:10:00Z
"
        );
        assert_fits(&text, 66);
    }

    #[test]
    fn constant_series_is_a_flat_labelled_line() {
        let points = (0..5).map(|i| (T0 + i * MIN, 42.0)).collect();
        let text = chart(&[series("m", points)], 30, 7);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "m{pg_instance=\"db1\"}  last 42");
        assert_eq!(lines[1], "   │");
        assert!(lines[2].starts_with("42 ┤⠒⠒⠒"), "{text}");
        assert_eq!(lines[3], "   │");
        assert_eq!(lines[4], "   │");
        assert_fits(&text, 30);
    }

    #[test]
    fn single_point_is_a_dot() {
        let text = chart(&[series("m", vec![(T0, 3.5)])], 40, 6);
        let dots: usize = text
            .chars()
            .filter(|c| ('\u{2801}'..='\u{28ff}').contains(c))
            .count();
        assert_eq!(dots, 1, "{text}");
        assert!(text.contains("3.5 ┤"), "{text}");
        assert!(text.ends_with("    2026-11-24T08:00:00Z\n"), "{text}");
        assert_fits(&text, 40);
    }

    #[test]
    fn nan_breaks_the_line() {
        let points = vec![
            (T0, 0.0),
            (T0 + MIN, 1.0),
            (T0 + 2 * MIN, f64::NAN),
            (T0 + 3 * MIN, 0.0),
            (T0 + 4 * MIN, 1.0),
        ];
        let text = chart(&[series("m", points)], 40, 6);
        let plot: Vec<&str> = text.lines().skip(1).take(3).collect();
        // The middle of the plot (where 08:02 would be) stays empty on every row.
        for line in &plot {
            let cells: Vec<char> = line.chars().skip(3).collect();
            assert_eq!(cells.get(13).copied().unwrap_or(' '), ' ', "{text}");
        }
        assert!(text.contains("last 1"), "{text}");
    }

    #[test]
    fn no_data() {
        assert_eq!(chart(&[], 40, 10), "no data\n");
        assert_eq!(chart(&[series("m", vec![])], 40, 10), "no data\n");
        let text = chart(
            &[
                series("m", vec![(T0, 1.0), (T0 + MIN, 2.0)]),
                series("n", vec![]),
            ],
            40,
            10,
        );
        assert!(
            text.ends_with("\nn{pg_instance=\"db1\"}\n  no data in this range\n"),
            "{text}"
        );
        let text = chart(
            &[series("m", vec![(T0, f64::NAN), (T0 + 1, f64::INFINITY)])],
            60,
            10,
        );
        assert_eq!(
            text,
            "m{pg_instance=\"db1\"}\n  nothing to draw: all 2 points are NaN or infinite\n"
        );
    }

    #[test]
    fn fits_any_size() {
        let points: Vec<(i64, f64)> = (0..500)
            .map(|i| (T0 + i * 10_000, ((i as f64) / 20.0).sin() * 1e9))
            .collect();
        for (w, h) in [(1, 1), (10, 3), (20, 5), (80, 24), (200, 50)] {
            let text = chart(&[series("m", points.clone())], w, h);
            let lines = text.lines().count();
            assert_eq!(
                lines,
                h.max(FRAME_LINES + MIN_PLOT_HEIGHT),
                "{w}x{h}:\n{text}"
            );
            if w >= 30 {
                assert_fits(&text, w);
            }
        }
    }

    #[test]
    fn range_option_spans_the_query() {
        let opts = RenderOptions {
            width: 50,
            height: 6,
            range: Some((T0 - 10 * MIN, T0 + 10 * MIN)),
            ..RenderOptions::default()
        };
        let mut buf = Vec::new();
        render_charts(
            &[series("m", vec![(T0, 1.0), (T0 + MIN, 2.0)])],
            &mut buf,
            &opts,
        )
        .unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.ends_with("\n  2026-11-24T07:50:00Z        2026-11-24T08:10:00Z\n"),
            "{text}"
        );
    }

    #[test]
    fn short_labels() {
        assert_eq!(short(1.0), "1");
        assert_eq!(short(0.1 + 0.2), "0.3");
        assert_eq!(short(1234.5678), "1234.57");
        assert_eq!(short(123_456_789.0), "123456789");
        assert_eq!(short(-0.000_123_456_7), "-0.000123457");
        assert_eq!(short(1.5e20), "1.5e20");
        assert_eq!(short(2e-7), "2e-7");
        assert_eq!(short(f64::NAN), "NaN");
    }
}
