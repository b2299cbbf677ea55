//! Configuration files (TOML): tiers, memory kinds, layout, write policies.
//!
//! ```toml
//! salt = "my-model"          # cache salt: two salts never share a block
//!
//! [layout]                   # block shape: a preset plus overrides
//! preset = "tiny"            # tiny | llama3-8b | llama3-70b
//! block_size = 128           # tokens per block
//! kind = "layer-separate"    # or "fully-contiguous"
//!
//! [g1]
//! blocks = 2000              # or: bytes = "32MiB"
//! memory = "mock"            # mock | cuda | host | pinned
//! policy = "lru"
//!
//! [g2]
//! blocks = 8000              # 0 = tier absent
//! memory = "host"            # host | pinned
//!
//! [g3]
//! blocks = 50000
//! memory = "disk"
//! path = "/var/cache/kvtier" # directory; a temporary one when absent
//!
//! [offload]
//! g1_to_g2 = { mode = "write-back" }
//! g2_to_g3 = { mode = "write-through-selective", min_seen = 2 }
//!
//! [events]                   # KV events for routers (absent = not published)
//! endpoint = "tcp://*:5557"  # see kvtier_events::config for every key
//! replay_endpoint = "tcp://*:5558"
//! format = "map"             # or "array"
//!
//! [g4]                       # a tier shared by many nodes (absent = none)
//! url = "s3://bucket/prefix" # or file:///path; AWS_* variables for S3
//! backpressure = "skip"      # or "wait"; see kvtier_remote::config
//! capacity = 1000000000      # byte budget (0 = unbounded)
//! ```
//!
//! Unknown keys are refused (a typo must not silently fall back to a default),
//! and every error names the file, line and key.

use kvtier_logical::{CacheSalt, PolicyKind, PolicyParams, Tier};
use kvtier_memory::{BlockShape, LayoutKind};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Where a tier's bytes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryChoice {
    /// Mock device memory (host memory reachable only through a copy engine).
    Mock,
    /// CUDA device memory (needs a GPU and driver).
    Cuda,
    /// Page-aligned host memory.
    Host,
    /// CUDA pinned host memory (page-aligned host memory without CUDA).
    Pinned,
    /// A preallocated file on disk.
    Disk,
}

/// A size in bytes: an integer or a string with a unit (`"512MiB"`, `"2GB"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => parse_size(&s)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Parse `"123"`, `"4KiB"`, `"5 MB"`, `"2GiB"`, `"1TiB"`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad size `{s}`: expected a number with an optional unit"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        u => return Err(format!("bad size `{s}`: unknown unit `{u}`")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("bad size `{s}`: overflows 64 bits"))
}

/// One tier's settings.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// Slots in the tier; 0 means the tier is absent.
    #[serde(default)]
    pub blocks: usize,
    /// Size in bytes instead of blocks (divided by the block size).
    #[serde(default)]
    pub bytes: Option<ByteSize>,
    /// Eviction policy; the default policy when absent.
    #[serde(default)]
    pub policy: Option<PolicyKind>,
    /// Tuning of the policies, one table per policy name
    /// (`[g1.policy_params.gated-lru]`); absent fields keep the tuned
    /// defaults. Checked by [`Config::validate`].
    #[serde(default)]
    pub policy_params: PolicyParams,
    /// Memory kind; defaults: G1 mock, G2 host, G3 disk.
    #[serde(default)]
    pub memory: Option<MemoryChoice>,
    /// Directory for disk tiers (when absent: an unnamed file in the system temp dir).
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// The block shape: a preset plus overrides.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutConfig {
    /// `tiny`, `llama3-8b` or `llama3-70b`.
    #[serde(default = "default_preset")]
    pub preset: String,
    /// Tokens per block.
    pub block_size: Option<usize>,
    /// Transformer layers.
    pub num_layers: Option<usize>,
    /// KV heads.
    pub kv_heads: Option<usize>,
    /// Head dimension.
    pub head_dim: Option<usize>,
    /// Bytes per element (1, 2, 4 or 8).
    pub dtype_bytes: Option<usize>,
    /// `layer-separate` (default) or `fully-contiguous`.
    #[serde(default)]
    pub kind: Option<String>,
}

fn default_preset() -> String {
    "tiny".into()
}

impl Default for LayoutConfig {
    fn default() -> Self {
        LayoutConfig {
            preset: default_preset(),
            block_size: Some(128),
            num_layers: None,
            kv_heads: None,
            head_dim: None,
            dtype_bytes: None,
            kind: None,
        }
    }
}

