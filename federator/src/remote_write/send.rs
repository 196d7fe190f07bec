//! Sending one request to a receiver, and what its answer means — decided here, in
//! one place ([`classify`]):
//!
//! - 2xx: acknowledged (but a 2xx HTML page is a web page, not a receiver);
//! - 5xx, 429, 408 or no answer: retried with exponential backoff (a `Retry-After`
//!   honoured up to `retry_max_secs`); once the delay reaches `retry_max_secs` the
//!   destination is given up for this round and falls behind;
//! - 400, 409, 422 (and any other 4xx about the request's samples): refused for good:
//!   counted, recorded, never retried;
//! - a redirect, 401, 403, 404, 405, 413, or an HTML answer: the URL or the credentials
//!   are wrong, no sample is at fault. Nothing is advanced: the destination stops with
//!   an error saying what to fix and is tried again every `retry_max_secs`, so a typo
//!   loses nothing.

use std::time::Duration;

use crate::notify::http::{Answer, Client, SendError};
use crate::remote_write::encode::{CONTENT_ENCODING, CONTENT_TYPE, VERSION};

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Acknowledged,
    /// Try again after a delay (at least `not_before`, from `Retry-After`).
    Retry {
        detail: String,
        not_before: Option<Duration>,
    },
    /// The receiver refuses these samples for good.
    Rejected {
        status: u16,
        detail: String,
    },
    /// The URL is not a remote-write receiver, or the credentials are refused.
    Misconfigured {
        detail: String,
        fix: &'static str,
    },
}

/// The first line of an answer's body, at most 200 characters.
fn first_line(body: &str) -> String {
    body.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .chars()
        .take(200)
        .collect()
}

fn is_html(a: &Answer) -> bool {
    a.content_type
        .as_deref()
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("text/html"))
        || a.body.trim_start().get(..14).is_some_and(|s| {
            s.eq_ignore_ascii_case("<!doctype html") || s.to_ascii_lowercase().starts_with("<html")
        })
}

/// `Retry-After`: seconds, or an HTTP date.
pub fn retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// Sorts an attempt's result into [`Outcome`].
pub fn classify(result: Result<Answer, SendError>) -> Outcome {
    let a = match result {
        Err(e) => {
            return Outcome::Retry {
                detail: e.to_string(),
                not_before: None,
            };
        }
        Ok(a) => a,
    };
    let detail = format!("answered {}: {}", a.status, first_line(&a.body));
    match a.status {
        200..=299 if is_html(&a) => Outcome::Misconfigured {
            detail: format!("answered {} with an HTML page", a.status),
            fix: "set url to the receiver's remote-write endpoint (…/api/v1/write for \
                  VictoriaMetrics and Prometheus, …/api/v1/push for Mimir), not a web page",
        },
        200..=299 => Outcome::Acknowledged,
        300..=399 => Outcome::Misconfigured {
            detail: format!(
                "answered {} (a redirect{}); a remote-write request is never redirected",
                a.status,
                a.location
                    .as_deref()
                    .map(|l| format!(" to {l}"))
                    .unwrap_or_default()
            ),
            fix: "set url to where the redirect points (https:// rather than http://?), \
                  to the receiver itself",
        },
        401 | 403 => Outcome::Misconfigured {
            detail,
            fix: "check username/password_file or bearer_token_file (and the tenant's \
                  rights to write)",
        },
        404 | 405 => Outcome::Misconfigured {
            detail,
            fix: "this URL takes no remote-write requests: use …/api/v1/write \
                  (VictoriaMetrics; Prometheus started with \
                  --web.enable-remote-write-receiver), …/api/v1/push (Mimir) or \
                  …/api/v1/receive (Thanos)",
        },
        413 => Outcome::Misconfigured {
            detail,
            fix: "lower max_samples_per_request, or raise the receiver's request size limit",
        },
        408 | 429 | 500..=599 => Outcome::Retry {
            detail,
            not_before: a.retry_after.as_deref().and_then(retry_after),
        },
        _ if is_html(&a) => Outcome::Misconfigured {
            detail: format!("answered {} with an HTML page", a.status),
            fix: "set url to the receiver's remote-write endpoint, not a web page",
        },
        400..=499 => Outcome::Rejected {
            status: a.status,
            detail,
        },
        _ => Outcome::Misconfigured {
            detail,
            fix: "set url to a Prometheus remote-write receiver",
        },
    }
}

