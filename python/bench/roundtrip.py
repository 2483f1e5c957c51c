"""The request round trip from Python: the loop of `cargo bench --bench roundtrip` (`roundtrip/stored/*`) and of
`duo bench load --sessions 1`, through the SDK.

One FI session asks again and again for a catalogue attribute it was already given (`rent_on_time_ratio_12m()`,
approved by the policy; each request is answered from the store: the owner re-checks the lineage, finds the
stored answer and commits the request and its log entries in one transaction). The owner node is `duo owner
serve` in its own process (as for `duo bench load`), sample data with the bench seed, the hourly request limit
lifted. Two loops are timed, each after a warm-up:

- `sdk`: `fi.request(p, reason=...)`, what an analyst calls (a `duo.Request` with the answer and a verified
  receipt, money as Decimal);
- `core`: the extension's own call (`Session.request`, JSON text back), to tell the Rust/Python boundary from the
  Python layer.

Build the extension and the node in the release profile first:

    (cd python && maturin develop --release)  &&  cargo build --release --bin duo
    DUO_BIN=target/release/duo python python/bench/roundtrip.py [--seconds 5] [--sync normal|full|both] [--json]

and compare with `duo bench load --sessions 1 --seconds N --sync S` (same node, same request, the Rust client).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Callable, Dict, List

from duo.testing import owner_node

#: The policy of the Rust benches (duo-testkit's CATALOGUE_APPROVE): every catalogue attribute in plaintext.
CATALOGUE_APPROVE = """
default = "ask"
[[rule]]
name = "catalogue"
catalogue = ["*"]
backend = ["plaintext"]
action = "approve"
"""

#: duo-testkit's BENCH_SEED.
BENCH_SEED = 1


def measure(call: Callable[[], object], seconds: float, warmup: float, count: int = 0) -> Dict[str, float]:
    """Run ``call`` for ``warmup`` seconds, then for ``seconds`` (or ``count`` times), timing each call: mean,
    p50, p99 (µs), rate, and this process's CPU time per call (µs)."""
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        call()
    times: List[float] = []
    cpu = time.process_time()
    start = time.perf_counter()
    end = start + seconds
    while True:
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
        if (count and len(times) >= count) or (not count and t >= end):
            break
    total = time.perf_counter() - start
    cpu = time.process_time() - cpu
    times.sort()
    pct = lambda q: times[int((len(times) - 1) * q)] * 1e6  # noqa: E731
    mean = statistics.fmean(times)
    # 95% interval of the mean (normal approximation; thousands of samples).
    half = 1.96 * statistics.stdev(times) / len(times) ** 0.5
    return {
        "requests": len(times),
        "per_sec": len(times) / total,
        "mean_us": mean * 1e6,
        "mean_ci95_us": half * 1e6,
        "p50_us": pct(0.5),
        "p99_us": pct(0.99),
        # This process's CPU time (every thread, user and system) per request: the client's own cost, which a
        # loaded machine does not inflate the way it does latency.
        "cpu_us": cpu / len(times) * 1e6,
    }


def run(sync: str, seconds: float, warmup: float, count: int, loops: List[str]) -> Dict[str, Dict[str, float]]:
    serve = ["--requests-per-hour", str(2**62), "--sync", sync, "--quiet"]
    with owner_node(policy=CATALOGUE_APPROVE, principal="Bench", serve_args=serve, seed=BENCH_SEED) as node:
        fi = node.client
        p = fi.attr.rent_on_time_ratio_12m()
        first = fi.request(p, reason="bench")
        assert first.answer is not None, first

        def sdk() -> None:
            r = fi.request(p, reason="bench")
            assert r.answer is not None

        def core() -> None:
            fi._s.request(p.id, "bench")

        calls = {"sdk": sdk, "core": core}
        return {name: measure(calls[name], seconds, warmup, count) for name in loops}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per loop (default 5)")
    ap.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per loop (default 3)")
    ap.add_argument("--sync", choices=["normal", "full", "both"], default="both")
    ap.add_argument("--requests", type=int, default=0, help="measure this many requests instead of --seconds")
    ap.add_argument("--loop", choices=["sdk", "core", "both"], default="both")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    out = {}
    for sync in (["normal", "full"] if args.sync == "both" else [args.sync]):
        loops = ["sdk", "core"] if args.loop == "both" else [args.loop]
        out[sync] = run(sync, args.seconds, args.warmup, args.requests, loops)
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()
        return
    for sync, timed in out.items():
        for name, m in timed.items():
            print(
                f"roundtrip/stored/{sync} from Python ({name}): mean {m['mean_us']:.1f} µs "
                f"± {m['mean_ci95_us']:.1f}, p50 {m['p50_us']:.0f} µs, p99 {m['p99_us']:.0f} µs, "
                f"{m['per_sec']:.0f} req/s, client CPU {m['cpu_us']:.0f} µs/req ({m['requests']:.0f} requests)"
            )


if __name__ == "__main__":
    main()