/// Write policies and queue bounds of the offload engine.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffloadConfig {
    /// Policy at the G1/G2 boundary.
    #[serde(default)]
    pub g1_to_g2: kvtier_offload::WritePolicy,
    /// Policy at the G2/G3 boundary.
    #[serde(default)]
    pub g2_to_g3: kvtier_offload::WritePolicy,
    /// Write-through queue depth per boundary, in blocks.
    #[serde(default = "default_queue_depth")]
    pub queue_depth: usize,
    /// Copy-engine worker threads per engine.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Disk I/O mode of G3: `direct` (O_DIRECT positioned I/O, errors typed)
    /// or `mmap` (through the page cache via the mapping).
    #[serde(default)]
    pub disk_io: DiskIoChoice,
    /// Disk engine worker threads (I/Os in flight at once).
    #[serde(default = "default_disk_threads")]
    pub disk_threads: usize,
    /// Proactive cleaning (write-back at G1/G2): G1 blocks kept copied to G2
    /// ahead of their eviction. 0 turns it off.
    #[serde(default)]
    pub clean_ahead: usize,
}

/// How G3 moves bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskIoChoice {
    /// O_DIRECT `pread`/`pwrite` (buffered when the file system refuses it).
    #[default]
    Direct,
    /// `memcpy` through the shared mapping.
    Mmap,
}

fn default_disk_threads() -> usize {
    4
}

fn default_queue_depth() -> usize {
    4096
}

fn default_threads() -> usize {
    2
}

impl Default for OffloadConfig {
    fn default() -> Self {
        OffloadConfig {
            g1_to_g2: Default::default(),
            g2_to_g3: Default::default(),
            queue_depth: default_queue_depth(),
            threads: default_threads(),
            disk_io: DiskIoChoice::default(),
            disk_threads: default_disk_threads(),
            clean_ahead: 0,
        }
    }
}

/// A whole configuration file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Cache salt name (model / tenant).
    #[serde(default = "default_salt")]
    pub salt: String,
    /// GPU tier.
    #[serde(default = "default_g1")]
    pub g1: TierConfig,
    /// Host tier.
    #[serde(default)]
    pub g2: TierConfig,
    /// Disk tier.
    #[serde(default)]
    pub g3: TierConfig,
    /// Block shape (used when data is on).
    #[serde(default)]
    pub layout: LayoutConfig,
    /// Offload policies.
    #[serde(default)]
    pub offload: OffloadConfig,
    /// KV events for routers (published only when present or asked for on
    /// the command line).
    #[serde(default)]
    pub events: Option<kvtier_events::EventsConfig>,
    /// A tier shared by many nodes on object storage (G4), when present.
    #[serde(default)]
    pub g4: Option<kvtier_remote::RemoteConfig>,
}

fn default_salt() -> String {
    "kvtier".to_string()
}

fn default_g1() -> TierConfig {
    TierConfig {
        blocks: 6000,
        ..Default::default()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            salt: default_salt(),
            g1: default_g1(),
            g2: TierConfig::default(),
            g3: TierConfig::default(),
            layout: LayoutConfig::default(),
            offload: OffloadConfig::default(),
            events: None,
            g4: None,
        }
    }
}

