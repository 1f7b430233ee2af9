import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { pollWithoutOverlap } from "./poll";

describe("pollWithoutOverlap", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("starts no new call while the last one is still running", async () => {
    let started = 0;
    let finish: () => void = () => undefined;
    const stop = pollWithoutOverlap(() => {
      started += 1;
      return new Promise<void>((resolve) => (finish = resolve));
    }, 1000);
    await vi.advanceTimersByTimeAsync(1000);
    expect(started).toBe(1);
    // The answer takes five intervals: nothing else is sent meanwhile.
    await vi.advanceTimersByTimeAsync(5000);
    expect(started).toBe(1);
    finish();
    await vi.advanceTimersByTimeAsync(1000);
    expect(started).toBe(2);
    stop();
    finish();
    await vi.advanceTimersByTimeAsync(5000);
    expect(started).toBe(2);
  });

  it("keeps polling after a failed call", async () => {
    let started = 0;
    const stop = pollWithoutOverlap(() => {
      started += 1;
      return Promise.reject(new Error("down"));
    }, 1000);
    await vi.advanceTimersByTimeAsync(3000);
    expect(started).toBe(3);
    stop();
  });
});
