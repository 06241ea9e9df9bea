"""Tokenlearn-style training of a static token table for scripts/make_model.py.

The teacher (all-MiniLM-L6-v2, the full transformer) embeds every sentence of a
generic corpus (scripts/model_corpus.py); the static table is then fitted so that
the mean of a sentence's token rows points where the teacher's sentence vector
points (cosine loss), starting from the model2vec distillation. The teacher's
vectors are cached in chunks (--cache), so an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("tokenlearn")
CHUNK = 2000
UNK_ID = 100


def corpus_key(corpus: list[str]) -> str:
    h = hashlib.sha256()
    for s in corpus:
        h.update(s.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()[:16]


def label(model_dir: Path, corpus: list[str], cache: Path, n: int, max_seq_length: int = 128) -> np.ndarray:
    """The teacher's normalised sentence vectors of the first `n` sentences of `corpus`
    [n, 384], cached by chunk of CHUNK under a key of the whole corpus (so a larger n
    later labels only the chunks it adds)."""
    from sentence_transformers import SentenceTransformer

    cache = cache / corpus_key(corpus)
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "corpus.json").write_text(json.dumps(corpus[:20], ensure_ascii=True))
    st = None
    out = []
    t0 = time.time()
    for c, start in enumerate(range(0, min(n, len(corpus)), CHUNK)):
        path = cache / f"chunk{c:05d}.npy"
        if not path.exists():
            if st is None:
                st = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
                st.max_seq_length = max_seq_length
            e = st.encode(corpus[start:start + CHUNK], batch_size=64, normalize_embeddings=True,
                          show_progress_bar=False, convert_to_numpy=True)
            np.save(path.with_suffix(".tmp.npy"), e.astype(np.float32))
            path.with_suffix(".tmp.npy").rename(path)
            log.info("teacher: %d / %d sentences, %.0f s", start + len(e), len(corpus), time.time() - t0)
        out.append(np.load(path))
    return np.concatenate(out)[:n]


def tokenize(tokenizer, corpus: list[str], max_tokens: int = 512) -> list[list[int]]:
    """The ids StaticModel.encode pools: no special tokens added, truncated, [UNK] dropped."""
    enc = tokenizer.encode_batch(corpus, add_special_tokens=False)
    return [[i for i in e.ids[:max_tokens] if i != UNK_ID] for e in enc]


def fit(init: np.ndarray, weights0: np.ndarray, ids: list[list[int]], targets: np.ndarray, *, epochs: int,
        lr: float = 3e-3, lr_weights: float = 3e-2, l2_weights: float = 1e-3, batch: int = 256,
        seed: int = 0) -> np.ndarray:
    """A table whose mean-pooled rows point like `targets` (cosine loss).

    Row t = w_t * (init_t @ W) + b, with W (a square matrix, from the identity), b (a
    vector added to every row, from zero) and one weight per token w_t = weights0_t *
    exp(delta_t) (delta from zero, L2-penalised, so a token the corpus never shows keeps
    its starting weight). W and b are shared by all rows, so every token moves, not only
    those the corpus holds; mean pooling commutes with them (mean of rows @ W + b).
    Rows that are all zero in `init` (special tokens) stay zero.
    """
    torch.manual_seed(seed)
    e0 = torch.tensor(init, dtype=torch.float32)
    dims = e0.shape[1]
    log_w0 = torch.tensor(np.log(np.maximum(weights0, 1e-12)), dtype=torch.float32)
    delta = torch.nn.Parameter(torch.zeros(len(init)))
    w_mat = torch.nn.Parameter(torch.eye(dims))
    bias = torch.nn.Parameter(torch.zeros(dims))
    opt = torch.optim.Adam([{"params": [w_mat, bias], "lr": lr}, {"params": [delta], "lr": lr_weights}])
    keep = [i for i, x in enumerate(ids) if x]
    y = torch.nn.functional.normalize(torch.tensor(targets[keep], dtype=torch.float32), dim=1)
    toks = [torch.tensor(ids[i], dtype=torch.long) for i in keep]
    n = len(keep)
    g = torch.Generator().manual_seed(seed)
    for ep in range(epochs):
        perm = torch.randperm(n, generator=g).tolist()
        total, t0 = 0.0, time.time()
        for k in range(0, n, batch):
            part = perm[k:k + batch]
            inp = torch.cat([toks[i] for i in part])
            seg = torch.cat([torch.full((len(toks[i]),), j, dtype=torch.long) for j, i in enumerate(part)])
            count = torch.tensor([len(toks[i]) for i in part], dtype=torch.float32)
            w = torch.exp(log_w0[inp] + delta[inp])
            pooled = torch.zeros(len(part), dims).index_add_(0, seg, e0[inp] * w[:, None]) / count[:, None]
            pooled = pooled @ w_mat + bias
            loss = (1 - torch.nn.functional.cosine_similarity(pooled, y[part], dim=1)).mean()
            loss = loss + l2_weights * (delta[inp] ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(part)
        log.info("fit: epoch %d loss %.4f (%.0f s)", ep, total / n, time.time() - t0)
    with torch.no_grad():
        table = torch.exp(log_w0 + delta)[:, None] * (e0 @ w_mat) + bias
    table = table.numpy().astype(np.float64)
    table[~init.any(axis=1)] = 0
    return table


def project(table: np.ndarray, ids: list[list[int]], dims: int, center: bool) -> np.ndarray:
    """PCA to `dims`, fitted on the unit pooled vectors of the corpus sentences `ids`.

    Mean pooling commutes with it: the pooled vector of the projected rows is the
    projected pooled vector, so the projection is applied to every row (zero rows stay zero).
    """
    pooled = np.stack([table[x].mean(0) for x in ids if x])
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    mu = pooled.mean(0) if center else np.zeros(pooled.shape[1])
    _, _, vt = np.linalg.svd(pooled - mu, full_matrices=False)
    vt *= np.where(vt[np.arange(len(vt)), np.abs(vt).argmax(1)] < 0, -1, 1)[:, None]  # fixed signs
    out = (table - mu) @ vt[:dims].T
    out[~table.any(axis=1)] = 0
    return out


def token_counts(ids: list[list[int]], vocab_size: int) -> np.ndarray:
    c = np.zeros(vocab_size, dtype=np.float64)
    for x in ids:
        np.add.at(c, x, 1)
    return c
