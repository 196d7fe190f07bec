//! The API's self-metrics, registered into the federator's registry (served on
//! the self-metrics listener's `/metrics`). Labels come from bounded sets: route
//! templates (plus `unmatched`), methods, status codes, fixed results and reasons.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// The API's counters and histograms.
#[derive(Debug)]
pub struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    logins: Family<ResultLabels, Counter>,
    throttled: Counter,
    refused: Family<ReasonLabels, Counter>,
    hashing_busy: Counter,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            logins: Family::default(),
            throttled: Counter::default(),
            refused: Family::default(),
            hashing_busy: Counter::default(),
        }
    }
}

impl ApiMetrics {
    /// Registers every metric under `pga_federator_api_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("api");
        r.register(
            "requests",
            "API requests answered, by route template, method and status",
            self.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time to answer an API request, by route template",
            self.duration.clone(),
        );
        r.register(
            "logins",
            "Sign-ins by result (success, bad_credentials, throttled, busy)",
            self.logins.clone(),
        );
        r.register(
            "login_throttled",
            "Sign-in attempts refused by the throttle without checking the password",
            self.throttled.clone(),
        );
        r.register(
            "auth_refused",
            "Requests whose token was refused, by reason",
            self.refused.clone(),
        );
        r.register(
            "hashing_busy",
            "Sign-ins answered 503 because every password-hashing slot stayed busy",
            self.hashing_busy.clone(),
        );
    }

    pub fn request(&self, route: &str, method: &str, status: u16, secs: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status: status.to_string(),
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(secs);
    }

    pub fn login(&self, result: &'static str) {
        self.logins
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
        if result == "throttled" {
            self.throttled.inc();
        }
    }

    pub fn auth_refused(&self, reason: &str) {
        self.refused
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn hashing_busy(&self) {
        self.hashing_busy.inc();
    }
}
