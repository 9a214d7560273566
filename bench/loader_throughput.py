#!/usr/bin/env python3
"""Loader benchmark: petal's BatchLoader vs torchvision's DataLoader, and decode-only throughput.

One command builds what it needs, prepares the data with petal itself, and prints one table:

  1. Preparation: `petal run` on a temp experiment (download: flowers5, split, augment with the
     chosen policy), which decodes every image once into the augment stage's memory-mapped cache.
  2. Loader throughput, images/s delivered as normalised float batches (N, 3, 224, 224) of the
     training split (the same files on both sides), same batch size and number of workers:
       petal        petal_bench_loader: BatchLoader over the augment stage's cache (threads)
       torchvision  DataLoader(num_workers=W, persistent_workers) over the same JPEG files, PIL
                    decoding, and the equivalent torchvision pipeline built from the same policy
                    (RandomResizedCrop, RandomHorizontalFlip, RandomApply([RandomRotation]),
                    RandomApply([ColorJitter(...)]) per colour op, GaussianBlur, ToTensor,
                    Normalize, RandomErasing)
     plus the peak resident memory of each side: petal's one process (VmHWM, which includes the
     mapped cache and LibTorch's libraries), torchvision's main process + every worker process.
  3. Decode-only throughput on one core (the process pinned to CPU 0): petal's decode path (the
     augment stage's read + decode_image: DCT-scaled JPEG decoding, resize only if larger than the
     cache's short side, BGR->RGB) vs OpenCV's cv::imread, both in petal_bench_loader over every
     image of the split; also Python's cv2.imdecode when cv2 is importable.

Usage:
  python3 bench/loader_throughput.py [--workers 2] [--batch 64] [--epochs 3] [--warmup-epochs 1]
                                     [--rounds 2] [--policy medium] [--datasets DIR] [--no-build] [--keep]

Exit status: 0 when both goals pass (petal >= 2x torchvision images/s; petal's decode >= 80% of
OpenCV's on one core), 1 when one fails, 2 when the benchmark could not run.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("PETAL_BUILD_DIR", REPO / "build"))  # another build tree, e.g. against a CUDA LibTorch
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
GOAL_SPEEDUP = 2.0
GOAL_DECODE_FRACTION = 0.8


def fail(message: str) -> "NoReturn":  # noqa: F821
    print(f"loader_throughput: error: {message}", file=sys.stderr)
    sys.exit(2)


def run_checked(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        fail(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def run_json(argv: list[str]) -> dict:
    """Runs argv, which prints one JSON line as its result; returns it."""
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        fail(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        fail(f"{' '.join(argv)} printed no result:\n{result.stdout}\n{result.stderr}")
    return json.loads(lines[-1])


def status_kb(pid: int | str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------------------------- torchvision

class AddNoise:
    """petal's noise op in normalised units: sigma * 255 on uint8 values is sigma / std here."""

    def __init__(self, magnitude: float, std: list[float]):
        self.magnitude, self.std = magnitude, std

    def __call__(self, x):
        import random
        import torch
        sigma = random.uniform(0, self.magnitude)
        return x + torch.randn_like(x) * torch.tensor(self.std).view(3, 1, 1).reciprocal() * sigma


