//! Building blocks of the tests of caches on this crate (feature `testing`):
//! one setup with the test defaults, tiers over small memories of the
//! [`BlockShape::tiny`] shape. A test changes what it cares about with
//! struct-update syntax: `CacheSetup { g1_to_g2: WritePolicy::WriteThrough,
//! ..setup(g1, g2, None) }`.

use std::sync::Arc;

use kvtier_logical::{PolicyKind, StoreConfig, Tier};
use kvtier_memory::{BlockShape, HostMemory, Layout, MockDeviceMemory};

use crate::setup::{CacheSetup, TierMemory, TierSetup, WritePolicy};

/// Tier `t` of `blocks` blocks over `memory`, LRU (the policy whose order
/// tests can predict).
pub fn tier(t: Tier, blocks: usize, memory: TierMemory) -> TierSetup {
    TierSetup {
        store: StoreConfig::new(t, blocks).with_policy(PolicyKind::Lru),
        memory,
    }
}

/// A setup of the given tiers: no copy engines, write-back at both
/// boundaries, write-through queues of 8 blocks, 4 staging blocks, no
/// cleaning ahead, no G3 journal.
pub fn setup(g1: TierSetup, g2: Option<TierSetup>, g3: Option<TierSetup>) -> CacheSetup {
    CacheSetup {
        g1,
        g2,
        g3,
        device_engine: None,
        disk_engine: None,
        g1_to_g2: WritePolicy::WriteBack,
        g2_to_g3: WritePolicy::WriteBack,
        queue_depth: 8,
        staging_blocks: 4,
        clean_ahead: 0,
        g3_journal: None,
        g3_restored: Vec::new(),
    }
}

/// A contiguous layout of `n` [`BlockShape::tiny`] blocks.
pub fn tiny_layout(n: usize) -> Layout {
    // The tiny shape is valid; only a zero count fails.
    Layout::contiguous(BlockShape::tiny(), n).expect("a tiny layout of at least one block")
}

/// Host memory of `n` tiny blocks.
pub fn host(n: usize) -> TierMemory {
    TierMemory::Host(Arc::new(
        HostMemory::new(tiny_layout(n)).expect("host memory of tiny blocks"),
    ))
}

/// Mock device memory of `n` tiny blocks.
pub fn mock(n: usize) -> TierMemory {
    TierMemory::Device(Arc::new(
        MockDeviceMemory::new(tiny_layout(n)).expect("mock device memory of tiny blocks"),
    ))
}
