"""Parameters after a few optimizer steps in PyTorch, for tests/optim_test.cpp.

usage: optimizer_steps.py OUT.json
Every case starts from the same parameter p0 and applies gradients g_k = sin(k + index) * 0.5 +
p * 0.1 (a gradient that depends on the parameter, like a real loss) for STEPS steps; it records the
parameter after each step. The C++ test computes the same gradients and compares.
"""
import json
import math
import sys

import torch

STEPS = 12
P0 = [0.5, -1.25, 2.0, 0.0, -0.3, 1e-3]


def gradient(param, step):
    with torch.no_grad():
        base = torch.tensor([math.sin(step + i) * 0.5 for i in range(len(P0))], dtype=torch.float64)
        return base + param.detach() * 0.1


def run(make):
    param = torch.nn.Parameter(torch.tensor(P0, dtype=torch.float64))
    optimizer = make([param])
    history = []
    for step in range(STEPS):
        param.grad = gradient(param, step)
        optimizer.step()
        history.append(param.detach().tolist())
    return history


def main():
    o = torch.optim
    cases = {
        "sgd": run(lambda p: o.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
        "adam": run(lambda p: o.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-8, weight_decay=1e-2)),
        "adamw": run(lambda p: o.AdamW(p, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)),
        "radam": run(lambda p: o.RAdam(p, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)),
        "radam_short_memory": run(lambda p: o.RAdam(p, lr=0.01, betas=(0.9, 0.8), eps=1e-8)),
    }
    with open(sys.argv[1], "w") as out:
        json.dump(cases, out)


if __name__ == "__main__":
    main()
