//! One request's blocks from lookup to release: [`RequestSequence`].
//!
//! The protocol, in order (each step optional except where noted):
//!
//! 1. [`RequestSequence::lookup`]: the matched prefix across tiers, pinned
//!    where it lies (answers "how many blocks are cached" without moving any).
//! 2. [`RequestSequence::onboard`]: bring the matched prefix into G1,
//!    verified (looks up first if step 1 was skipped). The request now holds
//!    G1 blocks for positions `0..matched`.
//! 3. [`RequestSequence::allocate_rest`]: G1 blocks for the remaining
//!    positions, as [`Unwritten`] (evicted blocks are written back first).
//! 4. [`RequestSequence::write`]: fill their bytes; gives [`Written`].
//! 5. [`RequestSequence::register`]: make them matchable (takes only
//!    [`Written`]: a block whose bytes were never written cannot be
//!    registered). Write-through boundaries queue them.
//! 6. Drop (or [`RequestSequence::release`]): every held block is released,
//!    tail first, so a prefix's head outlives its tail in the eviction order.
//!
//! Dropping an [`Unwritten`] or [`Written`] returns its slots unregistered.

use crate::cache::TieredCache;
use crate::error::OffloadError;
use crate::lookup::OnboardPlan;
use crate::TIERS;
use kvtier_logical::{BlockSpec, ImmutableBlock, MutableBlock, SequenceHash, SlotId, Tier};
use std::sync::atomic::{AtomicU64, Ordering};

/// Request ids, so blocks cannot be handed to a request that did not
/// allocate them.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A request's blocks from lookup through onboarding, allocation, writing
/// and registration to release (tail first, on drop). Made by
/// [`TieredCache::request`] or [`TieredCache::request_with_specs`].
///
/// ```
/// # async fn demo(cache: &kvtier_offload::TieredCache, hashes: &[kvtier_logical::SequenceHash])
/// #     -> Result<(), kvtier_offload::OffloadError> {
/// let mut req = cache.request(hashes);
/// let hits = req.onboard().await?;            // matched prefix now in G1, verified
/// let fresh = req.allocate_rest().await?;     // G1 blocks for the rest (Unwritten)
/// let done = req.write(fresh, |pos, bytes| bytes.fill(pos as u8)).await?; // Written
/// req.register(done).await?;                  // matchable from now on
/// assert_eq!(req.held(), hashes.len());
/// # let _ = hits;
/// drop(req);                                  // released tail first
/// # Ok(()) }
/// ```
pub struct RequestSequence {
    cache: TieredCache,
    id: u64,
    hashes: Vec<SequenceHash>,
    /// Explicit identities, or `None` for a chain (`BlockSpec::at`).
    specs: Option<Vec<BlockSpec>>,
    /// The last lookup, not onboarded yet.
    plan: Option<OnboardPlan>,
    /// G1 guards of positions `0..held.len()`.
    held: Vec<ImmutableBlock>,
    /// The tier that served each onboarded position (a prefix of `held`).
    served: Vec<Tier>,
}

/// What [`RequestSequence::lookup`] matched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Matched {
    /// Matched positions (a prefix).
    pub blocks: usize,
    /// Matched positions per tier (`[g1, g2, g3]`), before verification.
    pub by_tier: [u64; TIERS],
    /// Matched positions past the local tiers in the shared tier's index
    /// (G4; included in `blocks`).
    pub shared: u64,
}

/// What [`RequestSequence::onboard`] served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OnboardReport {
    /// Served positions per tier (`[g1, g2, g3]`), after verification.
    pub hits_by_tier: [u64; TIERS],
    /// Positions that failed verification (the prefix was cut at the first;
    /// the caller recomputes from there).
    pub verify_failures: u64,
    /// Served positions read from the shared tier (G4), after verification.
    pub shared_hits: u64,
}

impl OnboardReport {
    /// Served positions in total.
    pub fn hits(&self) -> u64 {
        self.hits_by_tier.iter().sum::<u64>() + self.shared_hits
    }
}

/// G1 blocks allocated for a request's positions `start..start + len`,
/// whose bytes are not written yet. [`RequestSequence::write`] turns them
/// into [`Written`]; dropped, they return their slots.
#[must_use = "allocated blocks are returned unused when dropped"]
pub struct Unwritten {
    request: u64,
    start: usize,
    blocks: Vec<MutableBlock>,
}

