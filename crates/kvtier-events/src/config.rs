//! The `[events]` table of kvtier's TOML config.
//!
//! ```toml
//! [events]
//! endpoint = "tcp://*:5557"          # PUB; binds if it has `*`, `::`, ipc:// or inproc://
//! replay_endpoint = "tcp://*:5558"   # ROUTER (always binds); absent = no replay
//! format = "map"                     # or "array" (SGLang, older vLLM, llm-d)
//! topic = ""                         # default: "" (map), "kv@<pod>@<model>" (array)
//! hwm = 100000                       # batches queued for the socket before dropping
//! buffer = 10000                     # batches kept for replay
//! data_parallel_rank = 0
//! [events.medium]
//! g1 = "GPU"
//! g2 = "CPU"
//! g3 = "STORAGE"
//! ```

use crate::wire::WireFormat;
use kvtier_logical::Tier;
use serde::{Deserialize, Serialize};

/// The medium each tier's blocks are announced in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediumNames {
    /// G1 (device).
    pub g1: String,
    /// G2 (host).
    pub g2: String,
    /// G3 (disk).
    pub g3: String,
}

impl Default for MediumNames {
    fn default() -> Self {
        MediumNames {
            g1: "GPU".into(),
            g2: "CPU".into(),
            g3: "STORAGE".into(),
        }
    }
}

impl MediumNames {
    /// The names a store embedded in an inference engine announces by
    /// default: the engine owns the GPU memory and kvtier's G1 is a staging
    /// tier in host memory, so G1 is `CPU` like G2; G3 is `STORAGE`.
    pub fn for_engine() -> Self {
        MediumNames::default().g1_staged()
    }

    /// These names for an engine's store: a G1 left at its default (`GPU`)
    /// takes G2's name, since kvtier's G1 stages in host memory there; a G1
    /// the configuration names keeps its name.
    pub fn g1_staged(mut self) -> Self {
        if self.g1 == MediumNames::default().g1 {
            self.g1 = self.g2.clone();
        }
        self
    }

    /// The name of `tier`'s medium.
    pub fn of(&self, tier: Tier) -> &str {
        match tier {
            Tier::G1 => &self.g1,
            Tier::G2 => &self.g2,
            Tier::G3 => &self.g3,
        }
    }
}

/// How events are published. Every field has a default; see the module docs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// PUB endpoint (vLLM's rule: binds if it contains `*`, `::`, `ipc://` or
    /// `inproc://`, otherwise connects).
    pub endpoint: String,
    /// Force binding (`true`) or connecting (`false`) instead of the rule.
    pub bind: Option<bool>,
    /// ROUTER endpoint answering replay requests (always bound).
    pub replay_endpoint: Option<String>,
    /// Event encoding.
    pub format: WireFormat,
    /// Topic frame; see [`EventsConfig::topic`].
    pub topic: Option<String>,
    /// Pod name in the array format's default topic (default: the host name).
    pub pod: Option<String>,
    /// Model name in the array format's default topic.
    pub model: Option<String>,
    /// Medium name per tier.
    pub medium: MediumNames,
    /// Batches queued for the socket before new ones are dropped (counted;
    /// subscribers recover them through replay).
    pub hwm: usize,
    /// Batches kept for replay.
    pub buffer: usize,
    /// Sent in every batch.
    pub data_parallel_rank: i64,
    /// Tokens per block (default: the layout's `block_size`).
    pub block_size: Option<u32>,
    /// Most store events folded into one batch.
    pub max_batch_events: usize,
    /// Store events a tier may queue for the publisher before the publisher
    /// drops that backlog and re-reads the tier instead (bounded memory when
    /// the publisher falls behind; the announced set stays exact).
    pub max_backlog: usize,
    /// How long the replay socket keeps answering after the last batch when
    /// the publisher stops, in milliseconds.
    pub linger_ms: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            endpoint: "tcp://*:5557".into(),
            bind: None,
            replay_endpoint: None,
            format: WireFormat::Map,
            topic: None,
            pod: None,
            model: None,
            medium: MediumNames::default(),
            hwm: 100_000,
            buffer: 10_000,
            data_parallel_rank: 0,
            block_size: None,
            max_batch_events: 256,
            max_backlog: 1 << 20,
            linger_ms: 1000,
        }
    }
}

impl EventsConfig {
    /// A config publishing on `endpoint` with every other field default.
    pub fn new(endpoint: impl Into<String>) -> Self {
        EventsConfig {
            endpoint: endpoint.into(),
            ..Default::default()
        }
    }

    /// The topic frame: `topic` if set; otherwise `""` for the map format and
    /// llm-d's `kv@<pod>@<model>` for the array format.
    pub fn topic(&self) -> String {
        if let Some(t) = &self.topic {
            return t.clone();
        }
        match self.format {
            WireFormat::Map => String::new(),
            WireFormat::Array => {
                let pod = self.pod.clone().unwrap_or_else(host_name);
                let model = self.model.as_deref().unwrap_or("kvtier");
                format!("kv@{pod}@{model}")
            }
        }
    }

    /// Check values that cannot work; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.endpoint.is_empty() {
            return Err("events.endpoint must not be empty".into());
        }
        for (name, v) in [
            ("events.hwm", self.hwm),
            ("events.buffer", self.buffer),
            ("events.max_batch_events", self.max_batch_events),
            ("events.max_backlog", self.max_backlog),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.block_size == Some(0) {
            return Err("events.block_size must be at least 1".into());
        }
        for t in Tier::ALL {
            if self.medium.of(t).is_empty() {
                return Err(format!("events.medium.{t} must not be empty"));
            }
        }
        Ok(())
    }
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_table_and_defaults_the_rest() {
        let c: EventsConfig = toml::from_str(
            "endpoint = \"tcp://*:6000\"\nformat = \"array\"\nmodel = \"llama\"\npod = \"p0\"\n[medium]\ng2 = \"HOST\"\n",
        )
        .unwrap();
        assert_eq!(c.format, WireFormat::Array);
        assert_eq!(c.medium.of(Tier::G2), "HOST");
        assert_eq!(c.medium.of(Tier::G1), "GPU");
        assert_eq!(c.topic(), "kv@p0@llama");
        assert_eq!(c.hwm, 100_000);
        c.validate().unwrap();
        assert_eq!(EventsConfig::default().topic(), "");
    }

    #[test]
    fn rejects_unknown_fields_and_zero_sizes() {
        assert!(toml::from_str::<EventsConfig>("endpont = \"x\"").is_err());
        let c = EventsConfig {
            buffer: 0,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains("events.buffer"));
    }

    #[test]
    fn engine_media_stage_g1_in_host_memory() {
        let names = |m: &MediumNames| Tier::ALL.map(|t| m.of(t).to_string());
        assert_eq!(names(&MediumNames::for_engine()), ["CPU", "CPU", "STORAGE"]);
        let host = MediumNames {
            g2: "HOST".into(),
            ..Default::default()
        };
        assert_eq!(names(&host.g1_staged()), ["HOST", "HOST", "STORAGE"]);
        let named = MediumNames {
            g1: "HBM".into(),
            ..Default::default()
        };
        assert_eq!(names(&named.g1_staged()), ["HBM", "CPU", "STORAGE"]);
    }
}