def torchvision_pipeline(settings: dict):
    """The torchvision transforms equivalent to a petal policy (same op order and parameters)."""
    import torchvision.transforms as T
    ops = settings["policy"]["ops"]
    size, resize = settings["image_size"], settings["eval_resize"]
    p = lambda name: ops[name]["probability"]  # noqa: E731
    m = lambda name: ops[name].get("magnitude", 0)  # noqa: E731
    left_out = []
    steps = []
    if p("crop") >= 1:
        steps.append(T.RandomResizedCrop(size, scale=(m("crop"), 1.0), ratio=(3 / 4, 4 / 3)))
    elif p("crop") > 0:
        steps.append(T.RandomChoice([T.RandomResizedCrop(size, scale=(m("crop"), 1.0)),
                                     T.Compose([T.Resize(resize), T.CenterCrop(size)])], p=[p("crop"), 1 - p("crop")]))
    else:
        steps += [T.Resize(resize), T.CenterCrop(size)]
    if p("hflip") > 0:
        steps.append(T.RandomHorizontalFlip(p("hflip")))
    if p("vflip") > 0:
        steps.append(T.RandomVerticalFlip(p("vflip")))
    if p("rotate") > 0:
        steps.append(T.RandomApply([T.RandomRotation(m("rotate"))], p("rotate")))
    if p("translate") > 0:
        steps.append(T.RandomApply([T.RandomAffine(0, translate=(m("translate"), m("translate")))], p("translate")))
    if p("scale") > 0:
        steps.append(T.RandomApply([T.RandomAffine(0, scale=(1 - m("scale"), 1 + m("scale")))], p("scale")))
    # No equivalent: torchvision has no optical distortion, and its ElasticTransform (a full-size
    # random field smoothed by a Gaussian of sigma ~ size/12) is a different, ~100x costlier
    # algorithm than petal's (a 6x6 grid interpolated bicubically). Leaving them out makes the
    # torchvision side do less work, never more.
    for name in ("elastic", "optical"):
        if p(name) > 0:
            left_out.append(name)
    for name in ("brightness", "contrast", "saturation"):
        if p(name) > 0:
            steps.append(T.RandomApply([T.ColorJitter(**{name: m(name)})], p(name)))
    if p("hue") > 0:
        steps.append(T.RandomApply([T.ColorJitter(hue=m("hue"))], p("hue")))
    if p("blur") > 0:
        kernel = 2 * math.ceil(3 * m("blur")) + 1
        steps.append(T.RandomApply([T.GaussianBlur(kernel, sigma=(0.1, m("blur")))], p("blur")))
    # augment.json no longer records a mean/std (the train stage picks them per architecture);
    # the benchmarks' resnet18 and mobilenet_v2 take ImageNet's statistics.
    mean, std = settings.get("mean", IMAGENET_MEAN), settings.get("std", IMAGENET_STD)
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    if p("noise") > 0:
        steps.append(T.RandomApply([AddNoise(m("noise"), std)], p("noise")))
    if p("erase") > 0:
        steps.append(T.RandomErasing(p("erase"), scale=(0.02, m("erase")), ratio=(0.3, 3.3), value=0))
    return T.Compose(steps), left_out


