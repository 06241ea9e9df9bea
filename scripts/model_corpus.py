"""A generic English training corpus for scripts/make_model.py --tokenlearn.

Sentences only from Debian packages (none of them is evaluation data):
  wordnet-base   /usr/share/wordnet/data.{noun,verb,adj,adv}: glosses, their quoted
                 examples, and questions made from the lemmas by fixed templates
  fortunes, fortunes-min   /usr/share/games/fortunes/*: the sayings, cut into sentences
  python3-doc    /usr/share/doc/python3-doc/html/_sources/**/*.rst.txt: prose paragraphs
                 (markup removed, code skipped), cut into sentences
Question-style sentences are added by deterministic rewrites of corpus sentences.
Everything is sorted and sampled with a fixed seed, so the corpus is the same on
every machine with the same package versions (recorded by corpus_sources()).
"""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

WORDNET = Path("/usr/share/wordnet")
FORTUNES = Path("/usr/share/games/fortunes")
PYDOC = Path("/usr/share/doc/python3-doc/html/_sources")
PACKAGES = ["wordnet-base", "fortunes", "fortunes-min", "python3-doc"]

_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_SPACE = re.compile(r"\s+")


def package_versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", p], capture_output=True, text=True)
        out[p] = r.stdout.strip() if r.returncode == 0 else "not installed"
    return out


def check_sources() -> None:
    missing = [str(p) for p in (WORDNET / "data.noun", FORTUNES / "fortunes", PYDOC) if not p.exists()]
    if missing:
        raise SystemExit(f"corpus files missing: {missing}; install them with "
                         f"apt-get install {' '.join(PACKAGES)}")


def _clean(s: str) -> str:
    return _SPACE.sub(" ", s).strip()


def _good(s: str, lo: int = 3, hi: int = 40) -> bool:
    words = s.split()
    if not lo <= len(words) <= hi:
        return False
    letters = sum(c.isalpha() for c in s)
    return letters >= 0.6 * len(s)


def sentences_of(text: str) -> list[str]:
    return [s for s in (_clean(x) for x in _SENT_SPLIT.split(_clean(text))) if _good(s)]


# --------------------------------------------------------------------------- WordNet

def wordnet() -> tuple[list[str], dict[str, list[str]]]:
    """Glosses and examples, and the lemmas of each part of speech."""
    sents: list[str] = []
    lemmas: dict[str, list[str]] = {}
    for pos in ["noun", "verb", "adj", "adv"]:
        seen = set()
        with open(WORDNET / f"data.{pos}", encoding="latin-1") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue
                head, gloss = line.split("|", 1)
                fields = head.split()
                n = int(fields[3], 16)
                for i in range(n):
                    w = fields[4 + 2 * i]
                    w = re.sub(r"\(.*\)$", "", w).replace("_", " ")
                    if w not in seen:
                        seen.add(w)
                lemma = re.sub(r"\(.*\)$", "", fields[4]).replace("_", " ")
                parts = [p.strip() for p in gloss.strip().split(";")]
                for p in parts:
                    if p.startswith('"'):
                        ex = p.strip('" ')
                        if _good(ex, 3):
                            sents.append(ex[0].upper() + ex[1:])
                    elif _good(p, 2):
                        sents.append(f"{lemma[0].upper() + lemma[1:]}: {p}" if pos == "noun" else p)
        lemmas[pos] = sorted(seen)
    return sents, lemmas


NOUN_Q = ["What is {a} {w}?", "What is the meaning of {w}?", "How does {a} {w} work?",
          "What are the best books about {w}?", "Where can I find {a} {w}?", "Why is {w} important?",
          "What is the difference between {a} {w} and {a2} {w2}?", "How do I choose {a} good {w}?",
          "What are some facts about {w}?", "Is {a} {w} worth it?", "How much does {a} {w} cost?",
          "What should I know about {w}?", "How can I learn about {w}?"]
VERB_Q = ["How do I {w}?", "How can I {w} faster?", "Why do people {w}?", "What is the best way to {w}?",
          "Is it bad to {w}?", "How do you {w} {a} {n}?", "Can I {w} at home?", "When should I {w}?",
          "How can I learn to {w}?", "What happens if you {w} every day?"]
ADJ_Q = ["Why are some people so {w}?", "How can I be more {w}?", "What makes {a} {n} {w}?",
         "Is it normal to feel {w}?", "What is the most {w} {n} in the world?"]


def _article(w: str) -> str:
    return "an" if w[:1].lower() in "aeiou" else "a"


