"""One trainlab tree's ``fit`` on report B's work, for comparing two commits; prints one JSON line.

    git archive OLD trainlab | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old  .venv/bin/python bench/before_after.py /tmp/old pure 2000   # batch 1, 2000 steps
    PYTHONPATH=.         .venv/bin/python bench/before_after.py .        pure 2000
    PYTHONPATH=/tmp/old  .venv/bin/python bench/before_after.py /tmp/old full 12     # full batch, 12 epochs

``pure``: seconds per 55000-step epoch at batch size 1, extrapolated from the given number of
steps (validation on one image), for SGD and for SGD with decay 1e-6 and momentum 0.9; and the
final training loss. ``full``: seconds of each full-batch epoch (validation included). Run the
two trees alternately, a few times, and compare medians: the machine's load moves both.
"""

import json
import os
import sys

import torch

tree, mode = sys.argv[1], sys.argv[2]
import trainlab
from trainlab import data as datasets
from trainlab import models, spec
from trainlab.engine import Tensors, fit
from trainlab.optim import Optimizer
from trainlab.trial import TrainSettings

assert trainlab.__file__.startswith(os.path.abspath(tree)), f"PYTHONPATH must put {tree} first, got {trainlab.__file__}"
prep = datasets.prepare({"name": "mnist", "split": {"kind": "first", "validation": 5000, "seed": 0}})
t = Tensors(*(torch.from_numpy(getattr(prep, k)) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")))
MLP = [
    {"type": "Flatten"},
    {"type": "Dense", "units": 128, "activation": "relu"},
    {"type": "Dense", "units": 64, "activation": "relu"},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]


def trial(opt, batch, epochs):
    st = spec.from_dict(
        {
            "data": {"name": "mnist", "split": {"kind": "first", "validation": 5000, "seed": 0}},
            "model": {"layers": MLP},
            "optimizer": opt,
            "train": {"epochs": epochs, "batch_size": batch, "keep": "last"},
            "study": {"seeds": [0]},
        }
    )
    return st.variants[0].spec


out = {}
if mode == "pure":
    steps = int(sys.argv[3])
    part = Tensors(t.x_train[:steps], t.y_train[:steps], t.x_val[:1], t.y_val[:1], t.x_test, t.y_test)
    for name, opt in (("sgd", "sgd"), ("decay+momentum", {"name": "sgd", "momentum": 0.9, "decay": 1e-6})):
        s = trial(opt, 1, 2)
        net = models.build(s["model"], (1, 28, 28), 0)
        o = Optimizer([p for p in net.parameters() if p.requires_grad], s["optimizer"])
        r = fit(net, o, part, TrainSettings.of(s), "classification", seed=0)
        out[name] = [h["seconds"] * 55000 / steps for h in r.history]
        out[name + " loss"] = r.history[-1]["loss"]
else:
    epochs = int(sys.argv[3])
    s = trial("sgd", "full", epochs)
    net = models.build(s["model"], (1, 28, 28), 0)
    o = Optimizer([p for p in net.parameters() if p.requires_grad], s["optimizer"])
    r = fit(net, o, t, TrainSettings.of(s), "classification", seed=0)
    out["full"] = [h["seconds"] for h in r.history]
    out["full loss"] = r.history[-1]["loss"]
print(json.dumps(out))
