//! Prometheus metrics: declared once as [`Metrics`] fields with `prometheus-client`, and served
//! at `GET /metrics` in the Prometheus text format 0.0.4.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use prometheus_client::{
    encoding::{EncodeLabelSet, prometheus_text},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Distinct operation names tracked; more are counted as `other` (names are client-chosen).
const MAX_OPERATIONS: usize = 200;

/// The outcome of one GraphQL operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    /// Executed, with field errors.
    Error,
    /// Refused before execution (parse, validation, limits).
    Rejected,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Rejected => "rejected",
        }
    }
}

/// Sign-in outcomes.
#[derive(Clone, Copy, Debug)]
pub enum LoginOutcome {
    Success,
    Failure,
    Throttled,
}

impl LoginOutcome {
    const ALL: [LoginOutcome; 3] = [Self::Success, Self::Failure, Self::Throttled];

    fn as_str(self) -> &'static str {
        match self {
            LoginOutcome::Success => "success",
            LoginOutcome::Failure => "failure",
            LoginOutcome::Throttled => "throttled",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    version: String,
    source: String,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

/// Every metric the server keeps. Each field is registered in `registry` under the name its
/// doc names; operations and sign-ins are counted as they happen, the gauges are read from
/// their owners when scraped (see [`Gauges`]).
pub struct Metrics {
    /// `storefront_graphql_requests_total{operation, outcome}` (counter).
    requests: Family<RequestLabels, Counter>,
    /// `storefront_graphql_request_duration_seconds{operation}` (histogram, [`BUCKETS`]).
    latency: HistogramFamily<OperationLabels>,
    /// `storefront_logins_total{outcome}` (counter), every outcome shown from the start.
    logins: Family<OutcomeLabels, Counter>,
    /// `storefront_password_hash_queue` (gauge).
    hash_queue: Gauge,
    /// `storefront_password_hashes_in_flight` (gauge).
    hashes_in_flight: Gauge,
    /// `storefront_db_pool_connections{state}` (gauge): `idle` or `in_use`.
    db_pool_connections: Family<PoolLabels, Gauge>,
    /// `storefront_policy_info{version, source}` (gauge): 1 for the loaded policy only.
    policy_info: Family<PolicyLabels, Gauge>,
    /// `storefront_apq_documents` (gauge).
    apq_documents: Gauge,
    /// `storefront_apq_bytes` (gauge).
    apq_bytes: Gauge,
    /// The series of each operation name seen, up to [`MAX_OPERATIONS`] names.
    operations: Mutex<HashMap<String, OperationSeries>>,
    registry: Registry,
    /// Held while the gauges are set and the registry encoded, so two scrapes do not mix.
    rendering: Mutex<()>,
}

/// One operation name's series, taken from the families once so that recording an
/// operation neither allocates nor looks them up again.
struct OperationSeries {
    latency: Histogram,
    /// Per [`Outcome`], created when the first such outcome is recorded.
    outcomes: [Option<Counter>; 3],
}

/// Gauges read at scrape time from their owners.
pub struct Gauges {
    pub hash_queue: u64,
    pub hashes_in_flight: u64,
    pub db_pool_size: u32,
    pub db_pool_idle: u32,
    pub policy_version: String,
    pub policy_source: String,
    /// Documents in this replica's APQ store, and their bytes of text.
    pub apq_documents: u64,
    pub apq_bytes: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::default();
        let latency: HistogramFamily<_> = Family::new_with_constructor(|| Histogram::new(BUCKETS));
        let logins = Family::default();
        let hash_queue = Gauge::default();
        let hashes_in_flight = Gauge::default();
        let db_pool_connections = Family::default();
        let policy_info = Family::default();
        let apq_documents = Gauge::default();
        let apq_bytes = Gauge::default();
        // `prometheus-client` adds the `_total` of counters and the final `.` of help texts.
        let mut registry = Registry::default();
        registry.register(
            "storefront_graphql_requests",
            "GraphQL operations by name and outcome",
            Family::clone(&requests),
        );
        registry.register(
            "storefront_graphql_request_duration_seconds",
            "GraphQL operation latency",
            latency.clone(),
        );
        registry.register(
            "storefront_logins",
            "Sign-in attempts by outcome",
            Family::clone(&logins),
        );
        registry.register(
            "storefront_password_hash_queue",
            "Password hashes waiting for a worker",
            hash_queue.clone(),
        );
        registry.register(
            "storefront_password_hashes_in_flight",
            "Password hashes running now",
            hashes_in_flight.clone(),
        );
        registry.register(
            "storefront_db_pool_connections",
            "Database pool connections by state",
            Family::clone(&db_pool_connections),
        );
        registry.register(
            "storefront_policy_info",
            "The loaded authorization policy (version: SHA-256 prefix of its files)",
            Family::clone(&policy_info),
        );
        registry.register(
            "storefront_apq_documents",
            "Documents this replica keeps for automatic persisted queries",
            apq_documents.clone(),
        );
        registry.register(
            "storefront_apq_bytes",
            "Bytes of document text this replica keeps for automatic persisted queries",
            apq_bytes.clone(),
        );
        let metrics = Self {
            requests,
            latency,
            logins,
            hash_queue,
            hashes_in_flight,
            db_pool_connections,
            policy_info,
            apq_documents,
            apq_bytes,
            operations: Mutex::default(),
            registry,
            rendering: Mutex::default(),
        };
        for outcome in LoginOutcome::ALL {
            metrics.login_counter(outcome);
        }
        metrics
    }
}

impl Metrics {
    /// Records one executed GraphQL operation.
    pub fn record_operation(&self, name: Option<&str>, outcome: Outcome, took: Duration) {
        let name = sanitize(name);
        let mut operations = lock(&self.operations);
        let name = if operations.contains_key(name) || operations.len() < MAX_OPERATIONS {
            name
        } else {
            "other"
        };
        if !operations.contains_key(name) {
            let latency = self.latency.get_or_create_owned(&OperationLabels {
                operation: name.to_owned(),
            });
            let series = OperationSeries {
                latency,
                outcomes: Default::default(),
            };
            operations.insert(name.to_owned(), series);
        }
        let Some(series) = operations.get_mut(name) else {
            return;
        };
        // The series of an outcome appears when it is first recorded.
        series.outcomes[outcome as usize]
            .get_or_insert_with(|| {
                self.requests.get_or_create_owned(&RequestLabels {
                    operation: name.to_owned(),
                    outcome: outcome.as_str(),
                })
            })
            .inc();
        series.latency.observe(took.as_secs_f64());
    }

