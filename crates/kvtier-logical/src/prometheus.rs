//! The one Prometheus encoder every kvtier crate writes through.
//!
//! Metrics in kvtier are snapshots of atomic counters (a store's, a cache's,
//! the event publisher's). An [`Exposition`] collects families of samples
//! from such snapshots and `prometheus-client` encodes them in the
//! Prometheus text format (0.0.4), so each crate only says *what* it exports:
//!
//! ```
//! use kvtier_logical::prometheus::Exposition;
//! let mut e = Exposition::new();
//! e.counter("kvtier_hits_total", "Blocks found by prefix match.")
//!     .sample(&[("tier", "g1")], 5);
//! assert!(e.encode().contains("kvtier_hits_total{tier=\"g1\"} 5\n"));
//! ```
//!
//! Counter names end in `_total`, as Prometheus wants; the suffix is given
//! once, in the name.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Labels of one sample, in order.
type Labels = Vec<(String, String)>;

/// One sample's value.
#[derive(Clone, Debug)]
enum Value {
    Counter(u64),
    Gauge(i64),
    GaugeF64(f64),
    /// Sum, count and per-bucket `(upper bound, count)` ending at +Inf (the
    /// encoder accumulates them).
    Histogram(f64, u64, Vec<(f64, u64)>),
}

/// One metric family: a name, a help line, a type and its samples.
#[derive(Clone, Debug)]
struct Family {
    /// The name as encoded (a counter's without its `_total`, which the
    /// encoder appends).
    name: String,
    help: String,
    kind: MetricType,
    samples: Vec<(Labels, Value)>,
}

/// A set of metric families collected from snapshots, encoded once.
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    families: Vec<Family>,
}

/// Adds samples to one family of an [`Exposition`].
pub struct FamilyWriter<'a> {
    family: &'a mut Family,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    fn family(&mut self, name: &str, help: &str, kind: MetricType) -> FamilyWriter<'_> {
        let name = match kind {
            MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        let i = match self.families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.families.push(Family {
                    name: name.to_string(),
                    help: help.to_string(),
                    kind,
                    samples: Vec::new(),
                });
                self.families.len() - 1
            }
        };
        FamilyWriter {
            family: &mut self.families[i],
        }
    }

    /// A counter family (`name` ends in `_total`); samples are `u64`.
    pub fn counter(&mut self, name: &str, help: &str) -> FamilyWriter<'_> {
        self.family(name, help, MetricType::Counter)
    }

    /// A gauge family; samples are `u64` or `f64`.
    pub fn gauge(&mut self, name: &str, help: &str) -> FamilyWriter<'_> {
        self.family(name, help, MetricType::Gauge)
    }

    /// A histogram family; samples through [`FamilyWriter::histogram`].
    pub fn histogram(&mut self, name: &str, help: &str) -> FamilyWriter<'_> {
        self.family(name, help, MetricType::Histogram)
    }

    /// The Prometheus text format of every family, in the order first added.
    pub fn encode(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::new();
        // Writing to a String cannot fail; a malformed family is a bug caught
        // by the tests below.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }
}

impl FamilyWriter<'_> {
    fn push(&mut self, labels: &[(&str, &str)], value: Value) -> &mut Self {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.family.samples.push((labels, value));
        self
    }

    /// A counter or gauge sample with these labels.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: u64) -> &mut Self {
        let value = match self.family.kind {
            MetricType::Counter => Value::Counter(value),
            _ => Value::Gauge(i64::try_from(value).unwrap_or(i64::MAX)),
        };
        self.push(labels, value)
    }

    /// A gauge sample with a fractional value.
    pub fn sample_f64(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.push(labels, Value::GaugeF64(value))
    }

    /// A histogram sample: `sum`, and per bucket its upper bound and the
    /// number of observations in it (not cumulative; the last bucket is +Inf).
    pub fn histogram(
        &mut self,
        labels: &[(&str, &str)],
        sum: f64,
        per_bucket: &[(f64, u64)],
    ) -> &mut Self {
        let count = per_bucket.iter().map(|&(_, n)| n).sum();
        self.push(labels, Value::Histogram(sum, count, per_bucket.to_vec()))
    }
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            let mut metric = encoder.encode_descriptor(&f.name, &f.help, None, f.kind)?;
            for (labels, value) in &f.samples {
                let sample = metric.encode_family(labels)?;
                match value {
                    Value::Counter(v) => ConstCounter::new(*v).encode(sample)?,
                    Value::Gauge(v) => ConstGauge::new(*v).encode(sample)?,
                    Value::GaugeF64(v) => ConstGauge::new(*v).encode(sample)?,
                    Value::Histogram(sum, count, buckets) => {
                        let mut sample = sample;
                        sample.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)?
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_in_prometheus_text() {
        let mut e = Exposition::new();
        e.counter("kvtier_x_total", "X.")
            .sample(&[("tier", "g1")], 3)
            .sample(&[("tier", "g2")], 4);
        e.gauge("kvtier_free", "Free.").sample(&[], 7);
        e.histogram("kvtier_lat_seconds", "Latency.").histogram(
            &[("path", "g1_to_g2")],
            0.5,
            &[(0.001, 2), (f64::INFINITY, 1)],
        );
        let t = e.encode();
        assert!(t.contains("# HELP kvtier_x_total X.\n# TYPE kvtier_x_total counter\n"));
        assert!(t.contains("kvtier_x_total{tier=\"g1\"} 3\nkvtier_x_total{tier=\"g2\"} 4\n"));
        assert!(t.contains("# TYPE kvtier_free gauge\nkvtier_free 7"), "{t}");
        assert!(t.contains("kvtier_lat_seconds_bucket{path=\"g1_to_g2\",le=\"0.001\"} 2\n"));
        assert!(
            t.contains("kvtier_lat_seconds_bucket{path=\"g1_to_g2\",le=\"+Inf\"} 3\n"),
            "{t}"
        );
        assert!(
            t.contains("kvtier_lat_seconds_count{path=\"g1_to_g2\"} 3\n"),
            "{t}"
        );
        assert!(!t.contains("# EOF"));
    }
}
