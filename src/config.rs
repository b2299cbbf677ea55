//! Configuration files (TOML): tier sizes and policies.
//!
//! ```toml
//! salt = "my-model"      # cache salt: two salts never share a block
//!
//! [g1]
//! blocks = 6000
//! policy = "lru"
//!
//! [g2]
//! blocks = 0             # 0 = tier absent
//! ```
//!
//! Unknown keys are refused (a typo must not silently fall back to a default),
//! and every error names the file, line and key.

use kvtier_logical::{CacheSalt, PolicyKind, Tier};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One tier's settings.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// Slots in the tier; 0 means the tier is absent.
    #[serde(default)]
    pub blocks: usize,
    /// Eviction policy; the default policy when absent.
    #[serde(default)]
    pub policy: Option<PolicyKind>,
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
}

fn default_salt() -> String {
    "kvtier".to_string()
}

fn default_g1() -> TierConfig {
    TierConfig {
        blocks: 6000,
        policy: None,
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            salt: default_salt(),
            g1: default_g1(),
            g2: TierConfig::default(),
            g3: TierConfig::default(),
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

impl Config {
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

    /// Check sizes that cannot work: G1 must exist.
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        if self.g1.blocks == 0 {
            return Err(ConfigError::Invalid {
                path: name.to_string(),
                message: "g1.blocks must be at least 1 (the GPU tier cannot be absent)".into(),
            });
        }
        Ok(())
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

    #[test]
    fn parses_and_defaults() {
        let c = Config::parse("c.toml", "[g1]\nblocks = 10\npolicy = \"lru\"\n").unwrap();
        assert_eq!(c.g1.blocks, 10);
        assert_eq!(c.g1.policy, Some(PolicyKind::Lru));
        assert_eq!(c.g2.blocks, 0);
        assert_eq!(Config::parse("c.toml", "").unwrap(), Config::default());
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = Config::parse("c.toml", "[g1]\nblocks = 10\nblokcs = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("config c.toml: "), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("blokcs"), "{e}");

        let e = Config::parse("c.toml", "[g1]\npolicy = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("nope"), "{e}");

        let e = Config::parse("c.toml", "[g1]\nblocks = -1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");

        let e = Config::parse("c.toml", "[g1]\nblocks = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("g1.blocks"), "{e}");
    }
}