/// The headers of every request (besides Content-Type, User-Agent and auth, which
/// the client sets).
pub fn headers() -> [(&'static str, String); 2] {
    [
        ("Content-Encoding", CONTENT_ENCODING.to_owned()),
        ("X-Prometheus-Remote-Write-Version", VERSION.to_owned()),
    ]
}

/// Retry pacing of one destination.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub initial: Duration,
    pub max: Duration,
}

impl Retry {
    /// The delay after `failures` failures in a row (1 for the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// How a request ended after its retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Acknowledged { attempts: u32 },
    Rejected { status: u16, detail: String },
}

/// Why a request was given up: the destination, not the samples.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GiveUp {
    #[error("{detail}, still after {attempts} attempts")]
    Unavailable { detail: String, attempts: u32 },
    #[error("{url} is not usable as a remote-write receiver: {detail}; fix: {fix}")]
    Misconfigured {
        url: String,
        detail: String,
        fix: &'static str,
    },
}

/// Posts `body` (a compressed request) until it is acknowledged or refused for good,
/// retrying 5xx, 429 and silence with backoff while the delay stays below
/// `retry.max`. `on_retry` is told of each retry.
pub async fn post(
    client: &Client,
    body: Vec<u8>,
    retry: Retry,
    mut on_retry: impl FnMut(&str),
) -> Result<Sent, GiveUp> {
    let path = client.target().path.clone();
    let headers = headers();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let result = client
            .post(&path, CONTENT_TYPE, body.clone(), &headers)
            .await;
        match classify(result) {
            Outcome::Acknowledged => return Ok(Sent::Acknowledged { attempts }),
            Outcome::Rejected { status, detail } => return Ok(Sent::Rejected { status, detail }),
            Outcome::Misconfigured { detail, fix } => {
                return Err(GiveUp::Misconfigured {
                    url: client.target().to_string(),
                    detail,
                    fix,
                });
            }
            Outcome::Retry { detail, not_before } => {
                let delay = retry.delay(attempts);
                if delay >= retry.max {
                    return Err(GiveUp::Unavailable { detail, attempts });
                }
                on_retry(&detail);
                let wait = not_before.map_or(delay, |n| n.max(delay)).min(retry.max);
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(status: u16, ct: &str, body: &str) -> Result<Answer, SendError> {
        Ok(Answer {
            status,
            body: body.into(),
            content_type: Some(ct.into()),
            ..Answer::default()
        })
    }

    #[test]
    fn answers_are_sorted_in_one_place() {
        assert_eq!(classify(a(204, "text/plain", "")), Outcome::Acknowledged);
        assert!(matches!(
            classify(a(200, "text/html; charset=utf-8", "<html>")),
            Outcome::Misconfigured { .. }
        ));
        assert!(matches!(
            classify(a(503, "text/plain", "")),
            Outcome::Retry { .. }
        ));
        let mut busy = Answer {
            status: 429,
            retry_after: Some("7".into()),
            ..Answer::default()
        };
        assert_eq!(
            classify(Ok(busy.clone())),
            Outcome::Retry {
                detail: "answered 429: ".into(),
                not_before: Some(Duration::from_secs(7))
            }
        );
        busy.status = 400;
        busy.body = "\nout of order sample\nmore".into();
        assert_eq!(
            classify(Ok(busy)),
            Outcome::Rejected {
                status: 400,
                detail: "answered 400: out of order sample".into()
            }
        );
        for s in [301, 308, 401, 403, 404, 405, 413] {
            assert!(
                matches!(
                    classify(a(s, "text/plain", "")),
                    Outcome::Misconfigured { .. }
                ),
                "{s}"
            );
        }
        assert!(matches!(
            classify(a(400, "text/plain", "<!DOCTYPE html><html>")),
            Outcome::Misconfigured { .. }
        ));
        assert!(matches!(
            classify(Err(SendError::Connect {
                url: "x".into(),
                detail: "refused".into()
            })),
            Outcome::Retry { .. }
        ));
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let r = Retry {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(4),
        };
        let got: Vec<u128> = (1..=6).map(|f| r.delay(f).as_millis()).collect();
        assert_eq!(got, [500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(retry_after(" 12 "), Some(Duration::from_secs(12)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after("soon"), None);
    }
}