/// G1 blocks whose bytes are written, ready for
/// [`RequestSequence::register`]; dropped, they return their slots.
///
/// Only [`RequestSequence::write`] (or [`Unwritten::written_by_engine`])
/// makes them, so registering unwritten blocks does not compile:
///
/// ```compile_fail
/// # async fn f(cache: &kvtier_offload::TieredCache, h: &[kvtier_logical::SequenceHash]) {
/// let mut req = cache.request(h);
/// let fresh = req.allocate_rest().await.unwrap();
/// req.register(fresh).await.unwrap(); // expected `Written`, found `Unwritten`
/// # }
/// ```
#[must_use = "written blocks are returned unregistered when dropped"]
pub struct Written {
    request: u64,
    start: usize,
    blocks: Vec<MutableBlock>,
}

impl Unwritten {
    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// True if no block was needed.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The request position of the first block.
    pub fn start(&self) -> usize {
        self.start
    }

    /// The G1 slot of each block, in position order.
    pub fn slots(&self) -> Vec<SlotId> {
        self.blocks.iter().map(|b| b.slot()).collect()
    }

    /// For an inference engine that computes KV in place in G1 (e.g. on the
    /// GPU, into [`Unwritten::slots`]): the caller vouches that every
    /// block's bytes are written. Use [`RequestSequence::write`] when the
    /// bytes come from the host.
    pub fn written_by_engine(self) -> Written {
        Written {
            request: self.request,
            start: self.start,
            blocks: self.blocks,
        }
    }
}

impl Written {
    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// True if there is nothing to register.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

impl RequestSequence {
    pub(crate) fn new(
        cache: TieredCache,
        hashes: Vec<SequenceHash>,
        specs: Option<Vec<BlockSpec>>,
    ) -> RequestSequence {
        RequestSequence {
            cache,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            hashes,
            specs,
            plan: None,
            held: Vec::new(),
            served: Vec::new(),
        }
    }

    /// This request's id (unique in the process).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Number of positions (blocks) in the request.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// True if the request has no positions.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The block hashes, in position order.
    pub fn hashes(&self) -> &[SequenceHash] {
        &self.hashes
    }

    /// The identity position `pos` is registered under.
    ///
    /// # Panics
    /// If `pos` is out of range.
    pub fn spec(&self, pos: usize) -> BlockSpec {
        spec_at(&self.hashes, self.specs.as_deref(), pos)
    }

    /// Positions held in G1 (`0..held()`): onboarded, then registered.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The tier that served each onboarded position (`0..served().len()`).
    pub fn served(&self) -> &[Tier] {
        &self.served
    }

    /// The G1 slot of each held position, in position order.
    pub fn g1_slots(&self) -> Vec<SlotId> {
        self.held.iter().map(|b| b.slot()).collect()
    }

    fn check_open(&self) -> Result<(), OffloadError> {
        if self.cache.inner.closed.load(Ordering::Acquire) {
            return Err(OffloadError::Closed);
        }
        Ok(())
    }

    fn check_fresh(&self) -> Result<(), OffloadError> {
        self.check_open()?;
        if !self.held.is_empty() {
            return Err(OffloadError::AlreadyStarted {
                held: self.held.len(),
            });
        }
        Ok(())
    }

    /// Find the matched prefix across tiers, each position served by the
    /// fastest tier holding it, and pin it there (a block in transit between
    /// two tiers is waited for, not missed). Only for a request that holds
    /// no blocks yet; a second lookup replaces the first.
    pub async fn lookup(&mut self) -> Result<Matched, OffloadError> {
        self.check_fresh()?;
        self.plan = None;
        let plan = self.cache.inner.lookup(&self.hashes).await;
        let mut by_tier = [0u64; TIERS];
        for (t, _) in &plan.entries {
            by_tier[t.index()] += 1;
        }
        let blocks = plan.len();
        let shared = plan.shared as u64;
        self.plan = Some(plan);
        Ok(Matched {
            blocks,
            by_tier,
            shared,
        })
    }

    /// Bring the matched prefix into G1 (G3 -> G2 -> G1, verified; looks up
    /// first unless [`RequestSequence::lookup`] was called) and hold it.
    /// A block failing verification cuts the prefix there.
    pub async fn onboard(&mut self) -> Result<OnboardReport, OffloadError> {
        self.check_fresh()?;
        let plan = match self.plan.take() {
            Some(p) => p,
            None => self.cache.inner.lookup(&self.hashes).await,
        };
        let inner = self.cache.inner.clone();
        let (hashes, specs) = (&self.hashes, self.specs.as_deref());
        let on = inner.onboard(plan, |i| spec_at(hashes, specs, i)).await?;
        self.held = on.blocks;
        self.served = on.served;
        Ok(OnboardReport {
            hits_by_tier: on.hits_by_tier,
            verify_failures: on.verify_failures,
            shared_hits: on.shared_hits,
        })
    }

