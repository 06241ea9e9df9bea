#!/usr/bin/env python3
"""Runs the network store benchmarks and prints each store's hit cost as a
ratio against the raw client call measured in the same run.

    python3 bench/store_figures.py [--build DIR] [--repetitions N] [--json FILE]

Each benchmark binary starts its own server (redis-server, PostgreSQL) on a
free port. Repetitions are interleaved at random so that a slow stretch of a
shared machine falls on both sides; the figure is the ratio of the medians of
wall time per call.
"""

import argparse
import json
import os
import re
import subprocess
import sys

PAIRS = [
    # (figure, binary, store benchmark, baseline benchmark)
    ("redis hit / raw hiredis GET", "redis_store_bench", "BM_RedisStoreHit", "BM_RawHiredisGet"),
    ("postgres hit / raw prepared SELECT", "postgres_store_bench", "BM_PostgresStoreGetHit",
     "BM_RawPreparedSelect"),
]


def medians(binary, repetitions):
    cmd = [
        binary,
        "--benchmark_format=json",
        f"--benchmark_repetitions={repetitions}",
        "--benchmark_enable_random_interleaving=true",
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = {}
    # postgres_store_bench always prints its table and a final line of medians:
    # "postgres_store_hit_vs_raw_select: <store> ns / <raw> ns = <ratio> ...".
    found = re.search(r"_vs_raw_select: (\d+) ns / (\d+) ns", out)
    if found:
        rows["BM_PostgresStoreGetHit"] = float(found.group(1))
        rows["BM_RawPreparedSelect"] = float(found.group(2))
        return rows
    data = json.loads(out)
    for b in data["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        name = b["run_name"].split("/")[0]
        rows[name] = b["real_time"]
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--repetitions", type=int, default=10)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = []
    for figure, binary, store, raw in PAIRS:
        path = os.path.join(args.build, binary)
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: run scripts/build.sh release {binary}")
        rows = medians(path, args.repetitions)
        ratio = rows[store] / rows[raw]
        results.append({"figure": figure, "store_ns": rows[store], "raw_ns": rows[raw],
                        "ratio": ratio, "target": 1.15})
        print(f"{figure}: {rows[store]:.0f} ns / {rows[raw]:.0f} ns = {ratio:.3f}x "
              f"(target <= 1.15x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
