//! What a G4 tier is opened with ([`RemoteConfig`], the `[g4]` section of a
//! kvtier config) and the object store its URL names.

use crate::error::RemoteError;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientConfigKey, ObjectStore, RetryConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What a writer does when `in_flight` writes are running already.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backpressure {
    /// Skip the block and count it (never queues).
    #[default]
    Skip,
    /// Wait for a write to finish (every block is shared).
    Wait,
}

impl std::str::FromStr for Backpressure {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "skip" => Ok(Self::Skip),
            "wait" => Ok(Self::Wait),
            _ => Err(format!("backpressure '{s}': expected skip or wait")),
        }
    }
}

/// How a block's object is created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CreateMode {
    /// A conditional create (`PutMode::Create`: `If-None-Match: *` on S3);
    /// where the store does not support it, fall back to `overwrite`.
    #[default]
    Conditional,
    /// A plain put. Two writers of one block write the same bytes under the
    /// same key, so one object remains either way; for stores without
    /// conditional writes.
    Overwrite,
}

/// A G4 tier's settings (`[g4]` in a config file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// `s3://bucket/prefix` (endpoint and credentials from the `AWS_*`
    /// environment variables) or `file:///path` (a local or shared
    /// filesystem).
    pub url: String,
    /// `skip` (default) or `wait` when `in_flight` writes are running.
    #[serde(default)]
    pub backpressure: Backpressure,
    /// Writes in flight at most.
    #[serde(default = "default_in_flight")]
    pub in_flight: usize,
    /// Deadline of the reads of one onboarding, in milliseconds: what is not
    /// read by then is a miss (recomputed).
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Reads of one onboarding in flight at most.
    #[serde(default = "default_read_parallelism")]
    pub read_parallelism: usize,
    /// Byte budget of the namespace (0: unbounded).
    #[serde(default)]
    pub capacity: u64,
    /// Eviction starts above this share of `capacity`.
    #[serde(default = "default_high")]
    pub high_watermark: f64,
    /// Eviction deletes least recently used objects down to this share.
    #[serde(default = "default_low")]
    pub low_watermark: f64,
    /// How objects are created.
    #[serde(default)]
    pub create: CreateMode,
    /// Seconds between background listings that refresh the local index
    /// (0: only the listing at start-up).
    #[serde(default = "default_refresh_secs")]
    pub refresh_secs: u64,
    /// Timeout of one request to the store, in milliseconds.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Retries of a failed request (object_store's backoff).
    #[serde(default = "default_retries")]
    pub retries: usize,
    /// Extra `object_store` S3 settings by their names (`endpoint`,
    /// `region`, `allow_http`, `skip_signature`, ...), applied over the
    /// `AWS_*` environment variables. Prefer the environment for
    /// credentials.
    #[serde(default)]
    pub s3: BTreeMap<String, String>,
}

fn default_in_flight() -> usize {
    32
}
fn default_deadline_ms() -> u64 {
    500
}
fn default_read_parallelism() -> usize {
    16
}
fn default_high() -> f64 {
    0.9
}
fn default_low() -> f64 {
    0.8
}
fn default_refresh_secs() -> u64 {
    30
}
fn default_request_timeout_ms() -> u64 {
    5_000
}
fn default_retries() -> usize {
    2
}