def lemma_questions(lemmas: dict[str, list[str]], rng: random.Random, n: int) -> list[str]:
    nouns = [w for w in lemmas["noun"] if w.isascii() and len(w) > 2]
    verbs = [w for w in lemmas["verb"] if w.isascii() and len(w) > 2]
    adjs = [w for w in lemmas["adj"] if w.isascii() and len(w) > 2 and " " not in w]
    out = []
    for i in range(n):
        kind = i % 3
        n1, n2 = rng.choice(nouns), rng.choice(nouns)
        if kind == 0:
            t = rng.choice(NOUN_Q)
            q = t.format(w=n1, a=_article(n1), w2=n2, a2=_article(n2))
        elif kind == 1:
            v = rng.choice(verbs)
            q = rng.choice(VERB_Q).format(w=v, a=_article(n1), n=n1)
        else:
            a = rng.choice(adjs)
            q = rng.choice(ADJ_Q).format(w=a, a=_article(n1), n=n1)
        out.append(q[0].upper() + q[1:])
    return out


# --------------------------------------------------------------------------- fortunes

def fortunes() -> list[str]:
    out = []
    for path in sorted(FORTUNES.iterdir()):
        if path.suffix or path.is_dir() or path.name in ("ascii-art", "art"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for entry in text.split("\n%\n"):
            entry = re.sub(r"\n\s*--.*$", "", entry, flags=re.S)  # drop the attribution
            if any(c in entry for c in "|\\_/") and entry.count("\n") > 3:
                continue  # drawings and tables
            out.extend(sentences_of(entry))
    return out


# --------------------------------------------------------------------------- Python docs

_ROLE = re.compile(r":[a-z:]+:`~?!?([^`<]*?)(?:\s*<[^>]*>)?`")
_LINK = re.compile(r"`([^`<]*?)(?:\s*<[^>]*>)?`__?")


def _unmark(p: str) -> str:
    p = _ROLE.sub(r"\1", p)
    p = _LINK.sub(r"\1", p)
    p = p.replace("``", "").replace("**", "").replace("*", "").replace("`", "")
    return p


def python_docs() -> list[str]:
    out = []
    for path in sorted(PYDOC.rglob("*.rst.txt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        in_code = False
        for para in re.split(r"\n\s*\n", text):
            lines = para.split("\n")
            first = lines[0]
            if in_code and first.startswith((" ", "\t")):
                continue
            in_code = para.rstrip().endswith("::")
            if first.startswith(("..", " ", "\t", ">>>", "$", "+", "=", "-", "*", "|")) and not first.startswith("   "):
                continue
            if first.startswith((" ", "\t")):
                continue  # indented: code, directive bodies, block quotes
            body = " ".join(l for l in lines if not re.fullmatch(r"[=\-~^\"'`#*+]{3,}\s*", l))
            out.extend(sentences_of(_unmark(body)))
    return out


# --------------------------------------------------------------------------- questions from sentences

_AUX = re.compile(r"^(\w+(?: \w+){0,3}) (is|are|was|were|can|will|should|must|does|do|has|have) (.+)$", re.I)


def to_question(s: str, rng: random.Random) -> str | None:
    """A yes/no question from a short declarative sentence, or a wh-wrapper."""
    s = s.rstrip(".!").strip()
    if not s or s.endswith("?") or ":" in s or s.startswith("("):
        return None
    m = _AUX.match(s)
    if m and m.group(1).split()[0].lower() not in ("if", "when", "because", "although"):
        subj, aux, rest = m.groups()
        subj = subj if subj[:2].isupper() else subj[0].lower() + subj[1:]
        return f"{aux.capitalize()} {subj} {rest}?"
    low = s[0].lower() + s[1:] if not s[:2].isupper() else s
    return rng.choice(["Why is it that {}?", "Is it true that {}?", "How do we know that {}?",
                       "What does it mean that {}?"]).format(low)


def build(seed: int, n_total: int) -> tuple[list[str], dict[str, int]]:
    """The deduplicated corpus (at most n_total sentences) and the count from each source."""
    check_sources()
    rng = random.Random(seed)
    wn, lemmas = wordnet()
    fo = fortunes()
    py = python_docs()
    parts: dict[str, list[str]] = {"wordnet": wn, "fortunes": fo, "python-doc": py}
    base = sorted(set(wn) | set(fo) | set(py))
    short = [s for s in base if len(s.split()) <= 16]
    parts["rewritten-questions"] = [q for q in (to_question(s, rng) for s in rng.sample(short, min(len(short), n_total // 5))) if q]
    parts["lemma-questions"] = lemma_questions(lemmas, rng, n_total // 5)
    seen, corpus, counts = set(), [], {}
    # Questions in full; the rest sampled to fill the budget, in proportion.
    for name in ["lemma-questions", "rewritten-questions"]:
        for s in parts[name]:
            if s not in seen:
                seen.add(s)
                corpus.append(s)
        counts[name] = len(corpus) - sum(counts.values())
    rest = [s for s in base if s not in seen]
    rng.shuffle(rest)
    take = rest[: max(0, n_total - len(corpus))]
    src = {s: k for k in ["python-doc", "fortunes", "wordnet"] for s in parts[k]}
    for s in take:
        counts[src[s]] = counts.get(src[s], 0) + 1
    corpus.extend(take)
    rng.shuffle(corpus)
    return corpus, counts
