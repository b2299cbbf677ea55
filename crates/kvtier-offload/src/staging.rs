//! Writing and reading G1 block bytes from the host: in place when G1 is
//! host-visible, through the host staging buffer when it is device-only.
//! Bytes are seen in canonical order (layers in order), whatever the layout.

use crate::error::OffloadError;
use crate::pinned::Pinned;
use crate::state::{Data, DeviceG1, G1Bytes, Inner};
use kvtier_memory::{BlockMemory, HostVisible};
use std::sync::Arc;

impl Inner {
    /// Fill G1 blocks: `fill(i, buf)` writes the canonical bytes of
    /// `slots[i]`. `holders` (the blocks' guards) stay pinned until the
    /// bytes have landed, even if this future is dropped; they are given
    /// back. Without data nothing is written.
    pub(crate) async fn write_g1<H: Send + Unpin + 'static>(
        &self,
        slots: &[usize],
        mut fill: impl FnMut(usize, &mut [u8]) + Send,
        mut holders: H,
    ) -> (Result<(), OffloadError>, H) {
        let Data::On(bytes) = &self.data else {
            return (Ok(()), holders);
        };
        match &bytes.g1 {
            G1Bytes::Host { host, .. } => {
                let mut scratch = Vec::new();
                for (i, &slot) in slots.iter().enumerate() {
                    let mut view = match host.block_mut(slot) {
                        Ok(v) => v,
                        Err(e) => return (Err(e.into()), holders),
                    };
                    if view.num_regions() == 1 {
                        fill(i, view.region_mut(0));
                        continue;
                    }
                    // Several regions: fill the canonical bytes, then scatter.
                    drop(view);
                    scratch.resize(bytes.block_bytes as usize, 0);
                    fill(i, &mut scratch);
                    if let Err(e) = host.write_block(slot, &scratch) {
                        return (Err(e.into()), holders);
                    }
                }
                (Ok(()), holders)
            }
            G1Bytes::Device(DeviceG1 {
                mem,
                staging,
                engine,
            }) => {
                let mut staging = staging.clone().lock_owned().await;
                let per = staging.num_blocks();
                for (c, chunk) in slots.chunks(per).enumerate() {
                    let mut pairs = Vec::with_capacity(chunk.len());
                    for (j, &slot) in chunk.iter().enumerate() {
                        // Staging is contiguous: one region per block, filled
                        // in place.
                        let mut view = match staging.block_mut(j) {
                            Ok(v) => v,
                            Err(e) => return (Err(e.into()), holders),
                        };
                        fill(c * per + j, view.region_mut(0));
                        drop(view);
                        pairs.push((j, slot));
                    }
                    let src: Arc<dyn BlockMemory> = (*staging).clone();
                    let transfer = match engine.copy_blocks(&src, mem, &pairs) {
                        Ok(t) => t,
                        Err(e) => return (Err(e.into()), holders),
                    };
                    // Staging and the destination blocks stay pinned until
                    // the bytes have landed.
                    let (res, (s, h)) = Pinned::new(transfer, (staging, holders)).await;
                    (staging, holders) = (s, h);
                    if let Err(e) = res {
                        return (Err(e.into()), holders);
                    }
                }
                (Ok(()), holders)
            }
        }
    }

    /// Read G1 blocks back: `check(i, bytes)` sees the canonical bytes of
    /// `slots[i]`. Without data nothing is read.
    pub(crate) async fn read_g1(
        &self,
        slots: &[usize],
        mut check: impl FnMut(usize, &[u8]) + Send,
    ) -> Result<(), OffloadError> {
        let Data::On(bytes) = &self.data else {
            return Ok(());
        };
        match &bytes.g1 {
            G1Bytes::Host { host, .. } => {
                let mut scratch = Vec::new();
                for (i, &slot) in slots.iter().enumerate() {
                    check(i, host.block(slot)?.canonical(&mut scratch));
                }
                Ok(())
            }
            G1Bytes::Device(dev) => {
                let (mem, engine) = (&dev.mem, &dev.engine);
                let mut staging = dev.staging.clone().lock_owned().await;
                let per = staging.num_blocks();
                for (c, chunk) in slots.chunks(per).enumerate() {
                    let pairs: Vec<(usize, usize)> = chunk
                        .iter()
                        .enumerate()
                        .map(|(j, &slot)| (slot, j))
                        .collect();
                    let dst: Arc<dyn BlockMemory> = (*staging).clone();
                    let transfer = engine.copy_blocks(mem, &dst, &pairs)?;
                    // Staging stays taken until the bytes have landed.
                    let (res, s) = Pinned::new(transfer, staging).await;
                    staging = s;
                    res?;
                    for j in 0..chunk.len() {
                        // Contiguous staging: the block's canonical bytes in place.
                        check(c * per + j, staging.block(j)?.region(0));
                    }
                }
                Ok(())
            }
        }
    }

    /// Byte views of `tier`'s memory, if it is host-visible.
    pub(crate) fn host_view(&self, tier: kvtier_logical::Tier) -> Option<Arc<dyn HostVisible>> {
        match &self.data {
            Data::On(b) => b.host(tier).cloned(),
            Data::Off => None,
        }
    }
}