impl RemoteConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            backpressure: Backpressure::default(),
            in_flight: default_in_flight(),
            deadline_ms: default_deadline_ms(),
            read_parallelism: default_read_parallelism(),
            capacity: 0,
            high_watermark: default_high(),
            low_watermark: default_low(),
            create: CreateMode::default(),
            refresh_secs: default_refresh_secs(),
            request_timeout_ms: default_request_timeout_ms(),
            retries: default_retries(),
            s3: BTreeMap::new(),
        }
    }

    /// Check the values (field named in the error).
    pub fn validate(&self) -> Result<(), RemoteError> {
        let bad = |field: &'static str, why: String| Err(RemoteError::Config { field, why });
        if self.in_flight == 0 {
            return bad("in_flight", "must be at least 1".into());
        }
        if self.read_parallelism == 0 {
            return bad("read_parallelism", "must be at least 1".into());
        }
        if self.deadline_ms == 0 {
            return bad("deadline_ms", "must be at least 1".into());
        }
        let (h, l) = (self.high_watermark, self.low_watermark);
        if !(h > 0.0 && h <= 1.0) {
            return bad("high_watermark", format!("{h} is not in (0, 1]"));
        }
        if !(l > 0.0 && l < h) {
            return bad(
                "low_watermark",
                format!("{l} is not in (0, high_watermark {h})"),
            );
        }
        Ok(())
    }

    /// The store and the prefix its URL names. `s3://` reads endpoint,
    /// region and credentials from the `AWS_*` environment variables.
    pub fn open_store(&self) -> Result<(Arc<dyn ObjectStore>, Path), RemoteError> {
        let url = url::Url::parse(&self.url).map_err(|e| RemoteError::Url {
            url: self.url.clone(),
            why: e.to_string(),
        })?;
        match url.scheme() {
            "s3" => {
                let prefix = Path::from(url.path().trim_start_matches('/'));
                let ms = self.request_timeout_ms;
                let mut b = AmazonS3Builder::from_env()
                    .with_url(self.url.as_str())
                    .with_retry(self.retry())
                    // Through config keys: with_client_options would drop
                    // AWS_ALLOW_HTTP and the like read from the environment.
                    .with_config(
                        AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                        format!("{ms}ms"),
                    )
                    .with_config(
                        AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                        format!("{}ms", ms.min(2_000)),
                    );
                for (k, v) in &self.s3 {
                    let key = k
                        .parse()
                        .map_err(|e: object_store::Error| RemoteError::Config {
                            field: "s3",
                            why: format!("'{k}': {e}"),
                        })?;
                    b = b.with_config(key, v);
                }
                let s3 = b.build().map_err(|e| RemoteError::Url {
                    url: self.url.clone(),
                    why: e.to_string(),
                })?;
                Ok((Arc::new(s3), prefix))
            }
            "file" => {
                let dir = url.to_file_path().map_err(|_| RemoteError::Url {
                    url: self.url.clone(),
                    why: "not a local path".into(),
                })?;
                std::fs::create_dir_all(&dir).map_err(|e| RemoteError::Url {
                    url: self.url.clone(),
                    why: format!("cannot create {}: {e}", dir.display()),
                })?;
                let fs = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| RemoteError::Url {
                        url: self.url.clone(),
                        why: e.to_string(),
                    })?
                    .with_automatic_cleanup(true);
                Ok((Arc::new(fs), Path::default()))
            }
            s => Err(RemoteError::Url {
                url: self.url.clone(),
                why: format!("scheme '{s}': expected s3:// or file://"),
            }),
        }
    }

    /// The retry policy requests use (bounded: a dead store costs a miss,
    /// not minutes).
    pub fn retry(&self) -> RetryConfig {
        RetryConfig {
            max_retries: self.retries,
            retry_timeout: Duration::from_millis(self.request_timeout_ms),
            ..RetryConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_with_defaults_and_validation() {
        let c: RemoteConfig =
            toml::from_str("url = \"s3://b/p\"\nbackpressure = \"wait\"\ncapacity = 1000\n")
                .unwrap();
        assert_eq!(c.backpressure, Backpressure::Wait);
        assert_eq!(c.in_flight, 32);
        c.validate().unwrap();
        let mut bad = c.clone();
        bad.low_watermark = 0.95;
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("low_watermark"), "{e}");
        assert!(toml::from_str::<RemoteConfig>("url = \"x\"\nbogus = 1\n").is_err());
    }

    #[test]
    fn urls() {
        let dir = tempfile::tempdir().unwrap();
        let c = RemoteConfig::new(format!("file://{}", dir.path().join("g4").display()));
        c.open_store().unwrap();
        assert!(RemoteConfig::new("ftp://x/y").open_store().is_err());
        assert!(RemoteConfig::new("not a url").open_store().is_err());
    }
}
