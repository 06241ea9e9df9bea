#!/usr/bin/env python3
"""Wall time of `toolops doctor` on a healthy set-up and with a store down.

    python3 bench/doctor_figures.py [--build DIR] [--runs N] [--json FILE]

Starts its own redis-server on a free port and a "silent" TCP server (it
accepts connections and never answers, as a hung server or a half-open
network path does), writes one configuration per case into a temporary
directory, and runs the built `toolops doctor --config FILE` N times per case
(interleaved), reporting the median and the worst wall time and the exit
status. Cases:

  healthy          memory + sqlite + redis, all up
  refused          the same with redis on a port nobody listens on
  silent redis     redis on the silent server (connect_timeout and
                   io_timeout 250 ms, the defaults)
  silent postgres  postgres on the silent server, connect_timeout = 1s
"""

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default="build")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args()
    binary = os.path.join(args.build, "toolops")
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary} is missing: scripts/build.sh release toolops_cli")

    tmp = tempfile.mkdtemp(prefix="toolops-doctor-fig")
    redis_port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no",
         "--bind", "127.0.0.1", "--dir", tmp],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(128)
    silent_port = silent.getsockname()[1]
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", redis_port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("redis-server did not start")
                time.sleep(0.05)

        base = (f'[stores.memory]\ntype = "memory"\n'
                f'[stores.local]\ntype = "sqlite"\npath = "{tmp}/cache.db"\n')
        cases = {
            "healthy": base + f'[stores.shared]\ntype = "redis"\nport = {redis_port}\n',
            "refused": base + f'[stores.shared]\ntype = "redis"\nport = {free_port()}\n',
            "silent redis": base + f'[stores.shared]\ntype = "redis"\nport = {silent_port}\n',
            "silent postgres": base + (
                '[stores.pg]\ntype = "postgres"\n'
                f'url = "host=127.0.0.1 port={silent_port} dbname=x user=x"\n'
                'connect_timeout = "1s"\n'),
        }
        paths = {}
        for name, text in cases.items():
            paths[name] = os.path.join(tmp, name.replace(" ", "_") + ".toml")
            with open(paths[name], "w") as f:
                f.write(text)

        times = {name: [] for name in cases}
        codes = {name: set() for name in cases}
        order = [name for name in cases for _ in range(args.runs)]
        random.shuffle(order)
        for name in order:
            start = time.monotonic()
            run = subprocess.run([binary, "doctor", "--config", paths[name]],
                                 capture_output=True, text=True,
                                 env=dict(os.environ, NO_COLOR="1"))
            times[name].append(time.monotonic() - start)
            codes[name].add(run.returncode)

        rows = []
        print(f"toolops doctor, {args.runs} runs per case (wall time of the process)")
        print(f"{'case':<16} {'median':>9} {'worst':>9}  exit")
        for name in cases:
            median = statistics.median(times[name])
            worst = max(times[name])
            print(f"{name:<16} {median * 1e3:8.0f}ms {worst * 1e3:8.0f}ms  "
                  f"{','.join(map(str, sorted(codes[name])))}")
            rows.append({"case": name, "median_s": median, "worst_s": worst,
                         "exit": sorted(codes[name])})
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=2)
    finally:
        silent.close()
        redis.terminate()
        redis.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
