import { describe, expect, it } from "vitest";
import { barLayout } from "./Usage";

describe("usage charts", () => {
  it("place each bucket at its time in the window, not spread over the width", () => {
    const point = { requests: 1, errors: 0, input_tokens: 1, output_tokens: 1, mean_latency_ms: 1, max_latency_ms: 1 };
    const layout = barLayout({
      since: 1000,
      until: 2000,
      bucket: 100,
      data: [
        { ...point, start: 1000 },
        { ...point, start: 1900 },
      ],
    });
    expect(layout).toEqual([
      { x: 0, width: 0.1 },
      { x: 0.9, width: 0.1 },
    ]);
  });

  it("keeps a bucket that began before the window inside the chart", () => {
    const [bar] = barLayout({
      since: 1050,
      until: 2050,
      bucket: 100,
      data: [{ start: 1000, requests: 1, errors: 0, input_tokens: 0, output_tokens: 0, mean_latency_ms: 0, max_latency_ms: 0 }],
    });
    expect(bar.x).toBe(0);
  });
});
