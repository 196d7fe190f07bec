//! Annotation templates: text with `{{ … }}` actions over the alert's labels, value
//! and threshold, in the spirit of Prometheus' templates:
//!
//! ```text
//! {{ $labels.pg_instance }} on {{ $labels.agent }} uses {{ $value | humanizePercentage }}
//! of its connections (threshold {{ $threshold | humanizePercentage }})
//! ```
//!
//! An action is `$labels.NAME`, `$value` or `$threshold`, optionally piped through
//! `humanize` (SI prefixes: 1.5k, 3.2M), `humanize1024` (Ki, Mi, Gi), `humanizeDuration`
//! (1h 2m 3s), `humanizePercentage` (0.85 → 85%) or `printf "FORMAT"` (`%.2f`, `%d`,
//! `%s`, `%g`). A missing label renders as an empty string. Templates are checked
//! when a rule is loaded: an unknown action or function is refused with its position.

use super::labels::LabelSet;

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Action {
        source: Source,
        filters: Vec<Filter>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Source {
    Label(String),
    Value,
    Threshold,
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Humanize,
    Humanize1024,
    HumanizeDuration,
    HumanizePercentage,
    Printf(String),
}

/// A template that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at character {}: {message}; fix: {fix}", offset + 1)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
    pub fix: String,
}

const FIX: &str = "write {{ $labels.NAME }}, {{ $value }} or {{ $threshold }}, optionally \
                   piped to humanize, humanize1024, humanizeDuration, humanizePercentage or \
                   printf \"%.2f\"";

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut base = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let at = base + open;
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(TemplateError {
                    offset: text[..at].chars().count(),
                    message: "`{{` is not closed".into(),
                    fix: "close the action with }}".into(),
                });
            };
            parts.push(parse_action(&after[..close], text[..at].chars().count())?);
            let consumed = open + 2 + close + 2;
            rest = &rest[consumed..];
            base += consumed;
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// Renders with the alert's labels, value and (effective) threshold.
    pub fn render(&self, labels: &LabelSet, value: f64, threshold: f64) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action { source, filters } => {
                    let mut v = match source {
                        Source::Label(n) => Val::Text(labels.get(n).to_owned()),
                        Source::Value => Val::Num(value),
                        Source::Threshold => Val::Num(threshold),
                    };
                    for f in filters {
                        v = apply(f, v);
                    }
                    out.push_str(&v.text());
                }
            }
        }
        out
    }
}

enum Val {
    Num(f64),
    Text(String),
}

impl Val {
    fn num(&self) -> Option<f64> {
        match self {
            Val::Num(n) => Some(*n),
            Val::Text(t) => t.trim().parse().ok(),
        }
    }

    fn text(self) -> String {
        match self {
            Val::Num(n) => format_number(n),
            Val::Text(t) => t,
        }
    }
}

fn parse_action(body: &str, offset: usize) -> Result<Part, TemplateError> {
    let err = |message: String| TemplateError {
        offset,
        message,
        fix: FIX.into(),
    };
    let mut stages = body.split('|').map(str::trim);
    let head = stages.next().unwrap_or("");
    let source = if let Some(name) = head
        .strip_prefix("$labels.")
        .or_else(|| head.strip_prefix(".Labels."))
    {
        if !super::expr::is_label_name(name) {
            return Err(err(format!("`{name}` is not a label name")));
        }
        Source::Label(name.to_owned())
    } else if head == "$value" || head == ".Value" {
        Source::Value
    } else if head == "$threshold" {
        Source::Threshold
    } else if head.is_empty() {
        return Err(err("an empty action".into()));
    } else {
        return Err(err(format!("unknown action `{head}`")));
    };
    let mut filters = Vec::new();
    for stage in stages {
        let f = match stage {
            "humanize" => Filter::Humanize,
            "humanize1024" => Filter::Humanize1024,
            "humanizeDuration" => Filter::HumanizeDuration,
            "humanizePercentage" => Filter::HumanizePercentage,
            s if s.starts_with("printf") => {
                let fmt = s["printf".len()..].trim();
                let fmt = fmt
                    .strip_prefix('"')
                    .and_then(|f| f.strip_suffix('"'))
                    .ok_or_else(|| err(format!("printf needs a quoted format, got `{fmt}`")))?;
                if !fmt.contains('%') {
                    return Err(err(format!("printf format {fmt:?} has no % verb")));
                }
                Filter::Printf(fmt.to_owned())
            }
            other => return Err(err(format!("unknown function `{other}`"))),
        };
        filters.push(f);
    }
    Ok(Part::Action { source, filters })
}

