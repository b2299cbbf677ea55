//! Completion of asynchronous transfers: a [`Transfer`] handle (a `Future`, and
//! a blocking [`Transfer::wait`]) and the [`Part`] completers that copy engines
//! finish. Completion is signalled by the last part (condvar + waker); nothing
//! polls on an interval.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::{Condvar, Mutex};

use crate::error::CopyError;

struct Inner {
    done: bool,
    result: Result<(), CopyError>,
    waker: Option<Waker>,
    keep_alive: Option<Box<dyn Any + Send>>,
}

struct State {
    remaining: AtomicUsize,
    inner: Mutex<Inner>,
    cv: Condvar,
    bytes: u64,
}

/// Handle of one submitted batch. Await it (it is a `Future`) or call
/// [`wait`](Self::wait); both resolve when every byte is at the destination
/// (or with the first error). Dropping it does not cancel the copy.
#[must_use = "a transfer completes in the background; await or wait on it to see errors"]
pub struct Transfer {
    state: Arc<State>,
}

/// One part of a transfer, finished by an engine worker. A transfer completes
/// when all its parts are finished. Dropping an unfinished part finishes it
/// with [`CopyError::Aborted`].
pub struct Part {
    state: Option<Arc<State>>,
}

impl Transfer {
    /// Creates a transfer moving `bytes` bytes, with its first part.
    /// `keep_alive` (block locks, memory handles) is dropped when the last part
    /// finishes, before the transfer is signalled complete.
    pub fn new(bytes: u64, keep_alive: Box<dyn Any + Send>) -> (Transfer, Part) {
        let state = Arc::new(State {
            remaining: AtomicUsize::new(1),
            inner: Mutex::new(Inner {
                done: false,
                result: Ok(()),
                waker: None,
                keep_alive: Some(keep_alive),
            }),
            cv: Condvar::new(),
            bytes,
        });
        (
            Transfer {
                state: state.clone(),
            },
            Part { state: Some(state) },
        )
    }

    /// An already completed transfer (e.g. an empty batch or a submit error
    /// reported through the handle).
    pub fn ready(result: Result<(), CopyError>) -> Transfer {
        let (t, p) = Transfer::new(0, Box::new(()));
        p.finish(result);
        t
    }

    /// Bytes this transfer moves.
    pub fn bytes(&self) -> u64 {
        self.state.bytes
    }

    /// True once the transfer has completed.
    pub fn is_done(&self) -> bool {
        self.state.inner.lock().done
    }

    /// Blocks the calling thread until the transfer completes. Safe to call
    /// from inside a tokio runtime thread (it does not use tokio), although
    /// awaiting is preferable there.
    pub fn wait(self) -> Result<(), CopyError> {
        let mut g = self.state.inner.lock();
        while !g.done {
            self.state.cv.wait(&mut g);
        }
        g.result.clone()
    }
}

impl Future for Transfer {
    type Output = Result<(), CopyError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut g = self.state.inner.lock();
        if g.done {
            return Poll::Ready(g.result.clone());
        }
        match &g.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => g.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl std::fmt::Debug for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfer")
            .field("bytes", &self.state.bytes)
            .field("done", &self.is_done())
            .finish()
    }
}

impl Part {
    /// Adds another part to the same transfer.
    pub fn split(&self) -> Part {
        match &self.state {
            Some(s) => {
                s.remaining.fetch_add(1, Ordering::AcqRel);
                Part {
                    state: Some(s.clone()),
                }
            }
            None => Part { state: None },
        }
    }

    /// Finishes this part with its result. The first error of any part becomes
    /// the transfer's result.
    pub fn finish(mut self, result: Result<(), CopyError>) {
        if let Some(s) = self.state.take() {
            Self::finish_state(s, result);
        }
    }

    fn finish_state(s: Arc<State>, result: Result<(), CopyError>) {
        if let Err(e) = result {
            let mut g = s.inner.lock();
            if g.result.is_ok() {
                g.result = Err(e);
            }
        }
        if s.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Release locks / memory handles before signalling completion, so a
            // caller that wakes up can immediately reuse the blocks.
            let keep = s.inner.lock().keep_alive.take();
            drop(keep);
            let waker = {
                let mut g = s.inner.lock();
                g.done = true;
                g.waker.take()
            };
            s.cv.notify_all();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        if let Some(s) = self.state.take() {
            Self::finish_state(s, Err(CopyError::Aborted));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_complete_once() {
        let (t, p) = Transfer::new(10, Box::new(()));
        let p2 = p.split();
        let h = std::thread::spawn(move || p2.finish(Ok(())));
        p.finish(Ok(()));
        h.join().unwrap();
        assert_eq!(t.wait(), Ok(()));
    }

    #[test]
    fn dropped_part_aborts() {
        let (t, p) = Transfer::new(10, Box::new(()));
        drop(p);
        assert_eq!(t.wait(), Err(CopyError::Aborted));
    }

    #[test]
    fn future_resolves() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (t, p) = Transfer::new(1, Box::new(()));
        let h = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            p.finish(Err(CopyError::Io("x".into())));
        });
        assert_eq!(rt.block_on(t), Err(CopyError::Io("x".into())));
        h.join().unwrap();
    }
}