/// A configuration error, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// The config file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a valid config (the message names line, column and key).
    #[error("config {path}: {message}")]
    Parse {
        /// The config file.
        path: String,
        /// toml's description, with line and column.
        message: String,
    },
    /// A value is out of range.
    #[error("config {path}: {message}")]
    Invalid {
        /// The config file (or `command line`).
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The built-in configuration (`configs/default.toml`), used when no
/// `--config` is given.
pub const BUILTIN: &str = include_str!("../../../configs/default.toml");

impl Config {
    /// The built-in CPU-only configuration.
    pub fn builtin() -> Config {
        Config::parse("configs/default.toml (built in)", BUILTIN)
            .expect("the built-in config is valid")
    }

    /// Read and validate a config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&path.display().to_string(), &text)
    }

    /// Parse and validate config text; `name` labels errors.
    pub fn parse(name: &str, text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: name.to_string(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })?;
        cfg.validate(name)?;
        Ok(cfg)
    }

    /// Check sizes that cannot work: G1 must exist; G3 needs G2.
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let present = |t: &TierConfig| t.blocks > 0 || t.bytes.is_some();
        if present(&self.g3) && !present(&self.g2) {
            return Err(ConfigError::Invalid {
                path: name.to_string(),
                message: "g3 needs a g2 tier (G3 blocks are staged through G2 on the way up); set g2.blocks".into(),
            });
        }
        if let Some(g4) = &self.g4 {
            if !present(&self.g2) {
                return Err(ConfigError::Invalid {
                    path: name.to_string(),
                    message: "g4 needs a g2 tier (G4 blocks land in host memory on the way up); set g2.blocks".into(),
                });
            }
            g4.validate().map_err(|e| ConfigError::Invalid {
                path: name.to_string(),
                message: e.to_string(),
            })?;
        }
        if !present(&self.g1) {
            return Err(ConfigError::Invalid {
                path: name.to_string(),
                message: "g1.blocks must be at least 1 (the GPU tier cannot be absent)".into(),
            });
        }
        for tier in Tier::ALL {
            self.tier(tier)
                .policy_params
                .check()
                .map_err(|e| ConfigError::Invalid {
                    path: name.to_string(),
                    message: format!("{}.{e}", tier.name()),
                })?;
        }
        if let Some(e) = &self.events {
            e.validate().map_err(|message| ConfigError::Invalid {
                path: name.to_string(),
                message,
            })?;
        }
        Ok(())
    }

    /// Resolve `bytes = ...` sizes into block counts, given the block size.
    pub fn resolve_bytes(&mut self, name: &str, block_bytes: u64) -> Result<(), ConfigError> {
        for tier in Tier::ALL {
            let t = self.tier_mut(tier);
            if let Some(ByteSize(b)) = t.bytes {
                if t.blocks != 0 {
                    return Err(ConfigError::Invalid {
                        path: name.to_string(),
                        message: format!("{tier}: give blocks or bytes, not both"),
                    });
                }
                t.blocks = (b / block_bytes.max(1)) as usize;
                t.bytes = None;
                if t.blocks == 0 {
                    return Err(ConfigError::Invalid {
                        path: name.to_string(),
                        message: format!(
                            "{tier}.bytes = {b} holds no whole block of {block_bytes} bytes"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The block shape and arrangement the layout section names.
    pub fn block_shape(&self, name: &str) -> Result<(BlockShape, LayoutKind), ConfigError> {
        let l = &self.layout;
        let invalid = |message: String| ConfigError::Invalid {
            path: name.to_string(),
            message,
        };
        let mut shape = BlockShape::preset(&l.preset).ok_or_else(|| {
            invalid(format!(
                "layout.preset `{}` is unknown (known: tiny, llama3-8b, llama3-70b)",
                l.preset
            ))
        })?;
        if let Some(v) = l.block_size {
            shape.block_size = v;
        }
        if let Some(v) = l.num_layers {
            shape.num_layers = v;
        }
        if let Some(v) = l.kv_heads {
            shape.kv_heads = v;
        }
        if let Some(v) = l.head_dim {
            shape.head_dim = v;
        }
        if let Some(v) = l.dtype_bytes {
            shape.dtype_bytes = v;
        }
        shape
            .block_bytes()
            .map_err(|e| invalid(format!("layout: {e}")))?;
        let kind = match l.kind.as_deref() {
            None | Some("layer-separate") => LayoutKind::LayerSeparate,
            Some("fully-contiguous") => LayoutKind::FullyContiguous,
            Some(k) => {
                return Err(invalid(format!(
                    "layout.kind `{k}` is unknown (known: layer-separate, fully-contiguous)"
                )))
            }
        };
        Ok((shape, kind))
    }

    /// The salt as used by the hash chain.
    pub fn cache_salt(&self) -> CacheSalt {
        CacheSalt::from_name(&self.salt)
    }

    /// The settings of one tier.
    pub fn tier(&self, tier: Tier) -> &TierConfig {
        match tier {
            Tier::G1 => &self.g1,
            Tier::G2 => &self.g2,
            Tier::G3 => &self.g3,
        }
    }

    /// Mutable settings of one tier (command-line overrides).
    pub fn tier_mut(&mut self, tier: Tier) -> &mut TierConfig {
        match tier {
            Tier::G1 => &mut self.g1,
            Tier::G2 => &mut self.g2,
            Tier::G3 => &mut self.g3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message of parsing `text` as `c.toml` (which must fail).
    fn parse_err(text: &str) -> String {
        Config::parse("c.toml", text).unwrap_err().to_string()
    }

    /// Parsing `text` fails with a message containing every one of `needles`.
    fn refused(text: &str, needles: &[&str]) {
        let e = parse_err(text);
        for n in needles {
            assert!(e.contains(n), "{e:?} lacks {n:?}");
        }
    }

    fn parse_ok(text: &str) -> Config {
        Config::parse("c.toml", text).unwrap()
    }

    #[test]
    fn builtin_and_shipped_configs_parse() {
        let b = Config::builtin();
        assert_eq!((b.g1.blocks, b.g2.blocks, b.g3.blocks), (2000, 8000, 50000));
        let (shape, _) = b.block_shape("x").unwrap();
        assert_eq!(shape.block_bytes().unwrap(), 16 << 10);
        for f in ["configs/default.toml", "configs/h100-llama3-8b.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(f);
            let mut c = Config::from_file(&path).unwrap();
            let (shape, _) = c.block_shape(f).unwrap();
            c.resolve_bytes(f, shape.block_bytes().unwrap() as u64)
                .unwrap();
            assert!(c.g1.blocks > 0, "{f}");
        }
    }

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("2 GB"), Ok(2_000_000_000));
        assert!(parse_size("3 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_size("99999999999TiB")
            .unwrap_err()
            .contains("overflows"));
        let e = parse_ok("[g2]\nbytes = \"1KiB\"\n");
        let mut e2 = e.clone();
        assert!(e2
            .resolve_bytes("c.toml", 16384)
            .unwrap_err()
            .to_string()
            .contains("no whole block"));
    }

    #[test]
    fn parses_and_defaults() {
        let c = parse_ok("[g1]\nblocks = 10\npolicy = \"lru\"\n");
        assert_eq!(c.g1.blocks, 10);
        assert_eq!(c.g1.policy, Some(PolicyKind::Lru));
        assert_eq!(c.g2.blocks, 0);
        assert_eq!(parse_ok(""), Config::default());
    }

    #[test]
    fn per_tier_policy_params() {
        let c = parse_ok(
            "[g1]\nblocks = 10\npolicy = \"gated-lru\"\n[g1.policy_params.gated-lru]\nprotected_share_64ths = 48\n",
        );
        assert_eq!(c.g1.policy_params.gated_lru.protected_share_64ths, 48);
        assert_eq!(c.g2.policy_params, PolicyParams::default());
        refused(
            "[g2.policy_params.gated-lru]\nprotected_share_64ths = 65\n",
            &["g2.policy_params.gated-lru.protected_share_64ths"],
        );
        refused(
            "[g1.policy_params.gated-lru]\nprotected_shaer_64ths = 4\n",
            &["line 2", "protected_shaer_64ths"],
        );
        refused("[g1.policy_params.nope]\nx = 1\n", &["nope"]);
    }

    #[test]
    fn events_table() {
        let c = parse_ok(
            "[events]\nendpoint = \"tcp://*:6000\"\nformat = \"array\"\n[events.medium]\ng3 = \"SSD\"\n",
        );
        let e = c.events.unwrap();
        assert_eq!(e.endpoint, "tcp://*:6000");
        assert_eq!(e.format, kvtier_events::WireFormat::Array);
        assert_eq!(e.medium.of(Tier::G3), "SSD");
        assert!(parse_ok("").events.is_none());
        refused("[events]\nbuffer = 0\n", &["events.buffer"]);
        refused("[events]\nfromat = \"map\"\n", &["line 2", "fromat"]);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let text = "[g1]\nblocks = 10\nblokcs = 3\n";
        assert!(parse_err(text).starts_with("config c.toml: "));
        refused(text, &["line 3", "blokcs"]);
        refused("[g1]\npolicy = \"nope\"\n", &["line 2", "nope"]);
        refused("[g1]\nblocks = -1\n", &["line 2"]);
        refused("[g1]\nblocks = 0\n", &["g1.blocks"]);
    }

    #[test]
    fn g4_section() {
        let c = parse_ok(
            "[g2]\nblocks = 10\n[g4]\nurl = \"s3://b/p\"\nbackpressure = \"wait\"\ncapacity = 1000\n[g4.s3]\nendpoint = \"http://127.0.0.1:9000\"\n",
        );
        let g = c.g4.unwrap();
        assert_eq!(g.backpressure, kvtier_remote::Backpressure::Wait);
        assert_eq!(g.capacity, 1000);
        assert_eq!(g.s3["endpoint"], "http://127.0.0.1:9000");
        refused("[g4]\nurl = \"file:///x\"\n", &["g4 needs a g2"]);
        refused(
            "[g2]\nblocks = 10\n[g4]\nurl = \"file:///x\"\nin_flight = 0\n",
            &["in_flight"],
        );
        refused(
            "[g4]\nurl = \"s3://b\"\nbackpresure = \"wait\"\n",
            &["backpresure"],
        );
    }
}
