//! The names of the pull protocol (`PROTOCOL.md` beside this crate): routes, the
//! `Pga-*` response headers and the content types, as the agent serves them and the
//! federator and the bench's simulated agent use them. Header names are written in
//! lower case, as HTTP/2 and the `http` crate want them; HTTP/1.1 compares them
//! without case.

/// Routes ("Routes").
pub mod routes {
    /// Sealed block frames after a cursor, then the head frame.
    pub const BLOCKS: &str = "/v1/blocks";
    /// Series-dictionary frames.
    pub const SERIES: &str = "/v1/series";
    /// What the agent reports of itself and the servers it watches (JSON).
    pub const STATUS: &str = "/v1/status";
    /// The latest value of every series, for Prometheus.
    pub const METRICS: &str = "/metrics";
}

/// Response headers ("Headers").
pub mod headers {
    /// The agent's identity, a UUID; the same as in every frame's `agent_id`.
    pub const AGENT_ID: &str = "pga-agent-id";
    /// The frame format version of the body.
    pub const FORMAT_VERSION: &str = "pga-format-version";
    /// The oldest sealed block sequence held; absent when none is.
    pub const OLDEST_SEQUENCE: &str = "pga-oldest-sequence";
    /// The newest sealed block sequence held; absent when none is.
    pub const NEWEST_SEQUENCE: &str = "pga-newest-sequence";
    /// The sequence the open head will have once sealed.
    pub const HEAD_SEQUENCE: &str = "pga-head-sequence";
    /// `present` when the body ends with the head frame, else `absent`.
    pub const HEAD: &str = "pga-head";
    /// `true` when sealed blocks after the last one in the body remain.
    pub const MORE: &str = "pga-more";
    /// `FIRST-LAST`: blocks after `after` that were evicted before they were pulled.
    pub const GAP: &str = "pga-gap";
    /// The last sealed sequence in the body; absent when it holds no sealed block.
    pub const LAST_SEQUENCE: &str = "pga-last-sequence";
    /// Series in the agent's dictionary (on `/v1/series`).
    pub const SERIES_COUNT: &str = "pga-series-count";
}

/// Content types ("Routes").
pub mod content_types {
    /// `/v1/blocks` and `/v1/series` bodies: frames back to back.
    pub const FRAMES: &str = "application/vnd.pganalytics.frames; version=1";
    /// `/v1/status`.
    pub const JSON: &str = "application/json";
    /// `/metrics` in the Prometheus text exposition format.
    pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
    /// `/metrics` in OpenMetrics 1.0, when the `Accept` header asks for it.
    pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
}
