//! Prometheus text metrics for `/metrics`: HTTP request counts and latency histograms by
//! route, job outcomes by kind. Job counts by state are read from the database at scrape.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    total: u64,
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    jobs: Mutex<BTreeMap<(String, &'static str), u64>>,
    events: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((method.to_string(), route.to_string(), status)).or_default() += 1;
        }
        if let Ok(mut m) = self.latency.lock() {
            let h = m.entry(route.to_string()).or_default();
            for (i, b) in BUCKETS.iter().enumerate() {
                if seconds <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += seconds;
            h.total += 1;
        }
    }

    pub fn observe_job(&self, kind: &str, outcome: &'static str) {
        if let Ok(mut m) = self.jobs.lock() {
            *m.entry((kind.to_string(), outcome)).or_default() += 1;
        }
    }

    /// Count an occurrence of something operators should see (a retried write, say).
    pub fn count(&self, name: &'static str) {
        self.add(name, 1);
    }

    pub fn add(&self, name: &'static str, n: u64) {
        if let Ok(mut m) = self.events.lock() {
            *m.entry(name).or_default() += n;
        }
    }

    /// How often `name` was counted by this process.
    pub fn counter(&self, name: &str) -> u64 {
        self.events.lock().map(|m| m.get(name).copied().unwrap_or(0)).unwrap_or(0)
    }

    pub fn render(&self, job_states: &[(String, i64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP tsunagu_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE tsunagu_http_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((method, route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "tsunagu_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str("# HELP tsunagu_http_request_duration_seconds HTTP request latency by route.\n");
        out.push_str("# TYPE tsunagu_http_request_duration_seconds histogram\n");
        if let Ok(m) = self.latency.lock() {
            for (route, h) in m.iter() {
                let r = escape(route);
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "tsunagu_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{b}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "tsunagu_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {}",
                    h.total
                );
                let _ = writeln!(out, "tsunagu_http_request_duration_seconds_sum{{route=\"{r}\"}} {}", h.sum);
                let _ = writeln!(out, "tsunagu_http_request_duration_seconds_count{{route=\"{r}\"}} {}", h.total);
            }
        }
        out.push_str("# HELP tsunagu_jobs Jobs in the queue by state.\n# TYPE tsunagu_jobs gauge\n");
        for state in ["queued", "running", "failed"] {
            let n = job_states.iter().find(|(s, _)| s == state).map(|(_, n)| *n).unwrap_or(0);
            let _ = writeln!(out, "tsunagu_jobs{{state=\"{state}\"}} {n}");
        }
        out.push_str("# HELP tsunagu_jobs_processed_total Jobs run by this process, by kind and outcome.\n");
        out.push_str("# TYPE tsunagu_jobs_processed_total counter\n");
        if let Ok(m) = self.jobs.lock() {
            for ((kind, outcome), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "tsunagu_jobs_processed_total{{kind=\"{}\",outcome=\"{outcome}\"}} {n}",
                    escape(kind)
                );
            }
        }
        out.push_str("# HELP tsunagu_events_total Occurrences operators should see, by name.\n");
        out.push_str("# TYPE tsunagu_events_total counter\n");
        if let Ok(m) = self.events.lock() {
            for (name, n) in m.iter() {
                let _ = writeln!(out, "tsunagu_events_total{{name=\"{}\"}} {n}", escape(name));
            }
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
