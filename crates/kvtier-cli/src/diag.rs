//! Diagnostics on stderr: `tracing` output with colour only on a terminal,
//! and warnings rate-limited per call site (the first [`PER_SITE`] of each
//! are printed; the rest are counted and summarised once at exit), so a
//! failing disk produces a few lines and a count, not thousands.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use tracing::{Level, Metadata};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Warnings (and errors) printed per call site before the rest are counted.
pub const PER_SITE: u64 = 5;

/// Per call site: events seen, and a description of where it is.
type Seen = HashMap<tracing::callsite::Identifier, (u64, String)>;
static SEEN: Mutex<Option<Seen>> = Mutex::new(None);

fn admit(meta: &Metadata<'_>) -> bool {
    if *meta.level() > Level::WARN || !meta.is_event() {
        return true;
    }
    let mut g = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let e = g
        .get_or_insert_with(HashMap::new)
        .entry(meta.callsite())
        .or_insert_with(|| {
            (
                0,
                format!(
                    "{} messages from {} ({}:{})",
                    meta.level().as_str().to_lowercase(),
                    meta.target(),
                    meta.file().unwrap_or("?"),
                    meta.line().unwrap_or(0)
                ),
            )
        });
    e.0 += 1;
    e.0 <= PER_SITE
}

/// Install the stderr subscriber (the rate limit is a per-event filter, not
/// cached per call site) (`RUST_LOG` filter, default `warn`).
pub fn init() {
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(tracing_subscriber::filter::dynamic_filter_fn(|meta, _| {
            admit(meta)
        }));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with(fmt)
        .try_init();
}

/// One line per call site whose warnings were suppressed.
pub fn summary() -> Vec<String> {
    let g = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let mut out: Vec<String> = g
        .iter()
        .flat_map(|m| m.values())
        .filter(|(n, _)| *n > PER_SITE)
        .map(|(n, site)| format!("{} more {site} were not shown ({n} in all)", n - PER_SITE))
        .collect();
    out.sort();
    out
}
