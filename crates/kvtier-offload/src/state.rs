//! The validated state a [`crate::TieredCache`] runs on: what
//! [`crate::TieredCache::new`] checked, carried in types.
//!
//! - [`Tiers`]: G1 (always present) and the lower tiers in order, without gaps.
//! - [`Data`]: bytes off, or on with every tier's memory, the copy engine of
//!   every boundary and, for a device-only G1, its host staging buffer.
//! - [`Inner`]: both, plus the engine's shared state (metrics, write-through
//!   queues, transit, cleaner, journal).

use crate::cleaner::Cleaner;
use crate::durable::{G3Journal, RestoreStats};
use crate::metrics::{CacheMetrics, Path};
use crate::priority::Priority;
use crate::setup::WritePolicy;

use crate::transit::Transits;
use crate::write_through::WtItem;
use kvtier_logical::{BlockStore, FrequencySketch, Tier};
use kvtier_memory::{BlockMemory, CopyEngine, HostMemory, HostVisible};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use tokio::sync::mpsc;

/// One tier's block store and the checksums of its slots.
pub(crate) struct TierState {
    /// The tier (its place in [`Tiers`]).
    pub(crate) tier: Tier,
    /// Its block store.
    pub(crate) store: BlockStore,
    /// Checksum of the bytes in each slot, valid while the slot is
    /// registered. Lower tiers keep them; G1's are unused (its bytes may be
    /// device-only, so a block's checksum is taken where it lands below).
    pub(crate) sums: Box<[AtomicU64]>,
}

