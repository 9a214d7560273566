"""Learning rates of PyTorch's schedulers, step by step, for tests/lr_schedule_test.cpp.

usage: lr_schedules.py OUT.json
Writes {case name: [lr (or, for the *_momentum/_beta1 cases, momentum / beta1) at iteration 0, 1, ...]} for the cases below, each produced by
torch.optim.lr_scheduler stepping once per iteration (StepLR: once per epoch).
"""
import json
import sys

import torch

ITERATIONS_PER_EPOCH = 7
EPOCHS = 6
TOTAL = ITERATIONS_PER_EPOCH * EPOCHS


def run(make_scheduler, lr, per_epoch=False, record="lr", optimizer_kind="sgd"):
    param = torch.nn.Parameter(torch.zeros(1))
    if optimizer_kind == "adamw":
        optimizer = torch.optim.AdamW([param], lr=lr)
    else:
        optimizer = torch.optim.SGD([param], lr=lr, momentum=0.9)
    scheduler = make_scheduler(optimizer)
    rates = []
    for iteration in range(TOTAL):
        group = optimizer.param_groups[0]
        if record == "lr":
            rates.append(group["lr"])
        else:  # the momentum the step uses: SGD's momentum, Adam's beta1
            rates.append(group["betas"][0] if "betas" in group else group["momentum"])
        optimizer.step()
        if not per_epoch or (iteration + 1) % ITERATIONS_PER_EPOCH == 0:
            scheduler.step()
    return rates


def main():
    s = torch.optim.lr_scheduler
    cases = {
        "step": run(lambda o: s.StepLR(o, step_size=2, gamma=0.5), 0.1, per_epoch=True),
        "cosine": run(lambda o: s.CosineAnnealingLR(o, T_max=TOTAL, eta_min=1e-4), 0.1),
        "one_cycle": run(lambda o: s.OneCycleLR(o, max_lr=0.1, total_steps=TOTAL, pct_start=0.3), 0.1),
        "one_cycle_15": run(lambda o: s.OneCycleLR(o, max_lr=0.1, total_steps=TOTAL, pct_start=0.15), 0.1),
        # OneCycleLR's default cycle_momentum=True: the momentum / beta1 per step.
        "one_cycle_momentum": run(lambda o: s.OneCycleLR(o, max_lr=0.1, total_steps=TOTAL, pct_start=0.15), 0.1,
                                  record="momentum"),
        "one_cycle_beta1": run(lambda o: s.OneCycleLR(o, max_lr=0.1, total_steps=TOTAL, pct_start=0.3,
                                                      base_momentum=0.8, max_momentum=0.9), 0.1,
                               record="momentum", optimizer_kind="adamw"),
        "triangular": run(lambda o: s.CyclicLR(o, base_lr=5e-8, max_lr=3e-3, step_size_up=5, mode="triangular",
                                               cycle_momentum=False), 3e-4),
        "triangular2": run(lambda o: s.CyclicLR(o, base_lr=1e-4, max_lr=1e-2, step_size_up=4, mode="triangular2",
                                                cycle_momentum=False), 3e-4),
        "exp_range": run(lambda o: s.CyclicLR(o, base_lr=1e-4, max_lr=1e-2, step_size_up=4, mode="exp_range",
                                              gamma=0.97, cycle_momentum=False), 3e-4),
    }
    with open(sys.argv[1], "w") as out:
        json.dump(cases, out)


if __name__ == "__main__":
    main()
