//! The dashboards of `dashboards/grafana/`: loading, the house lint, and the queries
//! each one sends (panel targets, annotations, variables).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::Value;

/// One dashboard file.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub path: PathBuf,
    pub uid: String,
    pub title: String,
    pub json: Value,
}

impl Dashboard {
    /// Whether its queries are SQL for the central database (else PromQL).
    pub fn is_sql(&self) -> bool {
        self.variables()
            .iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "grafana-postgresql-datasource")
    }

    pub fn variables(&self) -> Vec<&Value> {
        self.json["templating"]["list"]
            .as_array()
            .map(|l| l.iter().collect())
            .unwrap_or_default()
    }

    /// Every panel, rows' nested panels included, rows themselves left out.
    pub fn panels(&self) -> Vec<&Value> {
        let mut out = Vec::new();
        for p in self.json["panels"].as_array().into_iter().flatten() {
            if p["type"] == "row" {
                out.extend(p["panels"].as_array().into_iter().flatten());
            } else {
                out.push(p);
            }
        }
        out
    }

    /// The queries Grafana would send for this dashboard, variables first (in order:
    /// a later one may use an earlier one), then annotations, then panels.
    pub fn queries(&self) -> Vec<Query> {
        let mut out = Vec::new();
        for v in self.variables() {
            if v["type"] == "query" {
                let text = v["query"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| v["query"]["query"].as_str().map(str::to_owned));
                if let Some(text) = text {
                    out.push(Query {
                        dashboard: self.uid.clone(),
                        source: Source::Variable(v["name"].as_str().unwrap_or("").to_owned()),
                        text,
                        instant: true,
                        format: "table".into(),
                    });
                }
            }
        }
        for a in self.json["annotations"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(text) = a["target"]["rawSql"].as_str() {
                out.push(Query {
                    dashboard: self.uid.clone(),
                    source: Source::Annotation(a["name"].as_str().unwrap_or("").to_owned()),
                    text: text.to_owned(),
                    instant: false,
                    format: "table".into(),
                });
            }
        }
        for p in self.panels() {
            let title = p["title"].as_str().unwrap_or("").to_owned();
            for t in p["targets"].as_array().into_iter().flatten() {
                let text = t["rawSql"].as_str().or_else(|| t["expr"].as_str());
                if let Some(text) = text {
                    out.push(Query {
                        dashboard: self.uid.clone(),
                        source: Source::Panel {
                            title: title.clone(),
                            ref_id: t["refId"].as_str().unwrap_or("A").to_owned(),
                        },
                        text: text.to_owned(),
                        instant: t["instant"].as_bool().unwrap_or(false),
                        format: t["format"].as_str().unwrap_or("time_series").to_owned(),
                    });
                }
            }
        }
        out
    }
}

/// Where a query comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Variable(String),
    Annotation(String),
    Panel { title: String, ref_id: String },
}

/// One query of a dashboard, before variables and macros.
#[derive(Debug, Clone)]
pub struct Query {
    pub dashboard: String,
    pub source: Source,
    pub text: String,
    /// PromQL: an instant query (tables, stats) rather than a range query.
    pub instant: bool,
    /// SQL: `time_series` or `table`.
    pub format: String,
}

impl Query {
    /// `uid/panel title` (the key of `dashboards/expected-empty.json`), `uid/$var`
    /// or `uid/annotation name`.
    pub fn key(&self) -> String {
        match &self.source {
            Source::Variable(n) => format!("{}/${n}", self.dashboard),
            Source::Annotation(n) => format!("{}/annotation {n}", self.dashboard),
            Source::Panel { title, .. } => format!("{}/{title}", self.dashboard),
        }
    }
}

/// Loads every `*.json` under `dir` (recursively), sorted by path.
pub fn load_dir(dir: &Path) -> Result<Vec<Dashboard>, String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        for e in entries {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let json: Value = serde_json::from_str(&text)
                .map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
            Ok(Dashboard {
                uid: json["uid"].as_str().unwrap_or("").to_owned(),
                title: json["title"].as_str().unwrap_or("").to_owned(),
                path,
                json,
            })
        })
        .collect()
}

