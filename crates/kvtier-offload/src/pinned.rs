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
    /// The transfer and its guards; `None` once resolved.
    state: Option<(Transfer, G)>,
}

impl<G: Send + 'static> Pinned<G> {
    /// Pin `guards` until `transfer` completes.
    pub fn new(transfer: Transfer, guards: G) -> Self {
        Pinned {
            state: Some((transfer, guards)),
        }
    }
}

impl<G: Send + Unpin + 'static> Future for Pinned<G> {
    type Output = (Result<(), CopyError>, G);

    /// # Panics
    /// If polled again after it resolved (the `Future` contract).
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some((t, _)) = self.state.as_mut() else {
            panic!("Pinned polled after completion");
        };
        let Poll::Ready(r) = Pin::new(t).poll(cx) else {
            return Poll::Pending;
        };
        match self.state.take() {
            Some((_, g)) => Poll::Ready((r, g)),
            None => Poll::Pending, // taken just above: unreachable
        }
    }
}

impl<G: Send + 'static> Drop for Pinned<G> {
    fn drop(&mut self) {
        let Some((t, g)) = self.state.take() else {
            return;
        };
        if t.is_done() {
            return;
        }
        // Cancelled mid-transfer: release the blocks only after the copy.
        let slot = std::sync::Arc::new(parking_lot::Mutex::new(Some((t, g))));
        let theirs = slot.clone();
        let spawned = std::thread::Builder::new()
            .name("kvtier-unpin".into())
            .spawn(move || {
                if let Some((t, g)) = theirs.lock().take() {
                    let _ = t.wait();
                    drop(g);
                }
            });
        if let Err(e) = spawned {
            // Cannot spawn: wait here rather than free a slot under a copy.
            tracing::warn!("cannot spawn unpin thread ({e}); waiting inline");
            if let Some((t, g)) = slot.lock().take() {
                let _ = t.wait();
                drop(g);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn cancelled_transfer_keeps_its_guards_until_the_bytes_land() {
        // The guards are a clone of `token`: its count says whether they live.
        let token = Arc::new(());
        let (t, part) = Transfer::new(0, Box::new(()));
        let pinned = Pinned::new(t, token.clone());
        drop(pinned); // the request was cancelled mid-copy
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(Arc::strong_count(&token), 2, "guards freed under a copy");
        part.finish(Ok(()));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&token) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            Arc::strong_count(&token),
            1,
            "guards released after the copy"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn completed_transfer_gives_the_guards_back() {
        let (t, part) = Transfer::new(0, Box::new(()));
        part.finish(Ok(()));
        let (res, g) = Pinned::new(t, 7u32).await;
        assert!(res.is_ok());
        assert_eq!(g, 7);
    }
}
