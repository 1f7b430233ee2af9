//! A connection's task polled again at once when something inside it wakes it while it is
//! being polled, instead of being scheduled again.
//!
//! A client connection's task runs the server side, the pipeline and the provider's
//! connection (see `backend::driven_http`). Parts of it wake one another through hyper's
//! channels (a body channel wakes its sender whenever its receiver takes a chunk), and all
//! their wakers are this task's. Tokio treats a wake of the running task as a yield: it
//! queues the task and rouses an idle worker to steal it, an eventfd write or a futex wake
//! and often a hop to the other thread. Measured with bench/callgrind.sh's `strace -c`:
//! about two such wakes a request. Here a wake that arrives during the poll only marks the
//! poll to be repeated, which the task does itself before it returns.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

/// How many times the inner future is polled, at most, within one poll of the task while
/// it keeps waking itself; past that the wake goes to the scheduler, so a future that yields
/// on purpose (a cooperative budget, hyper's fairness yield) still lets other tasks run.
const REPEATS: usize = 4;

const IDLE: u8 = 0;
const POLLING: u8 = 1;
const WOKEN_WHILE_POLLING: u8 = 2;

/// `inner`, polled again when it wakes itself during a poll (see the module's comment).
pub fn repoll_on_self_wake<F: Future>(inner: F) -> RepollOnSelfWake<F> {
    let state = Arc::new(WakeState {
        phase: AtomicU8::new(IDLE),
        task: AtomicWaker::new(),
    });
    RepollOnSelfWake {
        inner: Box::pin(inner),
        waker: Waker::from(Arc::clone(&state)),
        state,
    }
}

pub struct RepollOnSelfWake<F> {
    inner: Pin<Box<F>>,
    state: Arc<WakeState>,
    /// The waker the inner future sees: it forwards to the task's waker unless a poll runs.
    waker: Waker,
}

struct WakeState {
    phase: AtomicU8,
    /// The waker of the task polling now, for wakes that arrive between polls.
    task: AtomicWaker,
}

impl Wake for WakeState {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // During a poll, mark it to be repeated; otherwise wake the task. One atomic step,
        // so a wake racing the poll's end is either seen by the poll or forwarded.
        let marked = self.phase.compare_exchange(
            POLLING,
            WOKEN_WHILE_POLLING,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        match marked {
            Ok(_) | Err(WOKEN_WHILE_POLLING) => {}
            Err(_) => self.task.wake(),
        }
    }
}

impl<F: Future> Future for RepollOnSelfWake<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.state.task.register(cx.waker());
        let mut inner_cx = Context::from_waker(&this.waker);
        for _ in 0..REPEATS {
            this.state.phase.store(POLLING, Ordering::Release);
            let polled = this.inner.as_mut().poll(&mut inner_cx);
            let phase = this.state.phase.swap(IDLE, Ordering::AcqRel);
            if polled.is_ready() || phase != WOKEN_WHILE_POLLING {
                return polled;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Pending until polled `ready_at` times; wakes itself during each poll before that
    /// when `wakes_itself`.
    struct Counting {
        polls: Arc<AtomicUsize>,
        ready_at: usize,
    }

    impl Future for Counting {
        type Output = usize;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            let polls = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
            if polls >= self.ready_at {
                return Poll::Ready(polls);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// A waker that counts its wakes.
    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_wake_during_the_poll_repeats_the_poll_without_waking_the_task() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut future = repoll_on_self_wake(Counting {
            polls: polls.clone(),
            ready_at: 3,
        });
        let task = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(task.clone());
        let polled = Pin::new(&mut future).poll(&mut Context::from_waker(&waker));
        assert_eq!(polled, Poll::Ready(3));
        assert_eq!(task.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_future_that_keeps_waking_itself_still_yields_to_the_scheduler() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut future = repoll_on_self_wake(Counting {
            polls: polls.clone(),
            ready_at: usize::MAX,
        });
        let task = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(task.clone());
        let polled = Pin::new(&mut future).poll(&mut Context::from_waker(&waker));
        assert!(polled.is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), REPEATS);
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_wake_between_polls_reaches_the_task() {
        let (sender, receiver) = tokio::sync::oneshot::channel::<u8>();
        let waiting = tokio::spawn(repoll_on_self_wake(receiver));
        tokio::task::yield_now().await;
        sender.send(7).unwrap();
        let received = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the wake was forwarded")
            .unwrap();
        assert_eq!(received, Ok(7));
    }
}
