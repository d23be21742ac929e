"""Word language model: embedding, ``layers`` stacked LSTM layers, softmax over the vocabulary.

Embedding size = hidden size = ``width``.  Each step feeds ``seq_len`` (80)
tokens of ``batch`` sequences through ``nn.LSTM(width, width, layers)`` (one
fused cuDNN/oneDNN RNN per layer; its GEMMs and cell math are
:func:`perfmodel.ops.rnn_components`), then ``Linear(width, vocab)`` and
cross-entropy.  Mirrors :class:`perfmodel.torchmodels.wordlm.WordLM`.
"""
from .base import MAX_LAYERS, ArchSpec, Knob
from .layers import GraphBuilder


def build(width, batch=32, seq_len=80, layers=2, vocab=10_000, dtype="fp32"):
    h, tokens = width, batch * seq_len
    g = GraphBuilder("wordlm", dtype)
    g.embedding("embedding", tokens, vocab, h)
    for layer in range(layers):
        # input of layer 0 is the embedding output, which needs its gradient: not first_layer
        g.rnn(f"lstm/l{layer}", "lstm", h, h, batch, seq_len)
    g.linear("decoder", tokens, h, vocab)
    g.cross_entropy("loss", tokens, vocab)
    return g.build(width=width, batch=batch, seq_len=seq_len, layers=layers, vocab=vocab)


SPEC = ArchSpec(
    "wordlm", "word LM: embedding, stacked LSTM (2 layers), softmax over a 10k vocabulary", build,
    {"batch": Knob(32, "sequences per step"),
     "seq_len": Knob(80, "tokens per sequence (BPTT length)"),
     "layers": Knob(2, "LSTM layers", maximum=MAX_LAYERS),
     "vocab": Knob(10_000, "word vocabulary size")},
    "perfmodel.torchmodels.wordlm:WordLM")
