"""DeepSpeech2-style acoustic model (Amodei et al. 2016, arXiv:1512.02595).

Input: a spectrogram ``[batch, 1, freq_bins (161), seq_len frames]``.

* Two 2-D convolutions, 32 channels each (DS2 Table 4 "2-layer 2D"):
  41x11 (freq x time) stride 2x2, then 21x11 stride 2x1, padded (20, 5) and
  (10, 5) as in the common DS2 implementations (e.g. deepspeech.pytorch).
  Each is followed by ``BatchNorm2d`` and ``Hardtanh(0, 20)`` (DS2's clipped
  ReLU, Sec. 3.1).  Output sizes use PyTorch's rule, :func:`conv_out_hw`.
* Channels x frequency are flattened into ``32 * F'`` features per frame
  and made time-major ``[T', batch, features]`` (one copy kernel).
* ``rnn_layers`` (4) bidirectional LSTM layers of ``width`` hidden units.
  **The two directions are summed** (``h = h_fwd + h_bwd``, Deep Speech 1,
  Hannun et al. 2014, arXiv:1412.5567, Sec. 2; deepspeech.pytorch does the
  same for DS2), not concatenated, so every layer after the first sees
  ``width`` inputs: each layer is its own ``nn.LSTM(d_in, width,
  bidirectional=True)`` followed by one add kernel.  DS2's sequence-wise
  BatchNorm between recurrent layers (Sec. 3.2) is left out.
* ``Linear(width, symbols)`` (29: 26 letters, space, apostrophe, blank),
  log-softmax, CTC loss over targets of ``target_len`` symbols.

Mirrors :class:`perfmodel.torchmodels.speech.Speech` kernel for kernel.
"""
from ..errors import PerfmodelError
from ..ops import OpKind, conv_out_hw
from .base import MAX_LAYERS, ArchSpec, Knob
from .layers import GraphBuilder

#: (name, (r, s) filter freq x time, (stride_h, stride_w), (pad_h, pad_w)); DS2 Table 4
CONV_LAYERS = (
    ("conv1", (41, 11), (2, 2), (20, 5)),
    ("conv2", (21, 11), (2, 1), (10, 5)),
)
CONV_CHANNELS = 32
#: forward FLOPs per CTC lattice cell (batch x frames x (2*target_len + 1)):
#: log-sum-exp of up to 3 predecessors (max, 3 sub, 3 exp, 2 add, log, add) + emission add
CTC_FLOPS_PER_CELL = 12


def conv_stack_out(freq_bins, frames):
    """``(channels, freq, frames)`` after the conv stack, PyTorch's output-size rule."""
    c, f, t = 1, freq_bins, frames
    for _, (r, s), stride, pad in CONV_LAYERS:
        f, t = conv_out_hw({"h": f, "w": t, "r": r, "s": s, "stride_h": stride[0], "stride_w": stride[1],
                            "pad_h": pad[0], "pad_w": pad[1]})
        c = CONV_CHANNELS
    return c, f, t


def build(width, batch=32, seq_len=300, rnn_layers=4, freq_bins=161, symbols=29, target_len=40,
          dtype="fp32"):
    _, _, frames = conv_stack_out(freq_bins, seq_len)  # >= 1: each conv pads (filter - 1) / 2
    if target_len > frames:
        raise PerfmodelError(f"target_len={target_len} is not allowed for model 'speech' with seq_len="
                             f"{seq_len}: CTC needs target_len <= {frames} output frames")
    g = GraphBuilder("speech", dtype)
    c, f, t = 1, freq_bins, seq_len
    for i, (name, (r, s), stride, pad) in enumerate(CONV_LAYERS, 1):
        conv = g.conv2d(name, batch, c, f, t, CONV_CHANNELS, r, s, stride, pad, first_layer=(i == 1))
        c, (f, t) = CONV_CHANNELS, conv_out_hw(conv.dims)
        g.batchnorm(f"bn{i}", batch * c * f * t, c)
        g.pointwise(f"hardtanh{i}", batch * c * f * t, flops_per_elem=2)  # clamp to [0, 20]
    features = c * f
    g.op(OpKind.COPY, "to_time_major", {"numel": batch * features * t})
    d_in = features
    for layer in range(rnn_layers):
        g.rnn(f"rnns/{layer}", "lstm", d_in, width, batch, t, directions=2)
        g.pointwise(f"rnns/{layer}/sum_directions", t * batch * width, n_in=2)
        d_in = width
    g.linear("fc", t * batch, width, symbols)
    g.reduction("log_softmax", t * batch * symbols)
    g.op(OpKind.LOSS, "ctc_loss", {"numel": batch * t * (2 * target_len + 1),
                                   "flops_per_elem": CTC_FLOPS_PER_CELL})
    return g.build(width=width, batch=batch, seq_len=seq_len, rnn_layers=rnn_layers, freq_bins=freq_bins,
                   symbols=symbols, target_len=target_len, frames=t)


SPEC = ArchSpec(
    "speech", "DeepSpeech2-style: 2 conv2d, bidirectional LSTMs (directions summed), CTC", build,
    {"batch": Knob(32, "utterances per step"),
     "seq_len": Knob(300, "spectrogram frames per utterance (input time steps)"),
     "rnn_layers": Knob(4, "bidirectional LSTM layers", maximum=MAX_LAYERS),
     "freq_bins": Knob(161, "spectrogram frequency bins"),
     "symbols": Knob(29, "output symbols incl. the CTC blank", minimum=2),
     "target_len": Knob(40, "symbols per target transcript")},
    "perfmodel.torchmodels.speech:Speech")
