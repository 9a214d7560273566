#!/usr/bin/env python3
"""Data-parallel training benchmark: `petal run --nproc 2` (two processes, c10d Gloo over
loopback, each with half of every global batch and one intra-op thread) against one process with
two intra-op threads, on the same machine, data and global batch, measured side by side.

For each model it trains one epoch (or --epochs) of flowers5's train split with the `medium`
augmentation at --size px, from scratch, and reads petal's own numbers: the training phase's
images/s (history.csv, over all ranks) and the train stage's wall time. The data stages run once
into a shared state dir first (so each timed run only trains); runs alternate 1, 2, 1, 2... over
--rounds and the table shows the medians, with the ratio of 2 processes to 1.

  python3 bench/data_parallel_throughput.py [--models small_cnn,resnet18] [--size 128] [--batch 32]
                                            [--epochs 1] [--rounds 1] [--datasets DIR]

Exit status 0 after printing the table, 2 when the benchmark could not run. There is no goal: on
a 2-core machine the interesting number is what the all-reduce costs against one process that
already uses both cores; across hosts the same launch adds hosts' cores.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PETAL = REPO / "build" / "petal"

EXPERIMENT = """name = "dp-bench"
[download]
source = "local"
path = "{data}"
[split]
ratios = [0.7, 0.15, 0.15]
seed = 42
[augment]
policy = "medium"
image_size = {size}
[train]
model = "{model}"
weights = "none"
freeze_backbone = false
augment = true
epochs = {epochs}
batch_size = {batch}
optimizer = "sgd"
lr = 0.01
seed = {seed}
"""


def fail(message: str) -> None:
    print(f"data_parallel_throughput: {message}", file=sys.stderr)
    sys.exit(2)


def newest_train_output(state: Path, seed: int, model: str) -> Path:
    for manifest in sorted(state.glob("cache/entries/*/*/manifest.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        if json.loads(manifest.read_text()).get("stage") == "train":
            return manifest.parent / "out"
    fail(f"no train output in {state}")


def run(work: Path, state: Path, model: str, args, nproc: int, seed: int) -> dict:
    exp = work / f"{model}.toml"
    exp.write_text(EXPERIMENT.format(data=args.datasets / "flowers5", size=args.size, model=model, epochs=args.epochs,
                                     batch=args.batch, seed=seed))
    env = dict(os.environ, PETAL_TRACKING="off", PETAL_THREADS="2")
    start = time.monotonic()
    proc = subprocess.run([str(PETAL), "--state-dir", str(state), "run", str(exp), "--nproc", str(nproc)],
                          cwd=work, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        fail(f"petal run --nproc {nproc} failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    out = newest_train_output(state, seed, model)
    rows = list(csv.DictReader(open(out / "history.csv")))
    training = json.loads((out / "training.json").read_text())
    return {"images_per_second": statistics.mean(float(r["images_per_second"]) for r in rows),
            "train_seconds": training["seconds"], "wall": wall,
            "world_size": training["data_parallel"]["world_size"], "train_accuracy": float(rows[-1]["train_accuracy"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="small_cnn,resnet18")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--datasets", type=Path,
                        default=Path(os.environ.get("PETAL_DATASETS", REPO.parent / "shared" / "datasets")))
    args = parser.parse_args()
    if not PETAL.exists():
        fail("build petal first: scripts/setup.sh")
    if not (args.datasets / "flowers5").is_dir():
        fail(f"{args.datasets / 'flowers5'} not found (--datasets DIR)")
    results: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="petal-dp-bench-") as tmp:
        work = Path(tmp)
        state = work / "state"
        seed = 0
        for model in args.models.split(","):
            for _ in range(args.rounds):
                for nproc in (1, 2):
                    seed += 1  # a new train key each time: nothing is cached, the data stages are
                    results.setdefault((model, nproc), []).append(run(work, state, model, args, nproc, seed))
                    r = results[(model, nproc)][-1]
                    print(f"  {model} --nproc {nproc}: {r['images_per_second']:.1f} img/s, train stage {r['train_seconds']:.1f} s",
                          flush=True)
    print(f"\nflowers5 train split, medium augmentation, {args.size} px, global batch {args.batch}, "
          f"{args.epochs} epoch(s), {os.cpu_count()} cores, median of {args.rounds} round(s)")
    print(f"{'model':<12} {'processes':>9} {'threads each':>12} {'img/s':>8} {'train stage s':>13} {'vs 1 process':>12}")
    for model in args.models.split(","):
        base = statistics.median(r["images_per_second"] for r in results[(model, 1)])
        for nproc in (1, 2):
            ips = statistics.median(r["images_per_second"] for r in results[(model, nproc)])
            secs = statistics.median(r["train_seconds"] for r in results[(model, nproc)])
            print(f"{model:<12} {nproc:>9} {2 // nproc:>12} {ips:>8.1f} {secs:>13.1f} {ips / base:>11.2f}x")


if __name__ == "__main__":
    main()
