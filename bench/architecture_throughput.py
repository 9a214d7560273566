#!/usr/bin/env python3
"""Per-architecture throughput: petal's zoo (C++ LibTorch) vs PyTorch eager (torchvision 0.14).

For each architecture, on one pre-loaded random batch, side by side in one run:

  forward   images/s of eval-mode forward passes under no_grad
  train     images/s of full-network training steps (forward, cross-entropy, backward, SGD with
            momentum 0.9); inception_v3 adds its auxiliary classifier's loss x 0.4 on both sides

Both sides use the same architecture definition (petal's zoo vs torchvision's; head Linear(., 5)),
input size, batch, optimizer and intra-op threads (interop 1). Sides run one after another, never
sharing the cores; --rounds repeats the interleaved sequence and reports the median. Peak memory
is each process's largest proportional set size (see train_throughput.py's measure()).

Sizes: 224 px, except inception_v3 at 299 px (its native size; torchvision's auxiliary classifier,
like petal's, cannot train on smaller inputs).

Usage:
  python3 bench/architecture_throughput.py [--models convnext_tiny,vit_b_16,maxvit_t,inception_v3]
      [--size 224] [--batch 8] [--threads 2] [--steps 3] [--warmup 1] [--rounds 1] [--no-build]

Prints the table; exit status 0 (this benchmark reports, it has no goal), 2 when it could not run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loader_throughput import BUILD, REPO, build  # noqa: E402
from train_throughput import measure  # noqa: E402

NATIVE_SIZE = {"inception_v3": 299}
MODES = ("forward", "train")


def torchvision_model(name: str):
    import torchvision
    if name == "inception_v3":
        return torchvision.models.inception_v3(num_classes=5, aux_logits=True, init_weights=False)
    return getattr(torchvision.models, name)(num_classes=5)


def python_side(args: argparse.Namespace) -> None:
    """Runs in its own process; prints one JSON line."""
    import torch
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    model = torchvision_model(args.model)
    x = torch.randn(args.batch, 3, args.size, args.size)
    images, value = 0, 0.0
    if args.mode == "forward":
        model.eval()
        with torch.no_grad():
            for _ in range(args.warmup):
                model(x)
            start = time.perf_counter()
            for _ in range(args.steps):
                value = float(model(x).sum())
                images += args.batch
            seconds = time.perf_counter() - start
    else:
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        y = torch.randint(0, 5, (args.batch,))

        def step():
            optimizer.zero_grad()
            output = model(x)
            if isinstance(output, tuple):  # inception_v3: (logits, aux_logits)
                loss = torch.nn.functional.cross_entropy(output[0], y) + 0.4 * torch.nn.functional.cross_entropy(output[1], y)
            else:
                loss = torch.nn.functional.cross_entropy(output, y)
            loss.backward()
            optimizer.step()
            return float(loss)

        for _ in range(args.warmup):
            step()
        start = time.perf_counter()
        for _ in range(args.steps):
            value = step()
            images += args.batch
        seconds = time.perf_counter() - start
    print(json.dumps({"side": "python", "model": args.model, "mode": args.mode, "images": images, "seconds": seconds,
                      "images_per_second": images / seconds, "loss": value, "torch": torch.__version__}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="convnext_tiny,vit_b_16,maxvit_t,inception_v3")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--side", choices=["python"])
    parser.add_argument("--model")
    parser.add_argument("--mode", choices=MODES)
    args = parser.parse_args()
    if args.side == "python":
        python_side(args)
        return 0

    build(args.no_build, ("petal_bench_train",))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PETAL_TRACKING="off")
    python = str(REPO / ".venv" / "bin" / "python")
    if not Path(python).exists():
        python = sys.executable
    models = args.models.split(",")
    results: dict[tuple[str, str, str], list[dict]] = {}
    for round_number in range(args.rounds):
        for model in models:
            size = NATIVE_SIZE.get(model, args.size)
            for mode in MODES:
                common = ["--model", model, "--size", str(size), "--batch", str(args.batch), "--steps", str(args.steps),
                          "--warmup", str(args.warmup), "--threads", str(args.threads)]
                petal_argv = [str(BUILD / "petal_bench_train"), *common, "--mode", "compute" if mode == "train" else mode]
                python_argv = [python, __file__, "--side", "python", *common, "--mode", mode]
                for side, argv in (("petal", petal_argv), ("python", python_argv)):
                    print(f"  round {round_number + 1}: {model} {mode} {side} ...", flush=True)
                    result = measure(argv, env)
                    print(f"    {result['images_per_second']:.2f} images/s, peak {result['peak_pss_mb']:.0f} MB", flush=True)
                    results.setdefault((model, mode, side), []).append(result)

    versions = sorted({r[0]["torch"] for r in results.values()})
    print()
    print(f"architecture throughput, batch {args.batch}, {args.threads} intra-op threads, {args.steps} timed steps "
          f"after {args.warmup} warm-up; median of {args.rounds} round(s); torch {', '.join(versions)}")
    print(f"{'model':<14} {'px':>4} {'mode':<8} {'petal img/s':>12} {'PyTorch img/s':>14} {'ratio':>7} "
          f"{'petal MB':>9} {'PyTorch MB':>11}")
    for model in models:
        for mode in MODES:
            ours = statistics.median(r["images_per_second"] for r in results[(model, mode, "petal")])
            theirs = statistics.median(r["images_per_second"] for r in results[(model, mode, "python")])
            our_mb = max(r["peak_pss_mb"] for r in results[(model, mode, "petal")])
            their_mb = max(r["peak_pss_mb"] for r in results[(model, mode, "python")])
            print(f"{model:<14} {NATIVE_SIZE.get(model, args.size):>4} {mode:<8} {ours:>12.2f} {theirs:>14.2f} "
                  f"{ours / theirs:>6.2f}x {our_mb:>9.0f} {their_mb:>11.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
