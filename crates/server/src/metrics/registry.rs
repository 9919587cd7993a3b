//! A small Prometheus registry: labelled counters, gauges and histograms, encoded in the text
//! exposition format (0.0.4). Written here rather than taken from `prometheus-client` because
//! the original's names must be kept exactly, and that crate appends `_total` to every counter
//! (`etcdbr_snapshotter_failure` and the network counters have no such suffix).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Prometheus' default histogram buckets, as the original's histograms use.
pub const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What kind of metric a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets.
    Histogram,
}

impl MetricKind {
    fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Series {
    value: f64,
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

/// One metric name with its label names and a series per label-value combination.
#[derive(Debug)]
pub struct Family {
    name: String,
    help: &'static str,
    kind: MetricKind,
    labels: &'static [&'static str],
    series: Mutex<BTreeMap<Vec<String>, Series>>,
}

impl Family {
    /// A family; `name` is the full metric name.
    #[must_use]
    pub fn new(
        name: impl Into<String>,
        help: &'static str,
        kind: MetricKind,
        labels: &'static [&'static str],
    ) -> Family {
        Family {
            name: name.into(),
            help,
            kind,
            labels,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// The metric name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    fn with<T>(&self, values: &[&str], f: impl FnOnce(&mut Series) -> T) -> T {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        let mut map = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = map.entry(key).or_insert_with(|| Series {
            buckets: if self.kind == MetricKind::Histogram {
                vec![0; DEFAULT_BUCKETS.len()]
            } else {
                Vec::new()
            },
            ..Series::default()
        });
        f(s)
    }

    /// Creates the series for `values` at zero (the original pre-initialises every label
    /// combination so dashboards see them before the first event).
    pub fn touch(&self, values: &[&str]) {
        self.with(values, |_| ());
    }

    /// Adds `v` to a counter or gauge.
    pub fn add(&self, values: &[&str], v: f64) {
        self.with(values, |s| s.value += v);
    }

    /// Adds one to a counter or gauge.
    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1.0);
    }

    /// Sets a gauge.
    pub fn set(&self, values: &[&str], v: f64) {
        self.with(values, |s| s.value = v);
    }

    /// The current value of a counter or gauge (0 when the series does not exist).
    #[must_use]
    pub fn get(&self, values: &[&str]) -> f64 {
        self.with(values, |s| s.value)
    }

    /// Records one observation in a histogram.
    pub fn observe(&self, values: &[&str], v: f64) {
        self.with(values, |s| {
            for (i, le) in DEFAULT_BUCKETS.iter().enumerate() {
                if v <= *le {
                    s.buckets[i] += 1;
                }
            }
            s.sum += v;
            s.count += 1;
        });
    }

    /// Appends the family in the text exposition format.
    pub fn encode(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind.as_str());
        let map = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (values, s) in map.iter() {
            let labels = |extra: Option<(&str, String)>| {
                let mut parts: Vec<String> = self
                    .labels
                    .iter()
                    .zip(values)
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                if let Some((k, v)) = extra {
                    parts.push(format!("{k}=\"{v}\""));
                }
                if parts.is_empty() {
                    String::new()
                } else {
                    format!("{{{}}}", parts.join(","))
                }
            };
            match self.kind {
                MetricKind::Counter | MetricKind::Gauge => {
                    let _ = writeln!(out, "{}{} {}", self.name, labels(None), fmt_f64(s.value));
                }
                MetricKind::Histogram => {
                    for (le, n) in DEFAULT_BUCKETS.iter().zip(&s.buckets) {
                        let _ = writeln!(
                            out,
                            "{}_bucket{} {n}",
                            self.name,
                            labels(Some(("le", fmt_f64(*le))))
                        );
                    }
                    let _ = writeln!(
                        out,
                        "{}_bucket{} {}",
                        self.name,
                        labels(Some(("le", "+Inf".into()))),
                        s.count
                    );
                    let _ = writeln!(out, "{}_sum{} {}", self.name, labels(None), fmt_f64(s.sum));
                    let _ = writeln!(out, "{}_count{} {}", self.name, labels(None), s.count);
                }
            }
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Formats a sample value as Prometheus does (integers without a fraction).
#[must_use]
pub fn fmt_f64(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.is_nan() {
        "NaN".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_and_histograms() {
        let c = Family::new("x_failure", "Errors.", MetricKind::Counter, &["error"]);
        c.touch(&["etcd"]);
        c.inc(&["etcd"]);
        let h = Family::new("x_seconds", "Time.", MetricKind::Histogram, &["ok"]);
        h.observe(&["true"], 0.3);
        let mut s = String::new();
        c.encode(&mut s);
        h.encode(&mut s);
        assert!(
            s.contains("# TYPE x_failure counter\nx_failure{error=\"etcd\"} 1\n"),
            "{s}"
        );
        assert!(
            s.contains("x_seconds_bucket{ok=\"true\",le=\"0.25\"} 0\n"),
            "{s}"
        );
        assert!(
            s.contains("x_seconds_bucket{ok=\"true\",le=\"0.5\"} 1\n"),
            "{s}"
        );
        assert!(
            s.contains("x_seconds_bucket{ok=\"true\",le=\"+Inf\"} 1\n"),
            "{s}"
        );
        assert!(
            s.contains("x_seconds_sum{ok=\"true\"} 0.3\nx_seconds_count{ok=\"true\"} 1\n"),
            "{s}"
        );
    }
}
