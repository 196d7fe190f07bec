//! The example requests of docs/api.md are checked against the served OpenAPI
//! document (route, query parameters, body fields) and sent to a running API.

use pga_federator::auth::Role;
use serde_json::Value;

use crate::support::api::{PASSWORD, TestApi, request};
use crate::support::url_encode;

/// `(method, path with query, body)` of every ```http block.
fn examples(doc: &str) -> Vec<(String, String, Option<Value>)> {
    let mut out = Vec::new();
    let mut rest = doc;
    while let Some(i) = rest.find("```http\n") {
        let block = &rest[i + 8..];
        let end = block.find("```").expect("closed block");
        let text = &block[..end];
        let (line, body) = text.split_once('\n').unwrap_or((text, ""));
        let (method, target) = line.trim().split_once(' ').expect("METHOD PATH");
        let body = body.trim();
        let body =
            (!body.is_empty()).then(|| serde_json::from_str(body).expect("example body is JSON"));
        out.push((method.to_owned(), target.to_owned(), body));
        rest = &block[end + 3..];
    }
    out
}

fn template_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}')))
}

fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            &spec["components"]["schemas"][name]
        }
        None => schema,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_example_requests_match_the_openapi_document_and_work() {
    let api = TestApi::start_with(|c| {
        // https agents need the federator's client certificate; the API only checks
        // that one is configured.
        c.tls.cert_file = Some("/nonexistent/federator.crt".into());
        c.tls.key_file = Some("/nonexistent/federator.key".into());
        c.tls.ca_file = Some("/nonexistent/ca.crt".into());
    })
    .await;
    api.user("alice", Role::Admin).await;
    let (access, _) = api.login("alice").await;
    let spec = api
        .call("GET", "/api/v1/openapi.json", None, None)
        .await
        .json;
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md")).unwrap();
    let examples = examples(&doc);
    assert!(examples.len() >= 5, "{examples:?}");
    for (method, target, body) in examples {
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let (template, item) = spec["paths"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(t, _)| template_matches(t, path))
            .unwrap_or_else(|| {
                panic!("docs/api.md: {method} {path} is not in the OpenAPI document")
            });
        let op = &item[method.to_lowercase()];
        assert!(
            op.is_object(),
            "docs/api.md: {method} {template} is not an operation"
        );
        let params: Vec<&str> = op["parameters"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        let mut encoded = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            assert!(
                params.contains(&k),
                "docs/api.md: {method} {template} has no query parameter {k}"
            );
            encoded.push(format!("{k}={}", url_encode(v)));
        }
        if let Some(b) = &body {
            let schema = resolve(
                &spec,
                &op["requestBody"]["content"]["application/json"]["schema"],
            );
            let props = schema["properties"]
                .as_object()
                .expect("a body schema with properties");
            for k in b.as_object().unwrap().keys() {
                assert!(
                    props.contains_key(k),
                    "docs/api.md: {method} {template}: no field {k}"
                );
            }
            for r in schema["required"].as_array().into_iter().flatten() {
                assert!(
                    b.get(r.as_str().unwrap()).is_some(),
                    "docs/api.md: {method} {template}: {r} missing"
                );
            }
        }
        let mut headers = vec![("authorization".to_owned(), format!("Bearer {access}"))];
        if body.is_some() {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
        }
        let body = body.map(|mut b| {
            if b.get("password").is_some() {
                b["password"] = PASSWORD.into();
            }
            b.to_string().into_bytes()
        });
        let uri = if encoded.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", encoded.join("&"))
        };
        let r = request(&api.base, &method, &uri, &headers, body.unwrap_or_default()).await;
        assert!(
            r.status < 300,
            "docs/api.md: {method} {target}: {} {}",
            r.status,
            r.text
        );
    }
}
