"""A plain PyTorch fine-tuning loop, for tests/trainer_test.cpp ("fine-tuning matches PyTorch step by step").

usage: finetune_steps.py CONFIG.json OUT.json OUT_WEIGHTS.pth
CONFIG.json names the start weights (petal's train stage model.pt, head included), the training
images (raw float32 [N, 3, S, S], already normalised exactly as petal's loader delivers them) and
labels (raw int64 [N]), and the recipe. Every epoch is one full batch, so the order petal shuffles
in does not matter. The loop is the textbook one: torchvision's mobilenet_v2, AdamW with the
weight decay on weights only (tensors of one dimension, i.e. norm parameters and biases, exempt:
petal's decay_norm_and_bias = false), OneCycleLR stepped per batch (with its default momentum
cycling: beta1 from 0.95 down to 0.85 and back, unless the config's cycle_momentum is false),
cross-entropy with label smoothing. It writes the loss and learning rate of every step to OUT.json
and the final state dict to OUT_WEIGHTS.pth.
"""
import json
import sys

import numpy as np
import torch
import torchvision


def main():
    config = json.load(open(sys.argv[1]))
    n, size = config["samples"], config["image_size"]
    images = torch.from_numpy(np.fromfile(config["images"], dtype=np.float32).reshape(n, 3, size, size).copy())
    labels = torch.from_numpy(np.fromfile(config["labels"], dtype=np.int64).copy())

    model = torchvision.models.mobilenet_v2(num_classes=config["classes"])
    model.classifier[0].p = 0.0  # petal's head_dropout = 0
    model.load_state_dict(torch.load(config["start_weights"]), strict=True)
    if config["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    model.train()

    decayed = [p for p in model.parameters() if p.dim() > 1]
    exempt = [p for p in model.parameters() if p.dim() <= 1]
    optimizer = torch.optim.AdamW([{"params": decayed, "weight_decay": config["weight_decay"]},
                                   {"params": exempt, "weight_decay": 0.0}], lr=config["lr"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config["max_lr"], total_steps=config["epochs"],
                                                   pct_start=config["pct_start"],
                                                   cycle_momentum=config.get("cycle_momentum", True))
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=config["label_smoothing"])
    losses, rates, betas = [], [], []
    for _ in range(config["epochs"]):
        loss = criterion(model(images), labels)
        losses.append(loss.item())
        rates.append(optimizer.param_groups[0]["lr"])
        betas.append(optimizer.param_groups[0]["betas"][0])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    json.dump({"losses": losses, "rates": rates, "beta1": betas}, open(sys.argv[2], "w"))
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, sys.argv[3])


if __name__ == "__main__":
    main()