fn apply(f: &Filter, v: Val) -> Val {
    let Some(n) = v.num() else {
        return v;
    };
    Val::Text(match f {
        Filter::Humanize => humanize(
            n,
            1000.0,
            &["", "k", "M", "G", "T", "P", "E"],
            &["", "m", "µ", "n", "p"],
        ),
        Filter::Humanize1024 => {
            humanize(n, 1024.0, &["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"], &[""])
        }
        Filter::HumanizeDuration => humanize_duration(n),
        Filter::HumanizePercentage => format!("{}%", format_number(round_sig(n * 100.0))),
        Filter::Printf(fmt) => printf(fmt, n),
    })
}

/// A number as Go's `%g`-like shortest form: integers without decimals.
fn format_number(n: f64) -> String {
    if n.is_nan() {
        return "NaN".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if n == n.trunc() && n.abs() < 1e15 {
        return format!("{}", n as i64);
    }
    let s = format!("{:.4}", n);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

/// Rounds to 4 significant digits.
fn round_sig(n: f64) -> f64 {
    if n == 0.0 || !n.is_finite() {
        return n;
    }
    let scale = 10f64.powi(3 - n.abs().log10().floor() as i32);
    (n * scale).round() / scale
}

fn humanize(n: f64, base: f64, up: &[&str], down: &[&str]) -> String {
    if !n.is_finite() || n == 0.0 {
        return format_number(n);
    }
    let mut v = n;
    let mut i = 0;
    if v.abs() >= 1.0 {
        while v.abs() >= base && i + 1 < up.len() {
            v /= base;
            i += 1;
        }
        format!("{}{}", format_number(round_sig(v)), up[i])
    } else {
        while v.abs() < 1.0 && i + 1 < down.len() {
            v *= base;
            i += 1;
        }
        format!("{}{}", format_number(round_sig(v)), down[i])
    }
}

fn humanize_duration(secs: f64) -> String {
    if !secs.is_finite() {
        return format_number(secs);
    }
    if secs.abs() < 1.0 {
        return format!("{}ms", format_number(round_sig(secs * 1000.0)));
    }
    let sign = if secs < 0.0 { "-" } else { "" };
    let mut s = secs.abs().round() as u64;
    let d = s / 86_400;
    s %= 86_400;
    let h = s / 3600;
    s %= 3600;
    let m = s / 60;
    s %= 60;
    let mut parts = Vec::new();
    if d > 0 {
        parts.push(format!("{d}d"));
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if s > 0 || parts.is_empty() {
        parts.push(format!("{s}s"));
    }
    format!("{sign}{}", parts.join(" "))
}

fn printf(fmt: &str, n: f64) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        while let Some(&d) = chars.peek() {
            if d.is_ascii_digit() || d == '.' {
                spec.push(d);
                chars.next();
            } else {
                break;
            }
        }
        match chars.next() {
            Some('f') => {
                let prec = spec
                    .split_once('.')
                    .and_then(|(_, p)| p.parse::<usize>().ok())
                    .unwrap_or(6);
                out.push_str(&format!("{n:.prec$}"));
            }
            Some('d') => out.push_str(&format!("{}", n.round() as i64)),
            Some('%') => out.push('%'),
            Some(_) | None => out.push_str(&format_number(n)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labels_values_and_filters() {
        let t = Template::parse(
            "{{ $labels.pg_instance }} at {{ $value | humanizePercentage }} \
             (over {{$threshold|humanizePercentage}}); {{ $labels.missing }}.",
        )
        .unwrap();
        let l = LabelSet::from_pairs([("pg_instance", "main")]);
        assert_eq!(t.render(&l, 0.8512, 0.8), "main at 85.12% (over 80%); .");
        let t = Template::parse("{{ $value | humanize1024 }}B {{ $value | humanize }} {{ $value | humanizeDuration }} {{ $value | printf \"%.1f\" }}").unwrap();
        assert_eq!(
            t.render(&l, 3_758_096_384.0, 0.0),
            "3.5GiB 3.758G 43496d 11h 39m 44s 3758096384.0"
        );
        assert_eq!(humanize_duration(3725.0), "1h 2m 5s");
        assert_eq!(
            Template::parse("plain").unwrap().render(&l, 1.0, 1.0),
            "plain"
        );
    }

    #[test]
    fn bad_templates_say_where() {
        let e = Template::parse("x {{ $lables.a }}").unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(e.message.contains("$lables.a"), "{e}");
        let e = Template::parse("{{ $value | humanise }}").unwrap_err();
        assert!(e.message.contains("humanise"), "{e}");
        let e = Template::parse("ok {{ $value ").unwrap_err();
        assert!(e.message.contains("not closed"), "{e}");
    }
}
