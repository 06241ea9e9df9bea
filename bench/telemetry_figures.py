#!/usr/bin/env python3
"""Prints what telemetry costs on the hit path, against telemetry off.

Runs build/telemetry_bench: BM_TelemetryHitCost (blocks of hits alternating
between a tool with telemetry off and one with the latency histogram on and
tracing at 1%, in one process), then counts instructions per hit under
valgrind's callgrind (the difference between N and 2N hits, divided by N, so
that start-up and warm-up cancel out; the exporter thread's work is
included).

    python3 bench/telemetry_figures.py [--build DIR] [--hits N] [--no-callgrind]
"""

import argparse
import json
import os
import re
import subprocess
import tempfile


def hit_cost(binary):
    out = subprocess.run([binary, "--benchmark_filter=BM_TelemetryHitCost",
                          "--benchmark_format=json"], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)["benchmarks"][0]


def instructions(binary, hits, telemetry):
    """(instructions of the calling thread, instructions of all threads)."""
    with tempfile.TemporaryDirectory() as tmp:
        out_file = os.path.join(tmp, "callgrind.out")
        run = subprocess.run(["valgrind", "--tool=callgrind", "--separate-threads=yes",
                              f"--callgrind-out-file={out_file}",
                              binary, f"--hits={hits}", f"--telemetry={telemetry}"],
                             capture_output=True, text=True, check=True)
        total = int(re.search(r"Collected : (\d+)", run.stderr).group(1))
        with open(out_file + "-01") as f:
            main_thread = int(re.search(r"^totals: (\d+)", f.read(), re.M).group(1))
        return main_thread, total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--hits", type=int, default=200_000)
    parser.add_argument("--no-callgrind", action="store_true")
    args = parser.parse_args()
    binary = os.path.join(args.build, "telemetry_bench")

    b = hit_cost(binary)
    rows = [
        ("hit, telemetry off: CPU ns per hit", f"{b['off_cpu_ns']:.1f}", "-"),
        ("hit, histogram + tracing 1%: CPU ns per hit", f"{b['on_cpu_ns']:.1f}", "-"),
        ("ratio, CPU time of the calling thread", f"{b['cpu_ratio']:.2f}", "<= 1.3"),
        ("ratio, wall time", f"{b['wall_ratio']:.2f}", "<= 1.3"),
    ]
    if not args.no_callgrind:
        caller, total = {}, {}
        for telemetry in ("off", "on"):
            one = instructions(binary, args.hits, telemetry)
            two = instructions(binary, 2 * args.hits, telemetry)
            caller[telemetry] = (two[0] - one[0]) / args.hits
            total[telemetry] = (two[1] - one[1]) / args.hits
        rows += [
            ("instructions per hit, calling thread, telemetry off", f"{caller['off']:.0f}", "-"),
            ("instructions per hit, calling thread, histogram + tracing 1%",
             f"{caller['on']:.0f}", "-"),
            ("ratio, instructions of the calling thread", f"{caller['on'] / caller['off']:.2f}",
             "<= 1.3"),
            ("instructions per hit, all threads (exporter, collector), telemetry on",
             f"{total['on']:.0f}", "-"),
            ("ratio, instructions of all threads", f"{total['on'] / total['off']:.2f}", "-"),
        ]
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'value':>8}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>8}  {target}")


if __name__ == "__main__":
    main()
