"""Training tasks for step-count measurements: corpora, a built-in teacher, a train/val split.

``load_task(model, dataset_size, seed, corpus=None, **knobs)`` returns a
:class:`Task`.  ``dataset_size`` (D in the step law) is counted in the unit the
model consumes: characters for ``charlm``, words for ``wordlm``, examples for
``mlp``.  Three sources:

* ``corpus=FILE`` or a built-in name of :data:`BUILTIN_CORPORA` (charlm, wordlm;
  ``shakespeare`` is the tiny-shakespeare text shipped in ``perfmodel/corpora/``): the file's characters, or its
  whitespace-separated words with the top ``vocab - 1`` words kept and the rest
  mapped to ``<unk>``.  The file is cut into blocks of ``block`` tokens, the
  blocks are shuffled by ``seed``, and ``val_fraction`` of them (at most
  ``val_size`` tokens) form the validation set; the training set is the first D
  tokens of the remaining blocks.
* built-in generator (charlm, wordlm; no download): an interpolated sparse
  Markov source over ``vocab`` symbols (default 32 characters, 2,000 words).
  For each token a context length j is drawn: j = 0 with probability
  ``backoff`` (a Zipf(1) unigram over the vocabulary), otherwise uniformly from
  1..``order``.  Each context of the last j tokens has ``branching``
  successors, picked by a hash of (j, context, ``teacher_seed``), with Zipf
  weights 1/(b+1).  Low orders are learnt from little data, high orders need
  more data and capacity, so validation loss keeps improving with D and width,
  as on text, and small training sets are overfitted.  Any D can be generated.
  The teacher and the validation stream depend only on ``teacher_seed``; the
  training stream is drawn with ``seed``, so runs at different seeds see
  different samples of the same source, and the D-token training set is a
  prefix of the seed's stream.
* ``mlp``: teacher-student regression.  x ~ N(0, I_50); the teacher is a random
  2-layer ReLU network (50 -> 100 -> 1) scaled to unit output variance; targets
  are teacher(x) + ``noise`` * N(0, 1).  The student is
  ``build_module("mlp", width, input_dim=50, classes=1)`` trained with squared
  loss through :class:`Regressor` (``input_dim`` and ``hidden`` are knobs).

Data knobs and their defaults are :data:`DATA_KNOBS`; every other knob goes to
``build_module``.  Batches of language models are ``[seq_len, batch]`` token
ids (batch dimension 1); mlp batches are ``[batch, 50]`` (batch dimension 0).
One language-model example is one sequence of ``seq_len`` tokens.
"""
from __future__ import annotations

import collections
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..architectures import get_spec
from ..errors import PerfmodelError
from ..torchmodels import build_module

LM_MODELS = ("charlm", "wordlm")
MODELS = (*LM_MODELS, "mlp")

# Data knobs per model, with defaults (everything else goes to build_module).
DATA_KNOBS = {
    "charlm": {"order": 3, "branching": 2, "backoff": 0.05, "teacher_seed": 0,
               "val_size": 16_000, "val_fraction": 0.1, "block": 2_000, "gen_vocab": 32},
    "wordlm": {"order": 2, "branching": 8, "backoff": 0.1, "teacher_seed": 0,
               "val_size": 16_000, "val_fraction": 0.1, "block": 1_000, "gen_vocab": 2_000},
    "mlp": {"teacher_seed": 0, "val_size": 2_000, "noise": 0.5, "input_dim": 50, "hidden": 100},
}
GENERATOR_KNOBS = ("order", "branching", "backoff")  # what the built-in source is; recorded per run
UNK = "<unk>"
CORPORA_DIR = Path(__file__).resolve().parent.parent / "corpora"
# Built-in corpora by name: 1,115,394 characters of Shakespeare's plays (public domain, as distributed
# with the char-rnn project; sha256 86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed).
BUILTIN_CORPORA = {"shakespeare": CORPORA_DIR / "tinyshakespeare.txt"}


def corpus_path(corpus: str | Path) -> Path:
    """The file of ``corpus``: a built-in name (:data:`BUILTIN_CORPORA`) or a path."""
    return BUILTIN_CORPORA.get(str(corpus), Path(corpus))


