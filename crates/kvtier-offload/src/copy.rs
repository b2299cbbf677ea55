//! One copy of block bytes between two adjacent tiers, the primitive under
//! every move (offload, write-through, cleaning, flush, onboarding): the
//! blocks of both sides stay pinned until the bytes have landed, even if the
//! calling future is dropped, and the path's metrics record it.

use crate::pinned::Pinned;
use crate::state::{Data, Inner};
use kvtier_logical::Tier;
use kvtier_memory::CopyError;
use std::time::Instant;

impl Inner {
    /// Copy `pairs` (source slot, destination slot) from tier `from` to tier
    /// `to`, pinning `guards` (the blocks both sides belong to) until the
    /// bytes have landed, and record the path's metrics. Without data this
    /// is a no-op that succeeds. Returns the result and the guards.
    pub(crate) async fn copy_pinned<G: Send + Unpin + 'static>(
        &self,
        from: Tier,
        to: Tier,
        pairs: &[(usize, usize)],
        guards: G,
    ) -> (Result<(), CopyError>, G) {
        let Data::On(bytes) = &self.data else {
            return (Ok(()), guards);
        };
        if pairs.is_empty() {
            return (Ok(()), guards);
        }
        let Some(link) = bytes.link(from, to) else {
            // Only adjacent tiers of this cache are ever linked.
            return (Err(CopyError::Aborted), guards);
        };
        let start = Instant::now();
        let (res, guards) = match link.engine.copy_blocks(link.src, link.dst, pairs) {
            Ok(t) => Pinned::new(t, guards).await,
            Err(e) => (Err(e), guards),
        };
        let n = pairs.len() as u64;
        self.metrics
            .path(link.path)
            .record(n, n * bytes.block_bytes, start.elapsed(), res.is_ok());
        (res, guards)
    }
}
