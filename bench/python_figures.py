#!/usr/bin/env python3
"""Figures of the Python package, as ratios measured in one run.

    python3 bench/python_figures.py [--repetitions 5] [--python .venv/bin/python]

1. A cache hit through ``@readonly`` (memory store, one str argument)
   against an undecorated function that looks the same argument up in a
   dict: async (``await tool(q)`` against ``await plain(q)``) and sync.
2. The same hit, a miss (a new argument each call, an upstream that returns
   at once) and coalescing (1,000 concurrent tasks on one new argument)
   through ToolOps 1.0 (``pip install toolops==1.0.0``, in a virtual
   environment of its own, made here on first use under build/) against
   this package: overhead per call beyond the undecorated function, and
   the ratio of the two overheads.

Each measurement runs in a fresh process (``--worker``), repetitions
interleaved, medians reported. Nothing here is asserted; it prints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OLD_VENV = os.path.join(ROOT, "build", "venv-toolops-1.0")


# -- measurements (run inside a worker process) --------------------------------

def _best_per_call(fn, n: int, rounds: int = 5) -> float:
    """Seconds per call: the best of `rounds` timed loops of n calls."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(n)
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def worker(kind: str) -> dict:
    from toolops import readonly

    table = {f"q{i}": "x" * 100 for i in range(64)}
    keys = list(table)
    out: dict[str, float] = {}
    n_hit = 200_000 if kind == "new" else 5_000

    def plain_sync(q: str) -> str:
        return table[q]

    async def plain_async(q: str) -> str:
        return table[q]

    if kind == "new":
        wrapped_sync = readonly(cache_ttl=3600)(plain_sync)
    else:
        wrapped_sync = readonly(cache_backend="memory", cache_ttl=3600)(plain_sync)

    @readonly(cache_backend="memory", cache_ttl=3600)
    async def wrapped_async(q: str) -> str:
        return table[q]

    def loop_sync(fn):
        def run(n):
            k = keys
            m = len(k)
            for i in range(n):
                fn(k[i % m])
        return run

    def loop_async(fn):
        def run(n):
            async def go():
                k = keys
                m = len(k)
                for i in range(n):
                    await fn(k[i % m])
            asyncio.run(go())
        return run

    # Fill the caches, then time hits.
    for q in keys:
        wrapped_sync(q)
        asyncio.run(wrapped_async(q))
    out["sync_plain"] = _best_per_call(loop_sync(plain_sync), n_hit)
    out["sync_hit"] = _best_per_call(loop_sync(wrapped_sync), n_hit)
    out["async_plain"] = _best_per_call(loop_async(plain_async), n_hit)
    out["async_hit"] = _best_per_call(loop_async(wrapped_async), n_hit)

    # Misses: a new argument every call, an upstream that answers at once.
    counter = iter(range(10**9))

    @readonly(cache_backend="memory", cache_ttl=3600)
    async def miss_tool(q: str) -> str:
        return q

    def misses(n):
        async def go():
            for _ in range(n):
                await miss_tool(f"m{next(counter)}")
        asyncio.run(go())

    async def plain_miss(q: str) -> str:
        return q

    def plain_misses(n):
        async def go():
            for _ in range(n):
                await plain_miss(f"m{next(counter)}")
        asyncio.run(go())

    n_miss = 20_000 if kind == "new" else 2_000
    out["async_miss_plain"] = _best_per_call(plain_misses, n_miss, rounds=3)
    out["async_miss"] = _best_per_call(misses, n_miss, rounds=3)

    # Coalescing: 1,000 concurrent tasks on one new argument.
    @readonly(cache_backend="memory", cache_ttl=3600, coalesce=True)
    async def co_tool(q: str) -> str:
        await asyncio.sleep(0)
        return q

    async def plain_co(q: str) -> str:
        await asyncio.sleep(0)
        return q

    def burst(fn):
        def run(n):
            async def go():
                for _ in range(n // 1000):
                    q = f"c{next(counter)}"
                    await asyncio.gather(*[fn(q) for _ in range(1000)])
            asyncio.run(go())
        return run

    out["coalesce_plain"] = _best_per_call(burst(plain_co), 10_000, rounds=3)
    out["coalesce"] = _best_per_call(burst(co_tool), 10_000, rounds=3)
    return out


# -- the driver ----------------------------------------------------------------

def ensure_old_venv() -> str:
    python = os.path.join(OLD_VENV, "bin", "python")
    if not os.path.exists(python):
        print(f"making {OLD_VENV} with toolops==1.0.0 from PyPI ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", OLD_VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "toolops==1.0.0"], check=True,
                       stderr=subprocess.DEVNULL)
    return python


def run_worker(python: str, kind: str) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    out = subprocess.run([python, os.path.abspath(__file__), "--worker", kind],
                         capture_output=True, text=True, env=env, cwd="/", timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"worker ({kind}) failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--python", default=os.path.join(ROOT, ".venv", "bin", "python"),
                        help="interpreter with this package installed (default: .venv)")
    parser.add_argument("--no-old", action="store_true", help="skip ToolOps 1.0")
    parser.add_argument("--worker", choices=["new", "old"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return

    old_python = None if args.no_old else ensure_old_venv()
    runs: dict[str, list[dict]] = {"new": [], "old": []}
    for _ in range(args.repetitions):
        runs["new"].append(run_worker(args.python, "new"))
        if old_python:
            runs["old"].append(run_worker(old_python, "old"))

    def med(kind: str, field: str) -> float:
        return statistics.median(r[field] for r in runs[kind])

    ns = 1e9
    rows = []
    for mode in ("async", "sync"):
        plain, hit = med("new", f"{mode}_plain"), med("new", f"{mode}_hit")
        rows.append((f"{mode} hit through @readonly (ns)", hit * ns, ""))
        rows.append((f"{mode} undecorated dict lookup (ns)", plain * ns, ""))
        rows.append((f"{mode} hit / undecorated", hit / plain, "<= 5"))
    if old_python:
        for case, field, plain_field in (("hit", "async_hit", "async_plain"),
                                         ("miss", "async_miss", "async_miss_plain"),
                                         ("coalesced call", "coalesce", "coalesce_plain"),
                                         ("sync hit", "sync_hit", "sync_plain")):
            new_over = max(med("new", field) - med("new", plain_field), 1e-12)
            old_over = max(med("old", field) - med("old", plain_field), 1e-12)
            rows.append((f"{case}: ToolOps 1.0 overhead per call (ns)", old_over * ns, ""))
            rows.append((f"{case}: this package's overhead per call (ns)", new_over * ns, ""))
            target = ">= 20" if case in ("hit", "sync hit") else "-"
            rows.append((f"{case}: ToolOps 1.0 / this package", old_over / new_over, target))
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'value':>12}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>12.2f}  {target}")
    print(f"\n(medians of {args.repetitions} runs; each run a fresh process per package)")


if __name__ == "__main__":
    main()
