//! Typed errors of the offload engine: [`SetupError`] for a refused
//! [`crate::CacheSetup`], [`OffloadError`] for everything at run time.

use crate::durable::JournalError;
use kvtier_logical::{StoreError, Tier};
use kvtier_memory::{CopyError, MemoryError};

/// Why [`crate::TieredCache::new`] refused a setup. Each variant names the
/// tier (or tier boundary) at fault.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A shared tier (G4) needs a host tier to land in and bytes to move.
    #[error("a shared tier (G4) needs G2 with data on: its blocks land in G2 on the way up")]
    SharedNeedsG2,
    /// A shared tier is attached already.
    #[error("a shared tier (G4) is attached already")]
    SharedAttached,
    /// Write-through-selective asks for more sightings than the sketch counts.
    #[error(
        "write-through-selective: min_seen {min_seen} is above {max}, the most sightings counted"
    )]
    MinSeenTooHigh {
        /// The configured threshold.
        min_seen: u8,
        /// The most the sightings sketch counts.
        max: u8,
    },
    /// A lower tier is configured without the tier above it (each lower tier
    /// stages its blocks through the one above on the way up).
    #[error("{tier} needs {above}: a lower tier's blocks are staged through the tier above it")]
    MissingTierAbove {
        /// The tier configured.
        tier: Tier,
        /// The tier missing above it.
        above: Tier,
    },
    /// A store configured for one tier is given in another tier's place.
    #[error("the {slot} slot holds a store configured as {configured}")]
    TierMismatch {
        /// The place it was given in.
        slot: Tier,
        /// The tier its store is configured as.
        configured: Tier,
    },
    /// Some tiers have memory and others not: data is on for every tier or
    /// for none (logical only).
    #[error("{tier} {}: either every tier has memory (data on) or none (logical only)", if *.has_memory { "has memory and G1 has none" } else { "has no memory and G1 has" })]
    MixedData {
        /// The tier that differs from G1.
        tier: Tier,
        /// Whether that tier has memory.
        has_memory: bool,
    },
    /// A tier's store holds more blocks than its memory.
    #[error("{tier}: memory holds {have} blocks, the store wants {want}")]
    CapacityExceedsMemory {
        /// The tier.
        tier: Tier,
        /// Blocks the memory holds.
        have: usize,
        /// Blocks the store is configured for.
        want: usize,
    },
    /// A tier's memory has another block shape than G1's.
    #[error("{tier}: block shape differs from G1's")]
    ShapeMismatch {
        /// The tier.
        tier: Tier,
    },
    /// A lower tier's memory has no byte views (its blocks are checksummed).
    #[error("{tier}: lower tiers need host-visible memory (their blocks are checksummed)")]
    NotHostVisible {
        /// The tier.
        tier: Tier,
    },
    /// Data is on but no copy engine moves blocks across a boundary.
    #[error("data on: no copy engine for the {upper}/{lower} boundary")]
    MissingEngine {
        /// The tier above the boundary.
        upper: Tier,
        /// The tier below it.
        lower: Tier,
    },
    /// Data is on with a device-only G1 and no device engine to fill and
    /// read it through host staging.
    #[error("data on with device-only G1: a device engine (host <-> G1) is needed")]
    MissingStagingEngine,
    /// The host staging buffer of a device-only G1 could not be made.
    #[error("host staging for device-only G1: {0}")]
    Staging(MemoryError),
    /// A tier's block store refused its configuration (each error names
    /// its tier).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A background task (write-through worker, proactive cleaner) needs a
    /// tokio runtime and the cache is not built inside one.
    #[error("{task} needs a tokio runtime: build the cache inside one")]
    NoRuntime {
        /// The task that needs it.
        task: &'static str,
    },
}

/// Errors of the offload engine at run time.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    /// A block store refused (e.g. every slot of a tier is in use).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A copy failed.
    #[error(transparent)]
    Copy(#[from] CopyError),
    /// A memory access failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The setup cannot work.
    #[error("invalid tiered-cache setup: {0}")]
    Setup(#[from] SetupError),
    /// The G3 journal failed to close (its last records may not be durable).
    #[error("G3 journal: {0}")]
    Journal(JournalError),
    /// A tier that this cache does not have.
    #[error("no {tier} tier is configured")]
    NoSuchTier {
        /// The tier asked for.
        tier: Tier,
    },
    /// The cache was closed: no new work is taken.
    #[error("the tiered cache is closed")]
    Closed,
    /// Blocks handed to a request that did not allocate them.
    #[error("blocks allocated by request {owner} handed to request {request}")]
    ForeignBlocks {
        /// The request given the blocks.
        request: u64,
        /// The request that allocated them.
        owner: u64,
    },
    /// Blocks registered out of position order (a second allocation while
    /// the first was still outstanding).
    #[error("blocks for position {got} registered while the request holds {expected} positions")]
    OutOfOrder {
        /// Positions the request holds (where the next blocks must start).
        expected: usize,
        /// Where the given blocks start.
        got: usize,
    },
    /// A position the request does not hold (yet).
    #[error("position {position} is not held (the request holds positions 0..{held})")]
    NotHeld {
        /// The position asked for.
        position: usize,
        /// Positions held.
        held: usize,
    },
    /// Onboarding asked of a request that already holds blocks.
    #[error("a request onboards before it holds blocks ({held} held)")]
    AlreadyStarted {
        /// Positions held.
        held: usize,
    },
}
