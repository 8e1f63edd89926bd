//! Prometheus metrics, kept by hand: a few counters, gauges and histograms rendered in the
//! text exposition format at `GET /metrics`.

use std::{
    collections::HashMap,
    fmt::Write,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

/// Latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Distinct operation names tracked; more are counted as `other` (names are client-chosen).
const MAX_OPERATIONS: usize = 200;

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

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

/// Every metric the server keeps.
#[derive(Default)]
pub struct Metrics {
    operations: Mutex<HashMap<String, OperationStats>>,
    logins: [AtomicU64; 3],
}

#[derive(Default)]
struct OperationStats {
    outcomes: HashMap<Outcome, u64>,
    latency: Histogram,
}

/// Gauges read at scrape time from their owners.
pub struct Gauges {
    pub hash_queue: u64,
    pub hashes_in_flight: u64,
    pub db_pool_size: u32,
    pub db_pool_idle: u32,
    pub policy_version: String,
    pub policy_source: String,
}

impl Metrics {
    /// Records one executed GraphQL operation.
    pub fn record_operation(&self, name: Option<&str>, outcome: Outcome, took: Duration) {
        let name = sanitize(name);
        let mut operations = self.operations.lock().unwrap_or_else(|e| e.into_inner());
        let key = if operations.contains_key(&name) || operations.len() < MAX_OPERATIONS {
            name
        } else {
            "other".to_owned()
        };
        let stats = operations.entry(key).or_default();
        *stats.outcomes.entry(outcome).or_default() += 1;
        stats.latency.observe(took.as_secs_f64());
    }

    /// Records one sign-in attempt.
    pub fn record_login(&self, outcome: LoginOutcome) {
        self.logins[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        let operations = self.operations.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<&String> = operations.keys().collect();
        names.sort();

        out.push_str(
            "# HELP storefront_graphql_requests_total GraphQL operations by name and outcome.\n",
        );
        out.push_str("# TYPE storefront_graphql_requests_total counter\n");
        for name in &names {
            let stats = &operations[*name];
            for outcome in [Outcome::Ok, Outcome::Error, Outcome::Rejected] {
                if let Some(count) = stats.outcomes.get(&outcome) {
                    let _ = writeln!(
                        out,
                        "storefront_graphql_requests_total{{operation=\"{name}\",outcome=\"{}\"}} {count}",
                        outcome.as_str()
                    );
                }
            }
        }
        out.push_str(
            "# HELP storefront_graphql_request_duration_seconds GraphQL operation latency.\n",
        );
        out.push_str("# TYPE storefront_graphql_request_duration_seconds histogram\n");
        for name in &names {
            let h = &operations[*name].latency;
            for (bound, count) in BUCKETS.iter().zip(h.counts.iter()) {
                let _ = writeln!(
                    out,
                    "storefront_graphql_request_duration_seconds_bucket{{operation=\"{name}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "storefront_graphql_request_duration_seconds_bucket{{operation=\"{name}\",le=\"+Inf\"}} {}\n\
                 storefront_graphql_request_duration_seconds_sum{{operation=\"{name}\"}} {}\n\
                 storefront_graphql_request_duration_seconds_count{{operation=\"{name}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        drop(operations);

        out.push_str("# HELP storefront_logins_total Sign-in attempts by outcome.\n");
        out.push_str("# TYPE storefront_logins_total counter\n");
        for (outcome, counter) in ["success", "failure", "throttled"].iter().zip(&self.logins) {
            let _ = writeln!(
                out,
                "storefront_logins_total{{outcome=\"{outcome}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = write!(
            out,
            "# HELP storefront_password_hash_queue Password hashes waiting for a worker.\n\
             # TYPE storefront_password_hash_queue gauge\n\
             storefront_password_hash_queue {}\n\
             # HELP storefront_password_hashes_in_flight Password hashes running now.\n\
             # TYPE storefront_password_hashes_in_flight gauge\n\
             storefront_password_hashes_in_flight {}\n\
             # HELP storefront_db_pool_connections Database pool connections by state.\n\
             # TYPE storefront_db_pool_connections gauge\n\
             storefront_db_pool_connections{{state=\"idle\"}} {}\n\
             storefront_db_pool_connections{{state=\"in_use\"}} {}\n\
             # HELP storefront_policy_info The loaded authorization policy (version: SHA-256 prefix of its files).\n\
             # TYPE storefront_policy_info gauge\n\
             storefront_policy_info{{version=\"{}\",source=\"{}\"}} 1\n",
            gauges.hash_queue,
            gauges.hashes_in_flight,
            gauges.db_pool_idle,
            gauges.db_pool_size.saturating_sub(gauges.db_pool_idle),
            gauges.policy_version,
            gauges.policy_source.replace(['"', '\\', '\n'], "_"),
        );
        out
    }
}

/// An operation name safe as a label value: `[A-Za-z0-9_]`, at most 64 characters.
fn sanitize(name: Option<&str>) -> String {
    match name {
        Some(name)
            if !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            name.to_owned()
        }
        Some(_) => "invalid".to_owned(),
        None => "anonymous".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let gauges = Gauges {
            hash_queue: 2,
            hashes_in_flight: 1,
            db_pool_size: 4,
            db_pool_idle: 3,
            policy_version: "abc".to_owned(),
            policy_source: "built-in".to_owned(),
        };
        let text = metrics.render(&gauges);
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
}