impl TierState {
    /// The stored checksum of `slot` (0 if out of range).
    pub(crate) fn sum(&self, slot: u32) -> u64 {
        self.sums
            .get(slot as usize)
            .map_or(0, |s| s.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Record the checksum of `slot`.
    pub(crate) fn set_sum(&self, slot: u32, sum: u64) {
        if let Some(s) = self.sums.get(slot as usize) {
            s.store(sum, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// G1 and the lower tiers, fastest first, without gaps (G3 only with G2).
pub(crate) struct Tiers {
    g1: TierState,
    /// G2, G3, ... in order: `lower[i]` is tier `i + 1`.
    lower: Box<[TierState]>,
}

impl Tiers {
    /// Tiers from G1 and the lower tiers in order (validated by the caller).
    pub(crate) fn new(g1: TierState, lower: Vec<TierState>) -> Tiers {
        Tiers {
            g1,
            lower: lower.into_boxed_slice(),
        }
    }

    /// G1.
    pub(crate) fn g1(&self) -> &TierState {
        &self.g1
    }

    /// `tier`, if present.
    pub(crate) fn get(&self, tier: Tier) -> Option<&TierState> {
        match tier.index() {
            0 => Some(&self.g1),
            i => self.lower.get(i - 1),
        }
    }

    /// The tier below `tier`, if any.
    pub(crate) fn below(&self, tier: Tier) -> Option<&TierState> {
        self.lower.get(tier.index())
    }

    /// Every tier, fastest first.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &TierState> {
        std::iter::once(&self.g1).chain(self.lower.iter())
    }

    /// The lower tiers, fastest first.
    pub(crate) fn lower(&self) -> &[TierState] {
        &self.lower
    }
}

/// Whether block bytes are moved, and everything moving them.
pub(crate) enum Data {
    /// Logical only: stores without memory, copies are no-ops.
    Off,
    /// Every tier has memory; every boundary has its engine.
    On(Bytes),
}

/// The memories and engines of a cache with data on.
pub(crate) struct Bytes {
    /// Bytes per block (the same shape in every tier).
    pub(crate) block_bytes: u64,
    /// G1's memory.
    pub(crate) g1: G1Bytes,
    /// Memory of each lower tier, parallel to [`Tiers::lower`].
    pub(crate) lower: Box<[LowerBytes]>,
}

/// G1's memory.
pub(crate) enum G1Bytes {
    /// Host-visible: written and read in place.
    Host {
        /// The memory, as engines see it.
        mem: Arc<dyn BlockMemory>,
        /// Its byte views.
        host: Arc<dyn HostVisible>,
    },
    /// Device-only (or mock device): written and read through host staging.
    Device(DeviceG1),
}

/// A device-only G1 and the host staging its bytes go through.
pub(crate) struct DeviceG1 {
    /// The memory.
    pub(crate) mem: Arc<dyn BlockMemory>,
    /// Host staging buffer (contiguous layout, one region per block).
    pub(crate) staging: Arc<tokio::sync::Mutex<Arc<HostMemory>>>,
    /// The engine copying between staging and G1.
    pub(crate) engine: Arc<dyn CopyEngine>,
}

impl G1Bytes {
    /// The memory as copy engines see it.
    pub(crate) fn mem(&self) -> &Arc<dyn BlockMemory> {
        match self {
            G1Bytes::Host { mem, .. } | G1Bytes::Device(DeviceG1 { mem, .. }) => mem,
        }
    }
}

/// A lower tier's memory (always host-visible: its blocks are checksummed).
pub(crate) struct LowerBytes {
    /// The memory, as engines see it.
    pub(crate) mem: Arc<dyn BlockMemory>,
    /// Its byte views.
    pub(crate) host: Arc<dyn HostVisible>,
    /// The engine copying between this tier and the one above it.
    pub(crate) engine: Arc<dyn CopyEngine>,
}

/// Everything a copy between two adjacent tiers needs.
pub(crate) struct Link<'a> {
    pub(crate) src: &'a Arc<dyn BlockMemory>,
    pub(crate) dst: &'a Arc<dyn BlockMemory>,
    pub(crate) engine: &'a Arc<dyn CopyEngine>,
    pub(crate) path: Path,
}

impl Bytes {
    /// `tier`'s memory as engines see it.
    fn mem(&self, tier: Tier) -> Option<&Arc<dyn BlockMemory>> {
        match tier.index() {
            0 => Some(self.g1.mem()),
            i => self.lower.get(i - 1).map(|l| &l.mem),
        }
    }

    /// Byte views of `tier`, if it has them.
    pub(crate) fn host(&self, tier: Tier) -> Option<&Arc<dyn HostVisible>> {
        match (tier.index(), &self.g1) {
            (0, G1Bytes::Host { host, .. }) => Some(host),
            (0, G1Bytes::Device(_)) => None,
            (i, _) => self.lower.get(i - 1).map(|l| &l.host),
        }
    }

    /// The copy from `from` to `to` (adjacent tiers, either direction).
    pub(crate) fn link(&self, from: Tier, to: Tier) -> Option<Link<'_>> {
        let lower = from.index().max(to.index());
        if lower != from.index().min(to.index()) + 1 {
            return None;
        }
        Some(Link {
            src: self.mem(from)?,
            dst: self.mem(to)?,
            engine: &self.lower.get(lower - 1)?.engine,
            path: Path::between(from, to)?,
        })
    }
}

/// The shared state behind every [`crate::TieredCache`] handle.
pub(crate) struct Inner {
    /// Block stores.
    pub(crate) tiers: Tiers,
    /// Memories and engines, when data is on.
    pub(crate) data: Data,
    /// Write policy of each boundary: `write[i]` is between tier `i` and
    /// tier `i + 1`.
    pub(crate) write: Box<[WritePolicy]>,
    /// Whether a boundary copies only blocks seen often enough (lookups
    /// then count sightings in `seen`).
    pub(crate) selective: bool,
    /// Movement counters.
    pub(crate) metrics: CacheMetrics,
    /// Sightings per block, for write-through-selective.
    pub(crate) seen: Mutex<FrequencySketch>,
    /// Write-through queue of each boundary (`None`: write-back, or stopped).
    pub(crate) wt_tx: Mutex<Box<[Option<mpsc::Sender<WtItem>>]>>,
    /// Persistence of G3.
    pub(crate) journal: Option<Arc<dyn G3Journal>>,
    /// What start-up restored into G3.
    pub(crate) restored: RestoreStats,
    /// Proactive cleaning at the G1/G2 boundary, if on.
    pub(crate) cleaner: Option<Arc<Cleaner>>,
    /// Blocks between two tiers (evicted above, not yet registered below).
    pub(crate) transit: Transits,
    /// Set by [`crate::TieredCache::close`]: requests are refused.
    pub(crate) closed: AtomicBool,
    /// The tier shared with other nodes below the local ones, once attached
    /// ([`crate::TieredCache::attach_shared`]).
    pub(crate) shared: std::sync::OnceLock<Arc<dyn crate::shared::SharedTier>>,
    /// Foreground work and urgent waits in flight: what background copies
    /// yield to.
    pub(crate) priority: Arc<Priority>,
}

impl Inner {
    /// Bytes per block (0 without data).
    pub(crate) fn block_bytes(&self) -> u64 {
        match &self.data {
            Data::Off => 0,
            Data::On(b) => b.block_bytes,
        }
    }

    /// The write policy of the boundary below `tier` (write-back if none).
    pub(crate) fn write_policy(&self, tier: Tier) -> WritePolicy {
        self.write.get(tier.index()).copied().unwrap_or_default()
    }

    /// Whether `tier` is the journaled (persistent) tier.
    pub(crate) fn journaled(&self, tier: Tier) -> Option<&Arc<dyn G3Journal>> {
        match tier {
            Tier::G3 => self.journal.as_ref(),
            _ => None,
        }
    }
}
