//! The documentation stays true to the tree: every relative link of README.md and
//! docs/*.md reaches a file (and, with `#anchor`, a heading of it), and every path
//! docs/architecture.md names exists, as does every item its "One metric, end to end"
//! table says a file holds. A failure names each broken link, path or item.

use std::path::{Path, PathBuf};

use regex::Regex;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// README.md and every page of docs/.
fn pages() -> Vec<PathBuf> {
    let root = root();
    let mut pages = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages.sort();
    pages
}

/// Markdown text outside fenced code blocks.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// GitHub's anchor of a heading: lower case, punctuation but `-` and `_` dropped,
/// spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    prose(text)
        .lines()
        .filter_map(|l| {
            let rest = l.trim_start_matches('#');
            (rest.len() < l.len() && rest.starts_with(' ')).then(|| slug(rest))
        })
        .collect()
}

#[test]
fn every_relative_link_resolves() {
    let link = Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let root = root();
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = read(&page);
        let shown = page.strip_prefix(&root).unwrap().display().to_string();
        for cap in link.captures_iter(&prose(&text)) {
            let target = &cap[1];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let (path, linked) = if file.is_empty() {
                (page.clone(), text.clone())
            } else {
                let path = page.parent().unwrap().join(file);
                if !path.exists() {
                    broken.push(format!("{shown}: {target}: no such file"));
                    continue;
                }
                let linked = if path.is_file() && file.ends_with(".md") {
                    read(&path)
                } else {
                    String::new()
                };
                (path, linked)
            };
            if !anchor.is_empty() && !anchors(&linked).iter().any(|a| a == anchor) {
                broken.push(format!(
                    "{shown}: {target}: {} has no heading with the anchor #{anchor}",
                    path.strip_prefix(&root).unwrap_or(&path).display()
                ));
            }
        }
    }
    assert!(checked > 50, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The paths of the repository that docs/architecture.md names, as written there.
fn named_paths(text: &str) -> Vec<String> {
    let path = Regex::new(
        r"(?:^|[^A-Za-z0-9_./-])(?:\.\./)?((?:agent|federator|storage-format|selector|bench|migrations|dashboards|packaging|docs)/[A-Za-z0-9_./-]*)",
    )
    .unwrap();
    let mut out: Vec<String> = path
        .captures_iter(text)
        .map(|c| c[1].trim_end_matches('.').to_owned())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn every_path_architecture_md_names_exists() {
    let root = root();
    let text = read(&root.join("docs/architecture.md"));
    assert!(
        text.contains("```mermaid"),
        "docs/architecture.md has no mermaid diagram of the crates and modules"
    );
    let named = named_paths(&text);
    assert!(
        named.len() > 30,
        "only {} paths found: {named:?}",
        named.len()
    );
    let missing: Vec<&String> = named.iter().filter(|p| !root.join(p).exists()).collect();
    assert!(
        missing.is_empty(),
        "docs/architecture.md names paths that do not exist (update its module map):\n{}",
        missing
            .iter()
            .map(|p| format!("  {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Each row of "One metric, end to end" names files (col. 2) and the items they hold
/// (col. 3, the `code` spans that are plain identifiers): each item is in one of them.
#[test]
fn every_item_of_the_metric_trace_is_where_it_says() {
    let root = root();
    let text = read(&root.join("docs/architecture.md"));
    let section = text
        .split("\n## One metric, end to end\n")
        .nth(1)
        .expect("docs/architecture.md has \"## One metric, end to end\"");
    let ident = Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").unwrap();
    let span = Regex::new(r"`([^`]+)`").unwrap();
    let mut wrong = Vec::new();
    let mut rows = 0;
    for line in section
        .lines()
        .skip_while(|l| !l.starts_with("| step"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
    {
        rows += 1;
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
        assert!(cells.len() >= 3, "a row of fewer than 3 cells: {line}");
        let files: Vec<String> = span
            .captures_iter(cells[1])
            .map(|c| c[1].to_owned())
            .collect();
        let sources: Vec<String> = files
            .iter()
            .filter_map(|f| std::fs::read_to_string(root.join(f)).ok())
            .collect();
        for item in span.captures_iter(cells[2]) {
            let item = &item[1];
            if ident.is_match(item) && !sources.iter().any(|s| s.contains(item)) {
                wrong.push(format!("  {}: `{item}` is in none of {files:?}", cells[0]));
            }
        }
    }
    assert!(rows >= 10, "only {rows} rows in the metric's trace");
    assert!(
        wrong.is_empty(),
        "docs/architecture.md, \"One metric, end to end\", names items that moved:\n{}",
        wrong.join("\n")
    );
}
