"""Parameter counts: every analytic graph vs its real ``torch.nn.Module``.

For each architecture in :data:`perfmodel.architectures.MODELS` (so models
added later are covered without editing this file) and several widths:

* ``graph.params == sum(p.numel() for p in module.parameters())``;
* ``graph.params == sum(graph.param_groups.values())``;
* per group: a group path names the torch submodule that owns those
  parameters (``"rnns/0"`` is ``module.rnns[0]``) and must hold exactly its
  parameters.  A multi-layer ``nn.LSTM`` keeps all layers in one module
  (``weight_ih_l0``, ``weight_hh_l1_reverse``), so its layers are split out
  as ``.../l0``, ``.../l1``.  Groups of the architectures listed in
  :data:`GROUPS_NAMED_BY_ROLE` are named by role, not module path, and are
  checked in total only.

Parameter counts do not depend on batch or sequence length; only knobs that
a width needs are set (:data:`KNOBS`).
"""
import re

import numpy as np
import pytest
from torch import nn

from perfmodel.architectures import MODELS, build_graph
from perfmodel.torchmodels import build_module

WIDTHS = (16, 64, 200)
#: knobs a width needs: the transformer's default head size is 64, so give it a head count
KNOBS = {"transformer": {"heads": 4}}
#: architectures whose group paths are layer roles, not torch module paths
GROUPS_NAMED_BY_ROLE = {
    "mlp": "layers/{i}/linear is torch module layers.{i}",
    "charlm": "rhn/depth{l}/recurrent is rhn.recurrent.{l}; softmax/linear is softmax",
}


def module_param_groups(module: nn.Module) -> dict:
    """Parameter counts keyed by owning-module path with ``/`` (RNN layers split as ``/l{k}``)."""
    out = {}
    for mpath, mod in module.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            key = mpath.replace(".", "/")
            if isinstance(mod, nn.RNNBase):
                key += "/l" + re.search(r"_l(\d+)", pname).group(1)
            out[key] = out.get(key, 0) + p.numel()
    return out


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list(MODELS))
def test_param_count_matches_torch(name, width):
    knobs = KNOBS.get(name, {})
    graph = build_graph(name, width, **knobs)
    module = build_module(name, width, **knobs)
    assert graph.params == sum(p.numel() for p in module.parameters())
    assert graph.params == sum(graph.param_groups.values())


@pytest.mark.parametrize("name", list(MODELS))
def test_param_groups_match_module_paths(name):
    knobs = KNOBS.get(name, {})
    graph = build_graph(name, 64, **knobs)
    torch_groups = module_param_groups(build_module(name, 64, **knobs))
    unmatched = []
    for group, count in graph.param_groups.items():
        under = sum(n for k, n in torch_groups.items() if k == group or k.startswith(group + "/"))
        if under == 0:
            unmatched.append(group)
        else:
            assert count == under, group
    if name not in GROUPS_NAMED_BY_ROLE:
        assert unmatched == [], f"groups naming no torch submodule: {unmatched}"


@pytest.mark.parametrize("name", list(MODELS))
def test_vectorized_widths_match_scalar_builds(name):
    """A sweep is one graph whose dims are arrays (perfmodel.ops): same counts as one build per width."""
    knobs = KNOBS.get(name, {})
    widths = np.array([16, 64, 200])
    graph = build_graph(name, widths, **knobs)
    for i, w in enumerate(widths):
        one = build_graph(name, int(w), **knobs)
        assert graph.params[i] == one.params
        assert sum(op.total_flops for op in graph.step_ops())[i] == sum(op.total_flops for op in one.step_ops())


def test_wordlm_param_arithmetic():
    """nn.LSTM layer: 4 gates x (W_ih [h x in] + W_hh [h x h] + b_ih + b_hh); default 2 layers, vocab 10k."""
    h, v = 650, 10_000
    lstm_layer = 4 * (h * h + h * h + 2 * h)
    expected = v * h + 2 * lstm_layer + (h * v + v)   # embedding, 2 LSTM layers, decoder
    assert build_graph("wordlm", h).params == expected


def test_speech_param_arithmetic():
    """DS2 conv stack (Amodei et al. 2016, Table 4) with PyTorch's output-size rule, then 4 BiLSTMs.

    freq 161 -> (161 + 2*20 - 41)//2 + 1 = 81 -> (81 + 2*10 - 21)//2 + 1 = 41, so the
    first LSTM sees 32 * 41 = 1312 features; later layers see h (directions summed).
    """
    h = 800
    conv = (32 * 1 * 41 * 11 + 32) + (32 * 32 * 21 * 11 + 32)
    bn = 2 * (2 * 32)                                   # weight + bias per channel, 2 layers

    def bilstm(d_in):
        return 2 * 4 * (h * d_in + h * h + 2 * h)

    expected = conv + bn + bilstm(32 * 41) + 3 * bilstm(h) + (h * 29 + 29)
    graph = build_graph("speech", h)
    assert graph.params == expected
    assert graph.config["frames"] == 150                # 300 frames: stride 2 in time, then 1
