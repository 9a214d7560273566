#!/usr/bin/env python3
"""Training benchmark: petal (C++ LibTorch, its model zoo and loader) vs PyTorch eager (torchvision).

The same training on both sides: the same architecture (petal's zoo vs torchvision's definition,
5-class linear head), input size, batch, optimizer (SGD, momentum 0.9, lr 0.01), every parameter
trained, intra-op threads, and data. One command prints one table:

  compute   images/s of training steps on one pre-loaded random batch (forward, cross-entropy,
            backward, optimizer step), after warm-up steps
  epoch     images/s of one training epoch of flowers5's train split with the `medium`
            augmentation, loading included: petal's BatchLoader over the augment stage's cache
            (decoded once by `petal run`, which is timed separately as "preparation") with W loader
            threads; PyTorch's DataLoader(num_workers=W) decoding the same JPEG files with PIL and
            the equivalent torchvision transforms (see loader_throughput.py)
  peak MB   the largest proportional set size (PSS) of each run's whole process tree (main process
            plus DataLoader workers), sampled every 50 ms: shared pages are counted once

Sides run one after another (petal, then Python, per model and mode) so they never share the
cores; --rounds repeats the interleaved sequence and reports the median.

Usage:
  python3 bench/train_throughput.py [--models resnet18,mobilenet_v2] [--size 128] [--batch 32]
                                    [--threads 2] [--workers 2] [--steps 20] [--max-batches 0]
                                    [--rounds 1] [--datasets DIR] [--no-build] [--keep]
                                    [--device cpu|cuda] [--channels-last] [--amp] [--amp-dtype fp16|bf16]
  PETAL_BUILD_DIR=build-cuda picks another build tree (e.g. one against a CUDA LibTorch).

Exit status: 0 when the goals pass (compute >= 1.0x, epoch >= 1.3x, petal's peak memory <= the
Python side's, for every model), 1 when one fails, 2 when the benchmark could not run.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loader_throughput import BUILD, REPO, build, fail, prepare, torchvision_pipeline  # noqa: E402

GOAL_COMPUTE, GOAL_EPOCH = 1.0, 1.3


# ------------------------------------------------------------------------------ the Python side

def python_side(args: argparse.Namespace) -> None:
    """Runs in its own process; prints one JSON line."""
    import torch
    import torchvision
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    device = torch.device(args.device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    amp = args.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if args.amp_dtype == "bf16" else torch.float16
    model = getattr(torchvision.models, args.model)(num_classes=5).to(device, memory_format=memory_format)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    # torch.amp.GradScaler is 2.3+; torch.cuda.amp.GradScaler is the same class before that.
    # bfloat16 needs no loss scaling (float32's exponent range).
    scaling = amp and amp_dtype == torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=scaling) if hasattr(torch.amp, "GradScaler") else \
        torch.cuda.amp.GradScaler(enabled=scaling)

    def step(x, y):
        x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        y = y.to(device, non_blocking=True)
        optimizer.zero_grad()
        with torch.autocast(device.type, dtype=amp_dtype) if amp else contextlib.nullcontext():
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return float(loss)

    images, loss = 0, 0.0
    if args.mode == "compute":
        x = torch.randn(args.batch, 3, args.size, args.size).to(device).contiguous(memory_format=memory_format)
        y = torch.randint(0, 5, (args.batch,)).to(device)
        for _ in range(args.warmup):
            step(x, y)
        start = time.perf_counter()
        for _ in range(args.steps):
            loss = step(x, y)
            images += args.batch
        seconds = time.perf_counter() - start
    else:
        data = Path(args.data)
        settings = json.loads((data / "augment.json").read_text())
        root = Path(args.root)
        files = []
        for line in (data / "index.tsv").read_text().splitlines()[1:]:
            _, _, _, label, split, path = line.split("\t", 5)
            if split == "train":
                files.append((str(root / path), int(label)))
        transform, _ = torchvision_pipeline(settings)

        class Files(Dataset):
            def __len__(self):
                return len(files)

            def __getitem__(self, i):
                path, label = files[i]
                with Image.open(path) as image:
                    return transform(image.convert("RGB")), label

        loader = DataLoader(Files(), batch_size=args.batch, shuffle=True, num_workers=args.workers,
                            generator=torch.Generator().manual_seed(0), pin_memory=device.type == "cuda")
        start = time.perf_counter()  # the epoch includes starting the workers and their first batches
        for number, (x, y) in enumerate(loader):
            loss = step(x, y)
            images += x.shape[0]
            if args.max_batches and number + 1 >= args.max_batches:
                break
        seconds = time.perf_counter() - start
    print(json.dumps({"side": "python", "model": args.model, "mode": args.mode, "images": images, "seconds": seconds,
                      "images_per_second": images / seconds, "loss": loss, "threads": args.threads,
                      "torch": torch.__version__, "device": args.device}), flush=True)


# ------------------------------------------------------------------------------ measurement

def tree_pss_kb(root_pid: int) -> int:
    """PSS of a process and all its descendants, in kB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    total, unvisited = 0, [root_pid]
    while unvisited:
        pid = unvisited.pop()
        unvisited += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total