    /// Records one sign-in attempt.
    pub fn record_login(&self, outcome: LoginOutcome) {
        self.login_counter(outcome).inc();
    }

    fn login_counter(&self, outcome: LoginOutcome) -> Counter {
        self.logins.get_or_create_owned(&OutcomeLabels {
            outcome: outcome.as_str(),
        })
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric, with `gauges` as they
    /// are now.
    pub fn render(&self, gauges: &Gauges) -> String {
        let _rendering = lock(&self.rendering);
        self.hash_queue.set(saturating_i64(gauges.hash_queue));
        self.hashes_in_flight
            .set(saturating_i64(gauges.hashes_in_flight));
        self.apq_documents.set(saturating_i64(gauges.apq_documents));
        self.apq_bytes.set(saturating_i64(gauges.apq_bytes));
        for (state, connections) in [
            ("idle", gauges.db_pool_idle),
            (
                "in_use",
                gauges.db_pool_size.saturating_sub(gauges.db_pool_idle),
            ),
        ] {
            self.db_pool_connections
                .get_or_create(&PoolLabels { state })
                .set(i64::from(connections));
        }
        // Only the policy loaded now: a reloaded one replaces the series of the one before.
        self.policy_info.clear();
        self.policy_info
            .get_or_create(&PolicyLabels {
                version: gauges.policy_version.clone(),
                source: gauges.policy_source.replace(['"', '\\', '\n'], "_"),
            })
            .set(1);
        let mut out = String::new();
        if let Err(err) = prometheus_text::encode(&mut out, &self.registry) {
            tracing::error!(error = %err, "encoding the metrics failed");
        }
        out
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// An operation name safe as a label value: `[A-Za-z0-9_]`, at most 64 characters.
fn sanitize(name: Option<&str>) -> &str {
    match name {
        Some(name)
            if !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            name
        }
        Some(_) => "invalid",
        None => "anonymous",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges() -> Gauges {
        Gauges {
            hash_queue: 2,
            hashes_in_flight: 1,
            db_pool_size: 4,
            db_pool_idle: 3,
            policy_version: "abc".to_owned(),
            policy_source: "built-in".to_owned(),
            apq_documents: 3,
            apq_bytes: 120,
        }
    }

    #[test]
    fn renders_counts_histograms_and_caps_label_cardinality() {
        let metrics = Metrics::default();
        metrics.record_operation(Some("Products"), Outcome::Ok, Duration::from_millis(3));
        metrics.record_operation(Some("Products"), Outcome::Error, Duration::from_millis(30));
        metrics.record_operation(Some("bad\"name"), Outcome::Ok, Duration::from_millis(1));
        metrics.record_login(LoginOutcome::Throttled);
        for i in 0..500 {
            metrics.record_operation(Some(&format!("op{i}")), Outcome::Ok, Duration::ZERO);
        }
        let text = metrics.render(&gauges());
        assert!(
            text.contains(
                r#"storefront_graphql_requests_total{operation="Products",outcome="ok"} 1"#
            )
        );
        assert!(text.contains(
            r#"storefront_graphql_requests_total{operation="Products",outcome="error"} 1"#
        ));
        assert!(text.contains(r#"operation="invalid""#));
        assert!(text.contains(r#"storefront_graphql_request_duration_seconds_bucket{operation="Products",le="0.005"} 1"#));
        assert!(text.contains(r#"storefront_logins_total{outcome="throttled"} 1"#));
        assert!(text.contains(r#"storefront_db_pool_connections{state="in_use"} 1"#));
        assert!(text.contains(r#"operation="other""#));
        assert!(
            text.lines()
                .filter(|l| l.starts_with("storefront_graphql_requests_total"))
                .count()
                <= MAX_OPERATIONS + 2
        );
    }

    #[test]
    fn the_exposition_is_the_prometheus_text_format() {
        let metrics = Metrics::default();
        metrics.record_operation(None, Outcome::Rejected, Duration::from_millis(2));
        let text = metrics.render(&gauges());
        for line in [
            "# HELP storefront_graphql_requests_total GraphQL operations by name and outcome.",
            "# TYPE storefront_graphql_requests_total counter",
            r#"storefront_graphql_requests_total{operation="anonymous",outcome="rejected"} 1"#,
            "# TYPE storefront_graphql_request_duration_seconds histogram",
            r#"storefront_graphql_request_duration_seconds_bucket{operation="anonymous",le="0.001"} 0"#,
            r#"storefront_graphql_request_duration_seconds_bucket{operation="anonymous",le="0.0025"} 1"#,
            r#"storefront_graphql_request_duration_seconds_bucket{operation="anonymous",le="2.5"} 1"#,
            r#"storefront_graphql_request_duration_seconds_bucket{operation="anonymous",le="+Inf"} 1"#,
            r#"storefront_graphql_request_duration_seconds_count{operation="anonymous"} 1"#,
            "# TYPE storefront_logins_total counter",
            r#"storefront_logins_total{outcome="success"} 0"#,
            r#"storefront_logins_total{outcome="failure"} 0"#,
            "# HELP storefront_password_hash_queue Password hashes waiting for a worker.",
            "# TYPE storefront_password_hash_queue gauge",
            "storefront_password_hash_queue 2",
            "storefront_password_hashes_in_flight 1",
            r#"storefront_db_pool_connections{state="idle"} 3"#,
            "# TYPE storefront_policy_info gauge",
            r#"storefront_policy_info{version="abc",source="built-in"} 1"#,
            "# TYPE storefront_apq_documents gauge",
            "storefront_apq_documents 3",
            "storefront_apq_bytes 120",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("# EOF"), "not OpenMetrics");
    }

    #[test]
    fn only_the_policy_loaded_now_is_shown() {
        let metrics = Metrics::default();
        metrics.render(&gauges());
        let text = metrics.render(&Gauges {
            policy_version: "def".to_owned(),
            policy_source: "a \"quoted\"\\path".to_owned(),
            ..gauges()
        });
        let info: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("storefront_policy_info"))
            .collect();
        assert_eq!(
            info,
            [r#"storefront_policy_info{version="def",source="a _quoted__path"} 1"#]
        );
    }
}
