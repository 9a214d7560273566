#!/usr/bin/env python3
"""petal's fine-tune beside a plain PyTorch fine-tune on the same split (issue 19).

For each seed: `petal run EXPERIMENT --set split.seed=S` (no tracking, its own state folder), then
the same photos' split (petal's split.tsv) fine-tuned the ordinary way in PyTorch eager, from the
same EfficientNet-Lite0 weights file. One table: test accuracy, macro-F1 and wall time per seed and
side, with the mean and spread. Run by hand (minutes per seed on 2 cores), never in CI:

    .venv/bin/python bench/accuracy_reference.py                       # 3 seeds, the default experiment
    .venv/bin/python bench/accuracy_reference.py --seeds 42 --experiment experiments/flowers5.toml
    .venv/bin/python bench/accuracy_reference.py --reference-only --split-tsv S/split.tsv --root DATA

The PyTorch recipe is the one of ../shared/docs/accuracy-reference.md: the whole network at 128 px,
AdamW lr 1e-3, weight decay 0.05, one-cycle (15% warm-up, cosine down), 15 epochs, batch 64, label
smoothing 0.1; random resized crop (area 0.3-1, aspect 1), horizontal flip, rotation +-15 degrees,
brightness/contrast/saturation +-20%; inputs (x - 0.5) / 0.5; the best-validation-accuracy epoch is
scored. Evaluation uses petal's view (short side to 146, centre crop 128), so that both sides are
scored on the same pixels.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="42,1,2", help="split seeds, comma-separated")
    p.add_argument("--experiment", default=os.path.join(REPO, "experiments/flowers5.toml"))
    p.add_argument("--petal", default=os.path.join(REPO, "build/petal"))
    p.add_argument("--weights", default=os.path.join(REPO, "weights/efficientnet-lite0-57934424.pth"))
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reference-only", action="store_true", help="only the PyTorch side, on --split-tsv/--root")
    p.add_argument("--split-tsv", help="with --reference-only: a petal split stage's split.tsv")
    p.add_argument("--root", help="with --reference-only: the dataset folder the split's paths are in")
    p.add_argument("--json", help="also write the results here")
    return p.parse_args()


# ---- petal's side ----

def entry_out(state, key):
    return os.path.join(state, "cache", "entries", key[:2], key, "out")


def run_petal(args, seed, state):
    # Untracked, so the register stage (which needs MLflow) is switched off; it comes after evaluate
    # and changes no other stage's key.
    sets = ["--set", f"split.seed={seed}", "--set", "register.enabled=false"]
    start = time.monotonic()
    cmd = [args.petal, "--state-dir", state, "run", "--no-tracking", args.experiment, *sets]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"accuracy_reference: {' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-3000:]}")
    status = subprocess.run([args.petal, "--state-dir", state, "status", args.experiment, *sets,
                             "--json"], stdout=subprocess.PIPE, text=True, check=True)
    keys = {s["stage"]: s["key"] for s in json.loads(status.stdout)["stages"]}
    split_out = entry_out(state, keys["split"])
    with open(os.path.join(split_out, "source.json")) as f:
        root = json.load(f)["root"]
    with open(os.path.join(entry_out(state, keys["evaluate"]), "metrics.json")) as f:
        metrics = json.load(f)
    return {"accuracy": metrics["test_accuracy"], "f1": metrics["test_f1"], "seconds": wall,
            "split_tsv": os.path.join(split_out, "split.tsv"), "root": root}


# ---- the PyTorch reference ----

def read_split(split_tsv, root):
    rows = {"train": [], "val": [], "test": []}
    with open(split_tsv) as f:
        header = f.readline().rstrip("\n").split("\t")
        path_col, label_col, split_col = header.index("path"), header.index("label"), header.index("split")
        for line in f:
            cells = line.rstrip("\n").split("\t")
            rows[cells[split_col]].append((os.path.join(root, cells[path_col]), cells[label_col]))
    classes = sorted({label for part in rows.values() for _, label in part})
    return rows, classes


def load_images(rows, short_side):
    from PIL import Image
    out = []
    for path, label in rows:
        image = Image.open(path).convert("RGB")
        w, h = image.size
        scale = short_side / min(w, h)
        if scale < 1:
            image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
        out.append((image, label))
    return out


def macro_f1(truth, predicted, n):
    f1s = []
    for c in range(n):
        tp = sum(1 for t, p in zip(truth, predicted) if t == c and p == c)
        fp = sum(1 for t, p in zip(truth, predicted) if t != c and p == c)
        fn = sum(1 for t, p in zip(truth, predicted) if t == c and p != c)
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / n


def run_reference(args, split_tsv, root, seed):
    import torch
    from torch import nn
    from torchvision import transforms
    from efficientnet_lite_pytorch import EfficientNet

    torch.set_num_threads(args.threads)
    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # as petal's device = "auto"
    start = time.monotonic()
    rows, classes = read_split(split_tsv, root)
    index = {name: i for i, name in enumerate(classes)}
    short = round(args.size * 256 / 224)  # petal's evaluation resize (146 for 128 px)
    data = {part: load_images(items, short) for part, items in rows.items()}
    norm = transforms.Normalize([0.5] * 3, [0.5] * 3)
    train_tf = transforms.Compose([
        transforms.RandomResizedCrop(args.size, scale=(0.3, 1.0), ratio=(1.0, 1.0)),
        transforms.RandomHorizontalFlip(),
        transforms.RandomRotation(15),
        transforms.ColorJitter(0.2, 0.2, 0.2),
        transforms.ToTensor(), norm])
    eval_tf = transforms.Compose([transforms.Resize(short), transforms.CenterCrop(args.size), transforms.ToTensor(), norm])

    def tensors(part, tf):
        xs = torch.stack([tf(image) for image, _ in data[part]])
        ys = torch.tensor([index[label] for _, label in data[part]])
        return xs, ys

    val_x, val_y = tensors("val", eval_tf)
    test_x, test_y = tensors("test", eval_tf)
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=args.weights, num_classes=len(classes)).to(device)
    batch = 64
    steps_per_epoch = math.ceil(len(data["train"]) / batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=args.epochs * steps_per_epoch,
                                                   pct_start=0.15, anneal_strategy="cos")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)

    def predict(xs):
        model.eval()
        with torch.no_grad():
            return torch.cat([model(xs[i:i + 128].to(device)).argmax(1).cpu() for i in range(0, len(xs), 128)])

    best = (-1.0, None)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(data["train"])).tolist()
        for b in range(steps_per_epoch):
            chosen = order[b * batch:(b + 1) * batch]
            xs = torch.stack([train_tf(data["train"][i][0]) for i in chosen])
            ys = torch.tensor([index[data["train"][i][1]] for i in chosen])
            optimizer.zero_grad()
            loss_fn(model(xs.to(device)), ys.to(device)).backward()
            optimizer.step()
            schedule.step()
        val_accuracy = (predict(val_x) == val_y).float().mean().item()
        print(f"  reference seed {seed} epoch {epoch + 1}: val accuracy {val_accuracy:.4f}", flush=True)
        if val_accuracy > best[0]:
            best = (val_accuracy, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[1])  # the clones stay on the device
    predicted = predict(test_x)
    accuracy = (predicted == test_y).float().mean().item()
    f1 = macro_f1(test_y.tolist(), predicted.tolist(), len(classes))
    return {"accuracy": accuracy, "f1": f1, "seconds": time.monotonic() - start}


# ---- the table ----

def summary(values):
    mean = statistics.mean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {spread:.4f}"


def print_table(results):
    print("\n| seed | side | test accuracy | macro-F1 | wall |")
    print("| --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['seed']} | {r['side']} | {r['accuracy']:.4f} | {r['f1']:.4f} | {r['seconds'] / 60:.1f} min |")
    sides = sorted({r["side"] for r in results})
    for side in sides:
        mine = [r for r in results if r["side"] == side]
        print(f"| mean ± sd | {side} | {summary([r['accuracy'] for r in mine])} | {summary([r['f1'] for r in mine])} | "
              f"{statistics.mean(r['seconds'] for r in mine) / 60:.1f} min |")
    if len(sides) == 2:
        petal = statistics.mean(r["accuracy"] for r in results if r["side"] == "petal")
        ref = statistics.mean(r["accuracy"] for r in results if r["side"] == "pytorch")
        print(f"\npetal / PyTorch test accuracy: {petal / ref:.3f} (goal: >= 1.0)")


def main():
    args = parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    results = []
    if args.reference_only:
        if not args.split_tsv or not args.root:
            sys.exit("accuracy_reference: --reference-only needs --split-tsv and --root")
        for seed in seeds:
            results.append({"seed": seed, "side": "pytorch", **run_reference(args, args.split_tsv, args.root, seed)})
    else:
        with tempfile.TemporaryDirectory(prefix="petal-accuracy-") as state:
            for seed in seeds:
                petal = run_petal(args, seed, state)
                print(f"seed {seed}: petal test accuracy {petal['accuracy']:.4f} in {petal['seconds'] / 60:.1f} min",
                      flush=True)
                results.append({"seed": seed, "side": "petal", "accuracy": petal["accuracy"], "f1": petal["f1"],
                                "seconds": petal["seconds"]})
                ref = run_reference(args, petal["split_tsv"], petal["root"], seed)
                results.append({"seed": seed, "side": "pytorch", **ref})
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
