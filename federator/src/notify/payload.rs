//! What receivers are given.
//!
//! - The outbox stores each notification as the alert Alertmanager's API v2 takes
//!   (`labels`, `annotations`, `startsAt`, `endsAt`, `generatorURL`) plus its
//!   `fingerprint`, `status` and `late` mark.
//! - **Alertmanager** (`POST /api/v2/alerts`, as Prometheus sends): a firing alert's
//!   `endsAt` is set at each send to now + 4 × max(evaluation interval, resend
//!   interval), so that Alertmanager resolves it by itself if the federator goes
//!   silent; a resolved alert carries its resolution time.
//! - **Webhooks**: Alertmanager's webhook payload, version 4, one alert per post
//!   (group key: the alert's rule and fingerprint), signed with HMAC-SHA256.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// The zero time Alertmanager writes for "no end".
pub const NO_END: &str = "0001-01-01T00:00:00Z";

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The stored form of a notification.
pub fn stored(
    labels: Value,
    annotations: Value,
    fingerprint: &str,
    starts_ms: i64,
    ends_ms: Option<i64>,
    generator_url: &str,
    late: bool,
) -> Value {
    json!({
        "labels": labels,
        "annotations": annotations,
        "fingerprint": fingerprint,
        "startsAt": rfc3339(starts_ms),
        "endsAt": ends_ms.map(rfc3339),
        "generatorURL": generator_url,
        "late": late,
    })
}

/// The alert for Alertmanager's `POST /api/v2/alerts`: `ends` is the resolution time
/// of a resolved alert, `now + valid_for` of a firing one.
pub fn for_alertmanager(stored: &Value, resolved: bool, now_ms: i64, valid_for_ms: i64) -> Value {
    let ends = if resolved {
        stored
            .get("endsAt")
            .cloned()
            .filter(|v| !v.is_null())
            .unwrap_or_else(|| Value::String(rfc3339(now_ms)))
    } else {
        Value::String(rfc3339(now_ms + valid_for_ms))
    };
    let mut a = json!({
        "labels": stored.get("labels").cloned().unwrap_or_else(|| json!({})),
        "annotations": stored.get("annotations").cloned().unwrap_or_else(|| json!({})),
        "startsAt": stored.get("startsAt").cloned().unwrap_or(Value::Null),
        "endsAt": ends,
    });
    if let Some(g) = stored.get("generatorURL").and_then(Value::as_str)
        && !g.is_empty()
    {
        a["generatorURL"] = Value::String(g.to_owned());
    }
    a
}

/// The Alertmanager webhook payload (version 4) for one notification.
pub fn webhook(receiver: &str, stored: &Value, status: &str, external_url: &str) -> Value {
    let labels = stored.get("labels").cloned().unwrap_or_else(|| json!({}));
    let annotations = stored
        .get("annotations")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let alertname = labels.get("alertname").cloned().unwrap_or(Value::Null);
    let fingerprint = stored
        .get("fingerprint")
        .and_then(Value::as_str)
        .unwrap_or("");
    let ends = match status {
        "resolved" => stored
            .get("endsAt")
            .cloned()
            .filter(|v| !v.is_null())
            .unwrap_or_else(|| Value::String(NO_END.into())),
        _ => Value::String(NO_END.into()),
    };
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname={alertname}, fingerprint=\"{fingerprint}\"}}"),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": { "alertname": alertname },
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": stored.get("startsAt").cloned().unwrap_or(Value::Null),
            "endsAt": ends,
            "generatorURL": stored.get("generatorURL").cloned().unwrap_or(Value::String(String::new())),
            "fingerprint": fingerprint,
        }],
    })
}

/// The signature header's value for `body` sent at `unix_secs`:
/// `t=<unix seconds>,sha256=<hex HMAC-SHA256(secret, "<t>.<body>")>`. A receiver
/// recomputes it over the raw body, compares in constant time, and may refuse an
/// old `t` (a replay).
pub fn signature(secret: &[u8], unix_secs: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(unix_secs.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={unix_secs},sha256={hex}")
}

/// The header that carries [`signature`].
pub const SIGNATURE_HEADER: &str = "x-pga-signature";

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        stored(
            json!({"alertname": "PgServerDown", "agent": "db1"}),
            json!({"summary": "down"}),
            "0123456789abcdef",
            1_700_000_000_000,
            None,
            "https://f.example/api/v1/alerts/7",
            false,
        )
    }

    #[test]
    fn alertmanager_alerts_follow_prometheus() {
        let s = sample();
        let a = for_alertmanager(&s, false, 1_700_000_060_000, 240_000);
        assert_eq!(a["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(a["endsAt"], "2023-11-14T22:18:20.000Z");
        assert_eq!(a["generatorURL"], "https://f.example/api/v1/alerts/7");
        assert_eq!(a["labels"]["alertname"], "PgServerDown");
        let mut r = s.clone();
        r["endsAt"] = json!(rfc3339(1_700_000_030_000));
        let a = for_alertmanager(&r, true, 1_700_000_090_000, 240_000);
        assert_eq!(a["endsAt"], "2023-11-14T22:13:50.000Z");
    }

    #[test]
    fn webhooks_carry_version_4_and_a_verifiable_signature() {
        let body = webhook("ops", &sample(), "firing", "https://f.example");
        assert_eq!(body["version"], "4");
        assert_eq!(body["status"], "firing");
        assert_eq!(body["alerts"][0]["endsAt"], NO_END);
        assert_eq!(body["alerts"][0]["fingerprint"], "0123456789abcdef");
        let raw = serde_json::to_vec(&body).unwrap();
        let sig = signature(b"secret", 1_700_000_000, &raw);
        // Verify as a receiver would, with ring's verify.
        let hex = sig.split("sha256=").nth(1).unwrap();
        let tag: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"secret");
        let mut msg = b"1700000000.".to_vec();
        msg.extend(&raw);
        ring::hmac::verify(&key, &msg, &tag).unwrap();
        assert!(ring::hmac::verify(&key, b"1700000000.x", &tag).is_err());
    }
}
