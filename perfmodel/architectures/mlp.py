"""Multilayer perceptron: ``depth`` hidden layers of ``width`` units, ReLU, softmax classifier.

Mirrors :class:`perfmodel.torchmodels.mlp.MLP`.
"""
from .base import MAX_LAYERS, ArchSpec, Knob
from .layers import GraphBuilder


def build(width, batch=128, depth=4, input_dim=1024, classes=10, dtype="fp32"):
    g = GraphBuilder("mlp", dtype)
    d_in = input_dim
    for i in range(depth):
        g.linear(f"layers/{i}/linear", batch, d_in, width, first_layer=(i == 0))
        g.pointwise(f"layers/{i}/relu", batch * width)
        d_in = width
    g.linear("head", batch, d_in, classes)
    g.cross_entropy("loss", batch, classes)
    return g.build(width=width, batch=batch, depth=depth, input_dim=input_dim, classes=classes)


SPEC = ArchSpec(
    "mlp", "MLP classifier: depth x Linear(width)+ReLU, softmax over classes", build,
    {"batch": Knob(128, "examples per step"),
     "depth": Knob(4, "hidden layers", maximum=MAX_LAYERS),
     "input_dim": Knob(1024, "input features"),
     "classes": Knob(10, "output classes")},
    "perfmodel.torchmodels.mlp:MLP")
