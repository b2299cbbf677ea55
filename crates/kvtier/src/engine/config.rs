//! What an engine core is opened with: the engine's block size and G3
//! directory, an optional kvtier TOML config, and the built-in defaults
//! (`configs/engine.toml`) when none is given.
//!
//! The engine owns the block size, so the layout section of a config is
//! replaced by a single contiguous region of `block_bytes` per block, and
//! tier sizes are best given in bytes (`bytes = "4GiB"`), resolved once the
//! block size is known.

use crate::config::{Config, ConfigError, MemoryChoice};
use crate::engine::error::EngineError;
use std::path::{Path, PathBuf};

/// The built-in engine configuration (`configs/engine.toml`), used when no
/// config file is given.
pub const BUILTIN_ENGINE_CONFIG: &str = include_str!("../../../../configs/engine.toml");

/// How to open an [`EngineCore`](crate::engine::EngineCore).
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// Bytes of one engine block (one chunk of the caller's buffer).
    pub block_bytes: usize,
    /// Directory of the durable G3 (created if missing). `None` keeps G3 in
    /// an unnamed temporary file (nothing survives the process).
    pub path: Option<PathBuf>,
    /// A kvtier TOML config; the built-in engine defaults when `None`.
    pub config: Option<PathBuf>,
    /// Namespace of the keys (model name, layout, ...): the same key under
    /// another namespace is another block, and a G3 directory written under
    /// one namespace is refused under another.
    pub namespace: String,
}

impl EngineOptions {
    /// Options for blocks of `block_bytes` in G3 directory `path`.
    pub fn new(block_bytes: usize, path: Option<&Path>, namespace: &str) -> EngineOptions {
        EngineOptions {
            block_bytes,
            path: path.map(Path::to_path_buf),
            config: None,
            namespace: namespace.to_string(),
        }
    }

    /// Use the kvtier TOML config at `config`.
    pub fn with_config(mut self, config: Option<&Path>) -> EngineOptions {
        self.config = config.map(Path::to_path_buf);
        self
    }

    /// The config this engine runs with: the file (or built-in defaults),
    /// its layout replaced by one `block_bytes` region per block, sizes
    /// resolved to blocks, the salt extended by the namespace, and G3's
    /// directory set to `path`. Returns the config and its label for errors.
    pub fn resolve(&self) -> Result<(Config, String), EngineError> {
        let bb = self.block_bytes;
        if bb == 0 || !bb.is_multiple_of(2) {
            return Err(EngineError::BlockSize {
                block_bytes: bb,
                reason: "it must be a positive even number (K and V halves)".into(),
            });
        }
        let (mut cfg, name) = match &self.config {
            Some(p) => (Config::from_file(p)?, p.display().to_string()),
            None => (
                Config::parse("configs/engine.toml (built in)", BUILTIN_ENGINE_CONFIG)?,
                "configs/engine.toml (built in)".to_string(),
            ),
        };
        let l = &mut cfg.layout;
        l.preset = "tiny".into();
        l.num_layers = Some(1);
        l.kv_heads = Some(1);
        l.head_dim = Some(1);
        l.dtype_bytes = Some(1);
        l.block_size = Some(bb / 2);
        l.kind = Some("fully-contiguous".into());
        cfg.resolve_bytes(&name, bb as u64)?;
        if cfg.g2.blocks == 0 || cfg.g3.blocks == 0 {
            return Err(ConfigError::Invalid {
                path: name,
                message: "the engine store needs a g2 and a g3 tier (g2.bytes / g3.bytes)".into(),
            }
            .into());
        }
        if cfg.g1.memory == Some(MemoryChoice::Cuda) {
            return Err(ConfigError::Invalid {
                path: name,
                message: "g1.memory = \"cuda\": the engine store's staging tier is host memory (the engine owns the GPU)".into(),
            }
            .into());
        }
        cfg.g1.memory = Some(MemoryChoice::Host);
        cfg.salt = format!("{}/{}", cfg.salt, self.namespace);
        if let Some(p) = &self.path {
            std::fs::create_dir_all(p).map_err(|source| ConfigError::Io {
                path: p.clone(),
                source,
            })?;
            cfg.g3.path = Some(p.clone());
        }
        Ok((cfg, name))
    }
}
