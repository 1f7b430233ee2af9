// Polling that never piles up: a slow answer (a large store, a busy machine) is waited for
// before the next request, instead of one more request starting every interval.

/** Calls `tick` every `ms` milliseconds, skipping a beat while the last call is still
 * running; returns a function that stops it. */
export function pollWithoutOverlap(tick: () => Promise<unknown>, ms: number): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    tick()
      .catch(() => undefined)
      .finally(() => {
        running = false;
      });
  }, ms);
  return () => clearInterval(timer);
}