def torchvision_side(args: argparse.Namespace) -> None:
    """Runs in its own process; prints one JSON line."""
    import torch
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    torch.set_num_threads(1)  # the main process only receives batches; the workers use 1 thread each
    data = Path(args.data)
    settings = json.loads((data / "augment.json").read_text())
    root = Path(args.root)
    files = []
    lines = (data / "index.tsv").read_text().splitlines()[1:]
    for line in lines:
        _, _, _, label, split, path = line.split("\t", 5)
        if split == "train":
            files.append((str(root / path), int(label)))
    transform, left_out = torchvision_pipeline(settings)

    class Files(Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            path, label = files[i]
            with Image.open(path) as image:
                return transform(image.convert("RGB")), label

    loader = DataLoader(Files(), batch_size=args.batch, shuffle=True, num_workers=args.workers,
                        persistent_workers=args.workers > 0, generator=torch.Generator().manual_seed(0))
    for _ in range(args.warmup_epochs):
        for _ in loader:
            pass
    images = batches = 0
    checksum = 0.0
    start = time.perf_counter()
    for _ in range(args.epochs):
        for x, y in loader:
            images += x.shape[0]
            batches += 1
            checksum += float(x[0, 0, 0, 0])
    seconds = time.perf_counter() - start
    shape = list(x.shape)
    iterator = getattr(loader, "_iterator", None)
    worker_pids = [w.pid for w in getattr(iterator, "_workers", [])]
    worker_hwm = [status_kb(pid, "VmHWM") for pid in worker_pids]
    print(json.dumps({"side": "torchvision", "images": images, "batches": batches, "seconds": seconds,
                      "images_per_second": images / seconds, "shape": shape, "dtype": str(x.dtype),
                      "main_hwm_kb": status_kb("self", "VmHWM"), "worker_hwm_kb": worker_hwm,
                      "left_out": left_out, "checksum": checksum}), flush=True)


# ---------------------------------------------------------------------------------- preparation

def build(no_build: bool, targets: tuple[str, ...] = ("petal", "petal-data-worker", "petal_bench_loader")) -> None:
    if no_build:
        return
    print(f"building {', '.join(targets)} ...", flush=True)
    result = subprocess.run(["ninja", "-C", str(BUILD), *targets], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    if result.returncode != 0:
        fail(f"ninja failed:\n{result.stdout[-4000:]}")


def prepare(work: Path, dataset: Path, policy: str, image_size: int = 224) -> tuple[Path, dict]:
    """Runs petal's download, split and augment stages; returns (augment output folder, facts)."""
    experiment = work / "loader_bench.toml"
    experiment.write_text(f'name = "loader-bench"\n[tracking]\nenabled = false\n'
                          f'[download]\nsource = "local"\npath = "{dataset}"\n'
                          f'[split]\n[augment]\npolicy = "{policy}"\nimage_size = {image_size}\n')
    state = work / "state"
    env = dict(os.environ, PETAL_TRACKING="off")
    petal = str(BUILD / "petal")
    start = time.perf_counter()
    output = run_checked([petal, "--state-dir", str(state), "run", str(experiment)], cwd=work, env=env)
    wall = time.perf_counter() - start
    status = json.loads(run_checked([petal, "--state-dir", str(state), "status", str(experiment), "--json"], cwd=work,
                                    env=env))
    key = next(s["key"] for s in status["stages"] if s["stage"] == "augment")
    out = state / "cache" / "entries" / key[:2] / key / "out"
    if not (out / "cache.json").exists():
        found = list(state.glob(f"**/{key}/**/cache.json"))
        if not found:
            fail(f"cannot find the augment stage's output for key {key} under {state}")
        out = found[0].parent
    facts = {"pipeline_seconds": wall}
    match = re.search(r"(\d+) images decoded into a ([\d.]+) MB cache .* in ([\d.]+) s on (\d+) threads", output)
    if match:
        facts.update(stage_images=int(match[1]), cache_mb=float(match[2]), stage_decode_s=float(match[3]),
                     stage_threads=int(match[4]))
    return out, facts


def python_cv2_decode() -> str | None:
    """A Python cv2.imdecode loop on one core (run with the file list), if cv2 is importable."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        return None
    code = ("import cv2, numpy, os, sys, time, json\n"
            "os.sched_setaffinity(0, {0}); cv2.setNumThreads(1)\n"
            "files = open(sys.argv[1]).read().split()\n"
            "best = 1e30\n"
            "for _ in range(3):\n"
            "    t = time.perf_counter()\n"
            "    for f in files:\n"
            "        cv2.imdecode(numpy.fromfile(f, numpy.uint8), cv2.IMREAD_COLOR)\n"
            "    best = min(best, time.perf_counter() - t)\n"
            "print(json.dumps({'side': 'cv2', 'images': len(files), 'seconds': best,"
            " 'images_per_second': len(files) / best}))\n")
    return code


# ---------------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="loader workers on both sides (default 2)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per run")
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="runs per side, alternating; the median is reported")
    parser.add_argument("--policy", default="medium", choices=["none", "light", "medium", "deep"])
    parser.add_argument("--datasets", default=os.environ.get("PETAL_DATASETS", str(REPO.parent / "shared" / "datasets")))
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument("--torchvision-side", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()

    try:
        import torchvision  # noqa: F401
    except ImportError:
        venv_python = REPO / ".venv" / "bin" / "python"
        if venv_python.exists() and Path(sys.executable).resolve() != venv_python.resolve():
            os.execv(str(venv_python), [str(venv_python), *sys.argv])
        fail("torchvision is not importable (and .venv/bin/python was not found)")

    if args.torchvision_side:
        torchvision_side(args)
        return 0

    dataset = Path(args.datasets) / "flowers5"
    if not dataset.is_dir():
        fail(f"{dataset} not found (set --datasets or $PETAL_DATASETS)")
    build(args.no_build)
    bench = BUILD / "petal_bench_loader"
    work = Path(tempfile.mkdtemp(prefix="petal-loader-bench-"))
    try:
        print(f"preparing: petal run (download, split, augment policy={args.policy}) in {work} ...", flush=True)
        data, facts = prepare(work, dataset, args.policy)
        print(f"  pipeline {facts['pipeline_seconds']:.1f} s; augment decoded {facts.get('stage_images', '?')} images "
              f"into {facts.get('cache_mb', '?')} MB in {facts.get('stage_decode_s', '?')} s on "
              f"{facts.get('stage_threads', '?')} threads", flush=True)

        common = ["--workers", str(args.workers), "--batch", str(args.batch), "--epochs", str(args.epochs),
                  "--warmup-epochs", str(args.warmup_epochs)]
        petal_runs, torch_runs = [], []
        for r in range(args.rounds):
            for side in (("petal", "torchvision") if r % 2 == 0 else ("torchvision", "petal")):
                print(f"  round {r + 1}/{args.rounds}: {side} ...", flush=True)
                if side == "petal":
                    result = run_json([str(bench), "load", str(data), *common])
                    result["peak_kb"] = result["memory_kb"]["VmHWM"]
                    petal_runs.append(result)
                else:
                    result = run_json([sys.executable, __file__, "--torchvision-side", "--data", str(data),
                                              "--root", str(dataset), *common])
                    result["peak_kb"] = result["main_hwm_kb"] + sum(result["worker_hwm_kb"])
                    torch_runs.append(result)

        files = work / "files.txt"
        rows = (data / "index.tsv").read_text().splitlines()[1:]
        paths = [str(dataset / row.split("\t", 5)[5]) for row in rows]
        files.write_text("\n".join(paths) + "\n")
        decode = {"petal": [], "opencv": []}
        for r in range(2):
            for mode in (("petal", "opencv") if r % 2 == 0 else ("opencv", "petal")):
                print(f"  decode {mode} (one core) ...", flush=True)
                result = run_json([str(bench), "decode", str(files), "--mode", mode, "--rounds", "3"])
                decode[mode].append(result["images_per_second"])
        cv2_code = python_cv2_decode()
        cv2_rate = None
        if cv2_code:
            result = run_json([sys.executable, "-c", cv2_code, str(files)])
            cv2_rate = result["images_per_second"]

        # ------------------------------------------------------------------ report
        median = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
        p_rate, t_rate = median(petal_runs, "images_per_second"), median(torch_runs, "images_per_second")
        p_mem, t_mem = max(r["peak_kb"] for r in petal_runs), max(r["peak_kb"] for r in torch_runs)
        t_last = torch_runs[-1]
        p_last = petal_runs[-1]
        speedup = p_rate / t_rate
        d_petal, d_cv = max(decode["petal"]), max(decode["opencv"])
        fraction = d_petal / d_cv
        samples = p_last["samples_per_epoch"]
        print()
        print(f"Loader throughput: policy {args.policy}, {samples} training images of flowers5 per epoch, "
              f"batches of {args.batch} x 3 x 224 x 224 float32, {args.workers} workers each, "
              f"{args.epochs} timed epochs after {args.warmup_epochs} warm-up, median of {args.rounds} runs "
              f"({os.cpu_count()} CPUs)")
        print(f"{'side':<40} {'images/s':>10} {'ratio':>7} {'peak RSS MB':>12}")
        print(f"{'petal BatchLoader (threads, mmap cache)':<40} {p_rate:>10.0f} {speedup:>6.2f}x {p_mem / 1024:>12.0f}")
        workers_mb = " + ".join(f"{kb / 1024:.0f}" for kb in t_last["worker_hwm_kb"])
        print(f"{'torchvision DataLoader (processes, PIL)':<40} {t_rate:>10.0f} {1:>6.2f}x {t_mem / 1024:>12.0f}"
              f"   (main {t_last['main_hwm_kb'] / 1024:.0f} + workers {workers_mb})")
        print(f"  petal's peak includes the mapped cache and LibTorch's pages; its anonymous memory at the end: "
              f"{p_last['memory_kb']['RssAnon'] / 1024:.0f} MB (prefetch {p_last['prefetch']} batches, "
              f"peak in flight {p_last['peak_in_flight']})")
        if t_last["left_out"]:
            print(f"  ops without a torchvision equivalent, left out of its pipeline: {', '.join(t_last['left_out'])}")
        print()
        print(f"Decode only, one core (CPU 0), {len(paths)} JPEGs, best of 3 passes, best of 2 runs")
        print(f"{'decoder':<40} {'images/s':>10} {'ratio':>7}")
        print(f"{'petal decode path (read, decode, RGB)':<40} {d_petal:>10.0f} {fraction:>6.2f}x")
        print(f"{'OpenCV cv::imread (C++)':<40} {d_cv:>10.0f} {1:>6.2f}x")
        if cv2_rate:
            print(f"{'OpenCV cv2.imdecode (Python)':<40} {cv2_rate:>10.0f} {cv2_rate / d_cv:>6.2f}x")
        else:
            print("  (cv2 is not importable here: the C++ cv::imread loop is the reference)")
        if "stage_decode_s" in facts:
            print(f"  the augment stage itself: {facts['stage_images']} images in {facts['stage_decode_s']:.2f} s on "
                  f"{facts['stage_threads']} threads = {facts['stage_images'] / facts['stage_decode_s']:.0f} images/s "
                  f"(read, decode, write the {facts['cache_mb']:.0f} MB cache)")
        print()
        goals = [(f"petal loader >= {GOAL_SPEEDUP:.0f}x torchvision images/s", speedup >= GOAL_SPEEDUP, f"{speedup:.2f}x"),
                 (f"petal decode >= {GOAL_DECODE_FRACTION:.0%} of OpenCV on one core", fraction >= GOAL_DECODE_FRACTION,
                  f"{fraction:.0%}")]
        for text, ok, value in goals:
            print(f"{'PASS' if ok else 'FAIL'}  {text} ({value})")
        return 0 if all(ok for _, ok, _ in goals) else 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            import shutil
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