    /// Read the matched prefix where it lies, without moving a block or
    /// taking a slot in any tier: `copy(pos, bytes)` sees the canonical
    /// bytes of each position in order, those from lower tiers verified
    /// against their checksum first (a mismatch withdraws the bad copy and
    /// ends the read, as in onboarding). Looks up first unless
    /// [`RequestSequence::lookup`] was called; positions only the shared
    /// tier holds are not read. Returns the positions read (a prefix) and
    /// the verification failures; the lookup's pins are released.
    pub async fn read_matched(
        &mut self,
        copy: impl FnMut(usize, &[u8]) + Send,
    ) -> Result<(usize, u64), OffloadError> {
        self.check_fresh()?;
        let plan = match self.plan.take() {
            Some(p) => p,
            None => self.cache.inner.lookup(&self.hashes).await,
        };
        let out = self.cache.inner.read_in_place(plan, copy).await?;
        Ok((out.read, out.verify_failures))
    }

    /// Allocate G1 blocks for every position not held yet, writing evicted
    /// blocks back down first.
    pub async fn allocate_rest(&mut self) -> Result<Unwritten, OffloadError> {
        self.check_open()?;
        self.plan = None;
        let start = self.held.len();
        let n = self.hashes.len().saturating_sub(start);
        let blocks = self.cache.inner.clone().allocate_in(Tier::G1, n).await?;
        Ok(Unwritten {
            request: self.id,
            start,
            blocks,
        })
    }

    /// Write the bytes of freshly allocated blocks: `fill(pos, buf)` fills
    /// the canonical bytes (layers in order) of position `pos`. In place for
    /// host-visible G1, through host staging for device-only G1; without
    /// data nothing is written. On error the blocks are returned unused.
    pub async fn write(
        &self,
        blocks: Unwritten,
        mut fill: impl FnMut(usize, &mut [u8]) + Send,
    ) -> Result<Written, OffloadError> {
        self.check_owner(blocks.request)?;
        let Unwritten {
            request,
            start,
            blocks,
        } = blocks;
        let slots: Vec<usize> = blocks.iter().map(|b| b.slot() as usize).collect();
        let (res, blocks) = self
            .cache
            .inner
            .write_g1(&slots, |i, buf| fill(start + i, buf), blocks)
            .await;
        res?;
        Ok(Written {
            request,
            start,
            blocks,
        })
    }

    /// Register written blocks (they become matchable) and hold them.
    /// Write-through boundaries queue them for the tier below, waiting when
    /// the queue is full (backpressure).
    pub async fn register(&mut self, blocks: Written) -> Result<(), OffloadError> {
        self.check_owner(blocks.request)?;
        if blocks.start != self.held.len() {
            return Err(OffloadError::OutOfOrder {
                expected: self.held.len(),
                got: blocks.start,
            });
        }
        let specs: Vec<BlockSpec> = (blocks.start..blocks.start + blocks.blocks.len())
            .map(|i| self.spec(i))
            .collect();
        let inner = &self.cache.inner;
        let out = inner.tiers.g1().store.register(
            blocks
                .blocks
                .into_iter()
                .zip(&specs)
                .map(|(b, s)| b.complete(*s)),
        );
        inner.queue_write_through(Tier::G1, &out, &specs).await;
        self.held.extend(out);
        Ok(())
    }

    /// Read back the bytes of held positions: `check(pos, bytes)` sees the
    /// canonical bytes of each position in `positions`. For verification in
    /// tests and replays, and for engines copying KV out of G1.
    pub async fn read_back(
        &self,
        positions: &[usize],
        mut check: impl FnMut(usize, &[u8]) + Send,
    ) -> Result<(), OffloadError> {
        let slots = positions
            .iter()
            .map(|&p| {
                self.held
                    .get(p)
                    .map(|b| b.slot() as usize)
                    .ok_or(OffloadError::NotHeld {
                        position: p,
                        held: self.held.len(),
                    })
            })
            .collect::<Result<Vec<usize>, _>>()?;
        self.cache
            .inner
            .read_g1(&slots, |i, bytes| check(positions[i], bytes))
            .await
    }

    /// Release every held block, tail first (the same as dropping the
    /// request).
    pub fn release(self) {}

    fn check_owner(&self, owner: u64) -> Result<(), OffloadError> {
        if owner != self.id {
            return Err(OffloadError::ForeignBlocks {
                request: self.id,
                owner,
            });
        }
        Ok(())
    }
}

impl Drop for RequestSequence {
    fn drop(&mut self) {
        // Pins in lower tiers first, then G1, tail first.
        self.plan = None;
        if !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            self.cache.inner.release(held.into_iter().rev());
        }
    }
}

fn spec_at(hashes: &[SequenceHash], specs: Option<&[BlockSpec]>, pos: usize) -> BlockSpec {
    match specs {
        Some(s) => s[pos],
        None => BlockSpec::at(hashes, pos),
    }
}