/// The oldest `schemaVersion` the lint accepts: Grafana 11's.
pub const MIN_SCHEMA_VERSION: u64 = 39;

/// The house rules (docs/dashboards.md, "Rules"). Returns one line per violation.
pub fn lint(dashboards: &[Dashboard]) -> Vec<String> {
    let mut errors = Vec::new();
    let by_uid: BTreeMap<&str, &Dashboard> =
        dashboards.iter().map(|d| (d.uid.as_str(), d)).collect();
    if by_uid.len() != dashboards.len() {
        errors.push("two dashboards share a uid".to_owned());
    }
    let titles: BTreeSet<&str> = dashboards.iter().map(|d| d.title.as_str()).collect();
    if titles.len() != dashboards.len() {
        errors.push("two dashboards share a title".to_owned());
    }
    let hard_coded_sql = Regex::new(
        r#"(?i)\b(agent|pg_instance|instance|datname|database_name|cluster|relname)\b\s*(=|<>|!=|\bin\b)\s*\(?\s*'|'(agent|datname|relname|pg_instance|instance)'\s*,\s*'|"(datname|relname|agent|instance)"\s*:\s*""#,
    )
    .expect("valid regex");
    let hard_coded_promql =
        Regex::new(r#"\b(instance|pg_instance|job|datname)\s*=~?\s*"[^$"]"#).expect("valid regex");
    let physical = Regex::new(
        r"(?i)\b(from|join)\s+(samples(_1m|_1h|_packed)?|sample_times|series|agent_series|log_events|agent_cursors|gaps|agents|servers|postgresql_instances|databases)\b",
    )
    .expect("valid regex");
    let link_re = Regex::new(r"/d/([A-Za-z0-9_-]+)").expect("valid regex");
    let var_re = Regex::new(r"var-([A-Za-z0-9_]+)=").expect("valid regex");
    let own_re = Regex::new(r"\$\{([A-Za-z0-9_]+)[}:]").expect("valid regex");

    for d in dashboards {
        let at = |what: &str| format!("{} ({}): {what}", d.uid, d.path.display());
        if d.uid.is_empty() || d.title.is_empty() {
            errors.push(at("no uid or title"));
        }
        if d.json["description"].as_str().is_none_or(str::is_empty) {
            errors.push(at("no description"));
        }
        if d.json["schemaVersion"].as_u64().unwrap_or(0) < MIN_SCHEMA_VERSION {
            errors.push(at(&format!("schemaVersion below {MIN_SCHEMA_VERSION}")));
        }
        let vars = d.variables();
        let var_names: BTreeSet<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();
        let ds_var = vars
            .iter()
            .find(|v| v["type"] == "datasource" && v["name"] == "datasource");
        if ds_var.is_none() {
            errors.push(at("no `datasource` variable of type datasource"));
        }
        let ds_ok = |ds: &Value| ds["uid"] == "${datasource}";
        for v in &vars {
            if v["type"] == "query" && !ds_ok(&v["datasource"]) {
                errors.push(at(&format!(
                    "variable {} does not use the datasource variable",
                    v["name"]
                )));
            }
            if v["description"].as_str().is_none_or(str::is_empty) {
                errors.push(at(&format!("variable {} has no description", v["name"])));
            }
        }
        for a in d.json["annotations"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if a["builtIn"] == 1 {
                continue;
            }
            if !ds_ok(&a["datasource"]) {
                errors.push(at(&format!(
                    "annotation {} does not use the datasource variable",
                    a["name"]
                )));
            }
        }
        let mut panel_ids = BTreeSet::new();
        for p in d.panels() {
            let title = p["title"].as_str().unwrap_or("");
            let pat = |what: &str| at(&format!("panel {title:?}: {what}"));
            if !panel_ids.insert(p["id"].as_u64().unwrap_or(0)) {
                errors.push(pat("duplicate panel id"));
            }
            if title.is_empty() {
                errors.push(at("a panel without a title"));
            }
            if p["description"].as_str().is_none_or(str::is_empty) {
                errors.push(pat("no description"));
            }
            if p["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .is_none_or(str::is_empty)
            {
                errors.push(pat("no unit"));
            }
            if !ds_ok(&p["datasource"]) {
                errors.push(pat("datasource not given by the datasource variable"));
            }
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                errors.push(pat("no query"));
            }
            for t in &targets {
                if !ds_ok(&t["datasource"]) {
                    errors.push(pat("a query's datasource is not the datasource variable"));
                }
                if let Some(sql) = t["rawSql"].as_str() {
                    if let Some(m) = hard_coded_sql.find(sql) {
                        errors.push(pat(&format!("hard-coded name in SQL: {:?}", m.as_str())));
                    }
                    if let Some(m) = physical.find(sql) {
                        errors.push(pat(&format!(
                            "reads a table, not the query layer: {:?}",
                            m.as_str()
                        )));
                    }
                    if p["type"] == "timeseries" && t["format"] != "time_series" {
                        errors.push(pat("a time series panel whose query is not time_series"));
                    }
                }
                if let Some(expr) = t["expr"].as_str()
                    && let Some(m) = hard_coded_promql.find(expr)
                {
                    errors.push(pat(&format!(
                        "hard-coded label value in PromQL: {:?}",
                        m.as_str()
                    )));
                }
            }
        }
        // Every link, dashboard-level or data link, resolves to a dashboard here and
        // names only variables that dashboard has.
        let mut urls = Vec::new();
        for l in d.json["links"].as_array().into_iter().flatten() {
            urls.push(l["url"].as_str().unwrap_or("").to_owned());
            if l["includeVars"] == true {
                // Grafana passes all of this dashboard's variables: the target must have
                // the ones it filters on.
                let target = link_re
                    .captures(l["url"].as_str().unwrap_or(""))
                    .map(|c| c[1].to_owned());
                if let Some(t) = target.and_then(|t| by_uid.get(t.as_str()).copied()) {
                    let theirs: BTreeSet<String> = t
                        .variables()
                        .iter()
                        .filter_map(|v| v["name"].as_str().map(str::to_owned))
                        .collect();
                    if !theirs.contains("datasource") || !theirs.contains("agent") {
                        errors.push(at(&format!(
                            "link to {} keeps variables it does not have",
                            t.uid
                        )));
                    }
                }
            }
        }
        collect_urls(&d.json["panels"], &mut urls);
        for url in urls {
            let Some(c) = link_re.captures(&url) else {
                errors.push(at(&format!("link {url:?} is not a dashboard link")));
                continue;
            };
            match by_uid.get(&c[1]) {
                None => errors.push(at(&format!("link {url:?}: no dashboard {}", &c[1]))),
                Some(target) => {
                    let theirs: BTreeSet<String> = target
                        .variables()
                        .iter()
                        .filter_map(|v| v["name"].as_str().map(str::to_owned))
                        .collect();
                    for v in var_re.captures_iter(&url) {
                        if !theirs.contains(&v[1]) {
                            errors.push(at(&format!(
                                "link {url:?}: {} has no variable {}",
                                target.uid, &v[1]
                            )));
                        }
                    }
                    // A value taken from this dashboard's own variable must exist here.
                    for v in own_re.captures_iter(&url) {
                        if !v[1].starts_with("__") && !var_names.contains(&v[1]) {
                            errors.push(at(&format!("link {url:?}: no variable {} here", &v[1])));
                        }
                    }
                }
            }
        }
    }
    errors
}

fn collect_urls(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "links"
                    && let Some(list) = x.as_array()
                {
                    for l in list {
                        if let Some(u) = l["url"].as_str() {
                            out.push(u.to_owned());
                        }
                    }
                }
                collect_urls(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_urls(x, out)),
        _ => {}
    }
}
