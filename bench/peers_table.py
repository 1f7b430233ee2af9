#!/usr/bin/env python3
"""The summary table of bench/peers.sh: llmux and LiteLLM-Rust side by side.

Usage: peers_table.py LLMUX.json... -- PEER.json...
Each file is a `loadgen compare --json-out` of one round (a direct call against one proxy).
A cell is the mean over that proxy's rounds; the issue's targets are checked below the table.
"""

import json
import sys
from statistics import mean


def load(paths):
    """Rows of all rounds of one proxy, grouped by (kind, concurrency)."""
    rows = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for row in json.load(f)["rows"]:
                rows.setdefault((row["kind"], row["concurrency"]), []).append(row)
    return rows


def avg(rows, pick):
    values = [pick(r) for r in rows]
    values = [v for v in values if v is not None]
    return mean(values) if values else None


def cell(value, digits=0):
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(peer, ours):
    if peer is None or ours is None or ours <= 0:
        return "-"
    return f"{peer / ours:.2f}×"


def main(argv):
    split = argv.index("--")
    ours, peer = load(argv[1:split]), load(argv[split + 1 :])
    print(
        "| kind | c | added p50 µs llmux / peer | added p99 µs llmux / peer "
        "| CPU µs/req llmux / peer | req/s direct / llmux / peer "
        "| peer ÷ llmux: added p50, CPU |"
    )
    print("|---|---|---|---|---|---|---|")
    verdicts = []
    for key in sorted(ours, key=lambda k: (k[0], k[1])):
        if key not in peer:
            continue
        o, p = ours[key], peer[key]
        a50 = [avg(x, lambda r: r["added_p50_us"]) for x in (o, p)]
        a99 = [avg(x, lambda r: r["added_p99_us"]) for x in (o, p)]
        cpu = [avg(x, lambda r: r["cpu_us_per_req_schedstat"]) for x in (o, p)]
        rps = [avg(o + p, lambda r: r["direct"]["rps"])] + [
            avg(x, lambda r: r["proxied"]["rps"]) for x in (o, p)
        ]
        print(
            f"| {key[0]} | {key[1]} | {cell(a50[0], 1)} / {cell(a50[1], 1)} "
            f"| {cell(a99[0], 1)} / {cell(a99[1], 1)} | {cell(cpu[0], 1)} / {cell(cpu[1], 1)} "
            f"| {cell(rps[0])} / {cell(rps[1])} / {cell(rps[2])} "
            f"| {ratio(a50[1], a50[0])}, {ratio(cpu[1], cpu[0])} |"
        )
        if key == ("nonstream", 1):
            verdicts.append(("added p50 at c=1 ≤ 50 µs", a50[0], 50))
            verdicts.append(("added p99 at c=1 ≤ 100 µs", a99[0], 100))
            if a50[1] is not None:
                verdicts.append(("added p50 at c=1 ≤ half the peer's", a50[0], a50[1] / 2))
        if key[0] == "nonstream" and key[1] > 1:
            verdicts.append((f"CPU at c={key[1]} ≤ 30 µs/req", cpu[0], 30))
            if cpu[1] is not None:
                verdicts.append((f"CPU at c={key[1]} ≤ half the peer's", cpu[0], cpu[1] / 2))
    print()
    print("Targets (issue #17, same protocol, non-streaming; llmux's numbers):")
    print()
    for what, value, limit in verdicts:
        if value is None:
            continue
        verdict = "PASS" if value <= limit else "FAIL"
        print(f"- {what}: {value:.1f} against {limit:.1f}: {verdict}")


if __name__ == "__main__":
    main(sys.argv)