def measure(argv: list[str], env: dict[str, str]) -> dict:
    """Runs argv (which prints one JSON line), sampling its process tree's PSS; returns the result."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0]

    def sample():
        while process.poll() is None:
            peak[0] = max(peak[0], tree_pss_kb(process.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    sampler.join()
    if process.returncode != 0:
        fail(f"{' '.join(argv)} exited {process.returncode}:\n{stdout}\n{stderr}")
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        fail(f"{' '.join(argv)} printed no result:\n{stdout}\n{stderr}")
    result = json.loads(lines[-1])
    result["peak_pss_mb"] = peak[0] / 1024
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet18,mobilenet_v2")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--max-batches", type=int, default=0, help="cut the epoch after N batches (0: whole epoch)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format (both sides)")
    parser.add_argument("--amp", action="store_true", help="CUDA: autocast (both sides), see --amp-dtype")
    parser.add_argument("--amp-dtype", choices=["fp16", "bf16"], default="fp16",
                        help="fp16: float16 with loss scaling; bf16: bfloat16, no scaling")
    parser.add_argument("--modes", default="compute,epoch", help="compute, epoch or both")
    parser.add_argument("--datasets", default=os.environ.get("PETAL_DATASETS", str(REPO.parent / "shared" / "datasets")))
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--json-out", help="also write the table's rows to this JSON file")
    parser.add_argument("--keep", action="store_true")
    # Internal: run one side.
    parser.add_argument("--side", choices=["python"])
    parser.add_argument("--model")
    parser.add_argument("--mode")
    parser.add_argument("--data")
    parser.add_argument("--root")
    args = parser.parse_args()
    if args.side == "python":
        python_side(args)
        return 0

    dataset = Path(args.datasets) / "flowers5"
    if not dataset.is_dir():
        fail(f"{dataset} not found (set --datasets or $PETAL_DATASETS)")
    build(args.no_build, ("petal", "petal-data-worker", "petal_bench_train"))
    work = Path(tempfile.mkdtemp(prefix="petal-train-bench-"))
    print(f"preparing: petal run (download, split, augment medium, {args.size} px) in {work} ...", flush=True)
    data, facts = prepare(work, dataset, "medium", args.size)
    print(f"  preparation (decode every image once into the cache) {facts['pipeline_seconds']:.1f} s", flush=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PETAL_TRACKING="off")
    python = str(REPO / ".venv" / "bin" / "python")
    if not Path(python).exists():
        python = sys.executable

    results: dict[tuple[str, str, str], list[dict]] = {}
    for round_number in range(args.rounds):
        for model in args.models.split(","):
            for mode in args.modes.split(","):
                common = ["--model", model, "--mode", mode, "--size", str(args.size), "--batch", str(args.batch),
                          "--threads", str(args.threads), "--steps", str(args.steps), "--warmup", str(args.warmup),
                          "--workers", str(args.workers), "--max-batches", str(args.max_batches),
                          "--device", args.device]
                extra_petal = ["--channels-last", str(int(args.channels_last)),
                               "--amp", args.amp_dtype if args.amp else "0"]
                extra_python = (["--channels-last"] if args.channels_last else []) + \
                    (["--amp", "--amp-dtype", args.amp_dtype] if args.amp else [])
                petal_argv = [str(BUILD / "petal_bench_train"), *common, *extra_petal, "--data", str(data)]
                python_argv = [python, __file__, "--side", "python", *common, *extra_python, "--data", str(data),
                               "--root", str(dataset)]
                for side, argv in (("petal", petal_argv), ("python", python_argv)):
                    print(f"  round {round_number + 1}: {model} {mode} {side} ...", flush=True)
                    result = measure(argv, env)
                    print(f"    {result['images_per_second']:.1f} images/s, peak {result['peak_pss_mb']:.0f} MB", flush=True)
                    results.setdefault((model, mode, side), []).append(result)

    torch_versions = {r[0]["torch"] for r in results.values()}
    print()
    device = args.device + (", channels-last" if args.channels_last else "") + \
        (f", {args.amp_dtype} autocast" if args.amp else "")
    print(f"training throughput on {device}, {args.size} px, batch {args.batch}, {args.threads} intra-op threads, "
          f"{args.workers} loader workers, SGD; median of {args.rounds} round(s); torch {', '.join(sorted(torch_versions))}")
    print(f"{'model':<14} {'mode':<8} {'petal img/s':>12} {'PyTorch img/s':>14} {'ratio':>7} {'goal':>6} "
          f"{'petal MB':>9} {'PyTorch MB':>11} {'MB ratio':>9}")
    passed, rows = True, []
    for model in args.models.split(","):
        for mode in args.modes.split(","):
            ours = statistics.median(r["images_per_second"] for r in results[(model, mode, "petal")])
            theirs = statistics.median(r["images_per_second"] for r in results[(model, mode, "python")])
            our_mb = max(r["peak_pss_mb"] for r in results[(model, mode, "petal")])
            their_mb = max(r["peak_pss_mb"] for r in results[(model, mode, "python")])
            goal = GOAL_COMPUTE if mode == "compute" else GOAL_EPOCH
            ok = ours / theirs >= goal and our_mb <= their_mb
            passed &= ok
            rows.append({"model": model, "mode": mode, "petal": ours, "pytorch": theirs, "ratio": ours / theirs,
                         "petal_mb": our_mb, "pytorch_mb": their_mb, "pass": ok})
            print(f"{model:<14} {mode:<8} {ours:>12.1f} {theirs:>14.1f} {ours / theirs:>6.2f}x {goal:>5.1f}x "
                  f"{our_mb:>9.0f} {their_mb:>11.0f} {our_mb / their_mb:>8.2f}x  {'pass' if ok else 'FAIL'}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"device": device, "rows": rows}, indent=1) + "\n")
    if not args.keep:
        subprocess.run(["rm", "-rf", str(work)])
    else:
        print(f"kept {work}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