def corpus_train_tokens(model: str, corpus) -> int | None:
    """At most how many training tokens ``corpus`` gives ``model`` (characters for charlm, words for
    wordlm): its tokens less the validation blocks (``val_fraction`` of the blocks, each counted at the
    largest block length, so the bound is never above what :func:`_file_corpus` allows); None for the
    built-in generator (no limit) or an unreadable file."""
    if model not in LM_MODELS or not corpus:
        return None
    path = corpus_path(corpus)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    n = len(text) if model == "charlm" else len(text.split())
    data = DATA_KNOBS[model]
    n_blocks = max(1, -(-n // data["block"]))
    n_val = max(1, int(round(data["val_fraction"] * n_blocks)))
    return max(0, n - n_val * -(-n // n_blocks))


@dataclass
class Task:
    """One training problem at one dataset size.

    ``make_model(width)`` builds a fresh module; ``loss(model, x, y)`` is its
    scalar training loss (mean over examples); ``train_batches`` yields one
    shuffled epoch (the last partial batch is dropped); ``val_batches`` yields
    the fixed validation set in order.
    """

    model: str
    dataset_size: int
    train_x: torch.Tensor          # [n_train, ...] examples, batch dimension first
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    module_knobs: dict[str, Any]
    tokens_per_example: int        # D units per example (seq_len for LMs, 1 for mlp)
    batch_dim: int                 # where the batch dimension sits in the model's inputs
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return len(self.train_x)

    def make_model(self, width: int) -> nn.Module:
        module = build_module(self.model, width, **self.module_knobs)
        return Regressor(module) if self.model == "mlp" else module

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return model.loss(x, y)

    def steps_per_epoch(self, batch: int) -> int:
        return self.n_train // batch

    def _as_input(self, x, y):
        return (x.t().contiguous(), y.t().contiguous()) if self.batch_dim == 1 else (x, y)

    def train_batches(self, batch: int, generator: torch.Generator) -> Iterator[tuple]:
        order = torch.randperm(self.n_train, generator=generator)
        for i in range(self.steps_per_epoch(batch)):
            idx = order[i * batch:(i + 1) * batch]
            yield self._as_input(self.train_x[idx], self.train_y[idx])

    def val_batches(self, batch: int) -> Iterator[tuple]:
        for i in range(0, len(self.val_x), batch):
            yield self._as_input(self.val_x[i:i + batch], self.val_y[i:i + batch])

    def plateau_loss(self) -> float:
        """Validation loss of the best input-blind predictor fitted to the training set: the level at
        which training can sit on a plateau before it learns anything from its inputs.

        Language models: the unigram cross-entropy ``-mean(log p(w))`` over the validation tokens,
        with ``p(w) = (c(w) + 1/2) / (N + V/2)`` from the training counts (the add-1/2 estimate of
        R. Krichevsky and V. Trofimov, IEEE Trans. Inf. Theory 27(2), 1981).  ``mlp``: the mean
        squared error of predicting the training mean.
        """
        if self.model == "mlp":
            return float(((self.val_y - self.train_y.mean()) ** 2).mean())
        vocab = int(self.info["vocab"])
        counts = torch.bincount(self.train_y.flatten(), minlength=vocab).double() + 0.5
        return float(-torch.log(counts / counts.sum())[self.val_y.flatten()].mean())

    def sample_train(self, n: int, generator: torch.Generator) -> tuple:
        """``n`` training examples drawn without replacement (for gradient statistics)."""
        idx = torch.randperm(self.n_train, generator=generator)[:n]
        return self._as_input(self.train_x[idx], self.train_y[idx])


class Regressor(nn.Module):
    """Squared-loss wrapper: ``MLP(..., classes=1)`` -> scalar regression output."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        self.mlp = mlp

    def forward(self, x):
        return self.mlp(x).squeeze(-1)

    def loss(self, x, y):
        return F.mse_loss(self(x), y)


def load_task(model: str, dataset_size: int, seed: int = 0, corpus: str | Path | None = None,
              **knobs) -> Task:
    """Build the task for ``model`` with ``dataset_size`` training units (see module doc)."""
    if model not in MODELS:
        raise PerfmodelError(f"unknown model {model!r} for step measurements; allowed: {', '.join(MODELS)}")
    dataset_size = _positive_int("dataset size", dataset_size)
    data = dict(DATA_KNOBS[model])
    for k in list(knobs):
        if k in data:
            v = knobs.pop(k)
            try:
                data[k] = type(DATA_KNOBS[model][k])(v)
            except (TypeError, ValueError):
                raise PerfmodelError(f"{k}={v!r} must be a {type(DATA_KNOBS[model][k]).__name__}") from None
    if model == "mlp":
        if corpus is not None:
            raise PerfmodelError("--corpus applies to charlm and wordlm only; mlp uses a teacher network")
        return _mlp_task(dataset_size, seed, data, knobs)
    return _lm_task(model, dataset_size, seed, corpus, data, knobs)


def _positive_int(what, v):
    try:
        iv = int(v)
    except (TypeError, ValueError):
        raise PerfmodelError(f"{what} {v!r} must be a positive integer") from None
    if iv != float(v) or iv < 1:
        raise PerfmodelError(f"{what} {v!r} must be a positive integer")
    return iv


# ---------------------------------------------------------------- language models

def _lm_task(model, dataset_size, seed, corpus, data, knobs) -> Task:
    spec = get_spec(model)
    checked = spec.resolve(knobs)  # unknown or malformed knobs fail here, with the model's message
    seq_len = checked["seq_len"]
    if corpus is not None:
        train, val, vocab, source = _file_corpus(model, corpus_path(corpus), dataset_size, seed, data,
                                                 checked["vocab"] if "vocab" in knobs else None)
    else:
        vocab = checked["vocab"] if "vocab" in knobs else data["gen_vocab"]
        source = (f"markov(vocab={vocab}, order={data['order']}, branching={data['branching']}, "
                  f"backoff={data['backoff']}, teacher_seed={data['teacher_seed']})")
        common = (vocab, data["order"], data["branching"], data["backoff"], data["teacher_seed"])
        train = markov_tokens(dataset_size, *common, stream_seed=1_000_003 + seed)
        val = markov_tokens(data["val_size"], *common, stream_seed=-1)
    module_knobs = {**checked, "vocab": vocab}
    train_x, train_y = _sequences(train, seq_len, "training set", dataset_size)
    val_x, val_y = _sequences(val, seq_len, "validation set", len(val))
    return Task(model, dataset_size, train_x, train_y, val_x, val_y, module_knobs, seq_len, 1,
                source, {"vocab": vocab, "val_tokens": int(val_x.numel())})


def _sequences(tokens: np.ndarray, seq_len: int, what: str, size: int):
    n = (len(tokens) - 1) // seq_len
    if n < 1:
        raise PerfmodelError(f"{what} of {size} tokens is shorter than one sequence (seq_len={seq_len})")
    t = torch.as_tensor(np.asarray(tokens[:n * seq_len + 1], dtype=np.int64))
    return t[:-1].view(n, seq_len), t[1:].view(n, seq_len)


def _file_corpus(model, path, dataset_size, seed, data, vocab_knob):
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise PerfmodelError(f"cannot read corpus {str(path)!r}: {e.strerror}") from None
    toks = list(text) if model == "charlm" else text.split()
    if len(toks) < 2:
        raise PerfmodelError(f"corpus {str(path)!r} has fewer than 2 tokens")
    if model == "charlm":
        itos = sorted(set(toks))
    else:
        vocab = int(vocab_knob or get_spec(model).knobs["vocab"].default)
        if vocab < 2:
            raise PerfmodelError(f"vocab={vocab} must be at least 2 (one word plus {UNK})")
        itos = [w for w, _ in collections.Counter(toks).most_common(vocab - 1)] + [UNK]
    stoi = {s: i for i, s in enumerate(itos)}
    unk = stoi.get(UNK, 0)
    ids = np.fromiter((stoi.get(t, unk) for t in toks), dtype=np.int64, count=len(toks))
    blocks = np.array_split(ids, max(1, -(-len(ids) // data["block"])))
    order = np.random.default_rng(seed).permutation(len(blocks))
    n_val = max(1, int(round(data["val_fraction"] * len(blocks))))
    val = np.concatenate([blocks[i] for i in order[:n_val]])[:data["val_size"]]
    train = np.concatenate([blocks[i] for i in order[n_val:]] or [ids[:0]])
    if dataset_size > len(train):
        raise PerfmodelError(f"dataset size {dataset_size} exceeds the {len(train)} training tokens of "
                             f"corpus {str(path)!r}")
    return train[:dataset_size], val, len(itos), f"file:{path.name}"


def _mix64(x: int) -> int:
    """splitmix64 finaliser: a fast, well-spread 64-bit integer hash."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def markov_tokens(n: int, vocab: int, order: int, branching: int, backoff: float,
                  teacher_seed: int, stream_seed: int) -> np.ndarray:
    """``n`` tokens of the interpolated sparse Markov source (see module doc)."""
    if vocab < 2 or order < 1 or branching < 1 or not 0 <= backoff < 1:
        raise PerfmodelError(f"bad Markov source: vocab={vocab}, order={order}, branching={branching}, "
                             f"backoff={backoff} (need vocab>=2, order>=1, branching>=1, 0<=backoff<1)")
    rng = np.random.default_rng([teacher_seed, stream_seed % (1 << 63)])
    span = vocab ** order
    ctx = int(rng.integers(span))
    u_mix, u_pick = rng.random((n, 2)).T  # row-major draws: the first m tokens do not depend on n
    level = np.searchsorted(backoff + (1 - backoff) * np.arange(1, order + 1) / order, u_mix, side="right")
    level = np.where(u_mix < backoff, 0, np.minimum(level + 1, order)).tolist()
    cum_succ = np.cumsum(1.0 / np.arange(1, branching + 1))
    pick = np.minimum(np.searchsorted(cum_succ / cum_succ[-1], u_pick), branching - 1).tolist()
    cum_uni = np.cumsum(1.0 / np.arange(1, vocab + 1))
    unigram = np.minimum(np.searchsorted(cum_uni / cum_uni[-1], u_pick), vocab - 1).tolist()
    salt, powers = _mix64(teacher_seed), [vocab ** j for j in range(order + 1)]
    succ: dict[int, list[int]] = {}
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        j = level[i]
        if j == 0:
            tok = unigram[i]
        else:
            key = j * span + ctx % powers[j]  # the last j tokens
            s = succ.get(key)
            if s is None:
                s = succ[key] = [_mix64(salt ^ (key * branching + b)) % vocab for b in range(branching)]
            tok = s[pick[i]]
        out[i] = tok
        ctx = (ctx * vocab + tok) % span
    return out


# ---------------------------------------------------------------- mlp teacher-student

def _mlp_task(dataset_size, seed, data, knobs) -> Task:
    d_in, hidden = int(data["input_dim"]), int(data["hidden"])
    if "classes" in knobs:
        raise PerfmodelError("mlp step measurements regress one output (classes=1); drop classes")
    g = torch.Generator().manual_seed(int(data["teacher_seed"]))
    w1 = torch.randn(d_in, hidden, generator=g) / d_in ** 0.5
    b1 = 0.1 * torch.randn(hidden, generator=g)
    w2 = torch.randn(hidden, generator=g) / hidden ** 0.5

    def teacher(x):
        return torch.relu(x @ w1 + b1) @ w2

    scale = teacher(torch.randn(4096, d_in, generator=g)).std()
    vg = torch.Generator().manual_seed(int(data["teacher_seed"]) + 7919)
    tg = torch.Generator().manual_seed(1_000_003 + int(seed))

    def sample(n, gen):
        x = torch.randn(n, d_in, generator=gen)
        return x, teacher(x) / scale + data["noise"] * torch.randn(n, generator=gen)

    train_x, train_y = sample(dataset_size, tg)
    val_x, val_y = sample(int(data["val_size"]), vg)
    module_knobs = get_spec("mlp").resolve({**knobs, "input_dim": d_in, "classes": 1})
    source = f"teacher(relu {d_in}->{hidden}->1, noise={data['noise']}, teacher_seed={data['teacher_seed']})"
    return Task("mlp", dataset_size, train_x, train_y, val_x, val_y, module_knobs, 1, 0, source,
                {"noise_floor_mse": float(data["noise"]) ** 2})
