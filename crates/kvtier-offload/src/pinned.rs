//! Transfers in flight pin their source and destination blocks.
//!
//! [`Pinned`] awaits a [`Transfer`] while owning the logical guards of every
//! block it touches. If the future is dropped before the copy finished (a
//! cancelled request), the guards are handed to a waiter thread that drops them
//! only once the bytes have landed: a slot is never reused while a copy still
//! reads or writes it.

use kvtier_memory::{CopyError, Transfer};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A transfer plus the guards it pins. Resolves to the transfer's result and
/// gives the guards back.
pub struct Pinned<G: Send + 'static> {
    transfer: Option<Transfer>,
    guards: Option<G>,
}

impl<G: Send + 'static> Pinned<G> {
    /// Pin `guards` until `transfer` completes.
    pub fn new(transfer: Transfer, guards: G) -> Self {
        Pinned {
            transfer: Some(transfer),
            guards: Some(guards),
        }
    }
}

impl<G: Send + Unpin + 'static> Future for Pinned<G> {
    type Output = (Result<(), CopyError>, G);
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let t = self.transfer.as_mut().expect("polled after completion");
        match Pin::new(t).poll(cx) {
            Poll::Ready(r) => {
                self.transfer = None;
                let g = self.guards.take().expect("guards present until completion");
                Poll::Ready((r, g))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<G: Send + 'static> Drop for Pinned<G> {
    fn drop(&mut self) {
        if let (Some(t), Some(g)) = (self.transfer.take(), self.guards.take()) {
            if t.is_done() {
                return;
            }
            // Cancelled mid-transfer: release the blocks only after the copy.
            let spawned = std::thread::Builder::new()
                .name("kvtier-unpin".into())
                .spawn(move || {
                    let _ = t.wait();
                    drop(g);
                });
            if let Err(e) = spawned {
                // Cannot spawn: wait here rather than free a slot under a copy.
                tracing::warn!("cannot spawn unpin thread ({e}); waiting inline");
            }
        }
    }
}
