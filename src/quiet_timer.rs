//! A timer for "nothing happened for a while" (an upstream stream's idle timeout, a client
//! stream's keep-alive) that costs nothing per item.
//!
//! `tokio::time::timeout` around every item registers a timer in the wheel and removes it
//! again for each of a stream's frames: under a burst of 64 frames that was 4 % of a
//! stream's CPU (perf: `TimerEntry::drop`, `process_at_time`, `Sleep::poll`). Here one
//! `Sleep` stays registered; an item only notes the time, and when the sleep fires early
//! (items came meanwhile) it is moved to the new deadline, at most once per period.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

pub struct QuietTimer {
    sleep: Pin<Box<Sleep>>,
    last: Instant,
    period: Duration,
}

impl QuietTimer {
    /// A timer that fires `period` after now, or after the last [`QuietTimer::touch`].
    pub fn new(period: Duration) -> Self {
        let now = Instant::now();
        Self {
            sleep: Box::pin(tokio::time::sleep_until(now + period)),
            last: now,
            period,
        }
    }

    /// Something happened: the quiet period starts again.
    pub fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// Resolves once `period` has passed without a touch; then the period starts again,
    /// so a keep-alive can wait for the next one.
    pub async fn quiet(&mut self) {
        loop {
            self.sleep.as_mut().await;
            let due = self.last + self.period;
            if Instant::now() >= due {
                self.touch();
                self.sleep.as_mut().reset(self.last + self.period);
                return;
            }
            self.sleep.as_mut().reset(due);
        }
    }
}

/// The stream's next item (`None` inside once it ended), or `None` when `timer` finds the
/// stream quiet first. An item starts the quiet period again. Without a timer: the next item.
pub async fn next_unless_quiet<S: Stream + Unpin>(
    stream: &mut S,
    timer: Option<&mut QuietTimer>,
) -> Option<Option<S::Item>> {
    let Some(timer) = timer else {
        return Some(stream.next().await);
    };
    let next = tokio::select! {
        biased;
        next = stream.next() => next,
        () = timer.quiet() => return None,
    };
    timer.touch();
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(10);

    /// Whether `quiet` resolves within `wait` (paused time: the clock jumps).
    async fn fires_within(timer: &mut QuietTimer, wait: Duration) -> bool {
        tokio::time::timeout(wait, timer.quiet()).await.is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn fires_after_a_quiet_period_and_not_before() {
        let mut timer = QuietTimer::new(PERIOD);
        assert!(!fires_within(&mut timer, Duration::from_secs(9)).await);
        assert!(fires_within(&mut timer, Duration::from_secs(2)).await);
        // The next period starts when it fired.
        assert!(!fires_within(&mut timer, Duration::from_secs(9)).await);
        assert!(fires_within(&mut timer, Duration::from_secs(2)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn touches_push_the_deadline_back() {
        let mut timer = QuietTimer::new(PERIOD);
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(6)).await;
            timer.touch();
        }
        // 30 s have passed, never 10 s without a touch.
        assert!(!fires_within(&mut timer, Duration::from_secs(9)).await);
        assert!(fires_within(&mut timer, Duration::from_secs(2)).await);
    }
}
