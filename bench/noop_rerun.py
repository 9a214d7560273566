#!/usr/bin/env python3
"""No-op re-run benchmark: `petal run` on a 7-stage pipeline whose stages are all cached.

Measures, per tool, the whole-process wall time (median and p90 of --runs runs after --warmup
warm-ups) and the peak resident memory of the process (ru_maxrss from os.wait4), for
  * petal: `petal --state-dir S run pipeline7.toml` - the real download stage on flowers5
    (4,317 photos), the real split stage, then 5 chained shell stages (augment, train, finetune,
    evaluate, register) writing small files;
  * DVC (the reference): `dvc repro` on the equivalent 7-stage dvc.yaml - the same flowers5 folder
    as the first stage's dependency, then 6 chained cmd stages.
Both pipelines are generated into a temp folder from the templates in bench/fixtures/, built once,
checked to be fully cached, then timed in alternating rounds so that drift hits both alike.

Usage:
  python3 bench/noop_rerun.py [--petal build/petal] [--runs 20] [--warmup 2]
                              [--datasets DIR] [--dvc PATH | --install-dvc | --no-dvc]

Exit status: 0 when petal meets its targets (median < 100 ms, peak RSS < 30 MB), 1 when it does
not, 2 when the benchmark could not run.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TARGET_WALL_MS = 100.0
TARGET_RSS_MB = 30.0
STAGES = ["download", "split", "augment", "train", "finetune", "evaluate", "register"]


def fail(message: str) -> "NoReturn":  # noqa: F821
    print(f"noop_rerun: error: {message}", file=sys.stderr)
    sys.exit(2)


def spawn_and_measure(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, int]:
    """Runs argv with stdout/stderr to /dev/null; returns (wall seconds, ru_maxrss KiB, exit code)."""
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    previous = os.getcwd()
    os.chdir(cwd)  # posix_spawn starts the child in our working folder
    try:
        start = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - start
    finally:
        os.chdir(previous)
    return wall, usage.ru_maxrss, os.waitstatus_to_exitcode(status)


def run_checked(argv: list[str], cwd: Path, env: dict[str, str], what: str) -> str:
    result = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        fail(f"{what} exited {result.returncode}:\n{result.stdout}")
    return result.stdout


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class Tool:
    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict[str, str]):
        self.name, self.argv, self.cwd, self.env = name, argv, cwd, env
        self.walls: list[float] = []
        self.rss_kib: list[int] = []
        self.note = ""

    def measure(self, keep: bool) -> None:
        wall, rss, code = spawn_and_measure(self.argv, self.cwd, self.env)
        if code != 0:
            fail(f"{' '.join(self.argv)} exited {code} during timing")
        if keep:
            self.walls.append(wall)
            self.rss_kib.append(rss)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.walls) * 1000

    @property
    def p90_ms(self) -> float:
        return percentile(self.walls, 0.9) * 1000

    @property
    def rss_mb(self) -> float:
        return max(self.rss_kib) * 1024 / 1e6


# ---------------------------------------------------------------------------------------------- petal

def setup_petal(petal: Path, dataset: Path, work: Path) -> Tool:
    folder = work / "petal"
    folder.mkdir()
    experiment = folder / "pipeline7.toml"
    experiment.write_text((FIXTURES / "pipeline7.toml").read_text().replace("@DATASET@", str(dataset)))
    state = folder / "state"
    env = dict(os.environ)
    env.pop("PETAL_HOME", None)
    argv = [str(petal), "--state-dir", str(state), "run", str(experiment)]

    start = time.perf_counter()
    output = run_checked(argv, folder, env, "the first petal run (building every stage)")
    print(f"petal: first run built the pipeline in {time.perf_counter() - start:.2f} s")
    if "7 stages" not in output:
        fail(f"expected a 7-stage petal experiment, got:\n{output}")
    output = run_checked(argv, folder, env, "the second petal run")
    if "7 stages (7 cached)" not in output or "0 ran, 7 cached" not in output:
        fail(f"petal's second run is not a no-op:\n{output}")
    return Tool("petal", argv, folder, env)


def check_petal_still_cached(tool: Tool) -> None:
    status = run_checked([tool.argv[0], "--state-dir", tool.argv[2], "status", tool.argv[4], "--json"], tool.cwd,
                         tool.env, "petal status")
    states = {s["stage"]: s["state"] for s in json.loads(status)["stages"]}
    if sorted(states) != sorted(STAGES) or set(states.values()) != {"cached"}:
        fail(f"after timing, petal status says {states}")
    # Every timed run must have found all 7 stages cached: read them back from the run log.
    runs: dict[str, list[str]] = {}
    lines = (Path(tool.argv[2]) / "runs.log").read_text().splitlines()
    for line in lines[1:]:
        record = json.loads(line)
        runs.setdefault(record["run"], []).append(record["status"])
    no_ops = list(runs.values())[2:]  # the first two runs built and checked the pipeline
    if len(no_ops) < len(tool.walls) or any(statuses != ["cached"] * 7 for statuses in no_ops):
        fail("petal's run log shows a timed run that was not a 7-stage no-op")
    tool.note = f"run log: all {len(no_ops)} warm-up and timed runs found the 7 stages cached"


def petal_version(petal: Path) -> str:
    out = subprocess.run([str(petal), "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    return out.split(" (")[0] if out else "petal"


# ---------------------------------------------------------------------------------------------- DVC

def find_dvc(args: argparse.Namespace) -> tuple[Path | None, str]:
    if args.no_dvc:
        return None, "skipped (--no-dvc)"
    if args.dvc:
        return Path(args.dvc), ""
    venv = Path(args.dvc_venv)
    candidate = venv / "bin" / "dvc"
    if not candidate.exists() and args.install_dvc:
        print(f"installing DVC with pip into {venv} ...", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "dvc"], check=True)
        except (subprocess.CalledProcessError, OSError) as error:
            return None, f"could not be installed ({error})"
    if candidate.exists():
        return candidate, ""
    found = shutil.which("dvc")
    if found:
        return Path(found), ""
    return None, f"not installed (run with --install-dvc, or --dvc PATH; looked in {venv})"


def setup_dvc(dvc: Path, dataset: Path, work: Path) -> Tool:
    folder = work / "dvc"
    folder.mkdir()
    env = dict(os.environ)
    env["DVC_NO_ANALYTICS"] = "1"
    env["DVC_NO_UPDATE_CHECK"] = "1"
    run_checked([str(dvc), "init", "--no-scm", "-q"], folder, env, "dvc init")
    run_checked([str(dvc), "config", "core.analytics", "false"], folder, env, "dvc config")
    (folder / "dvc.yaml").write_text((FIXTURES / "dvc.yaml").read_text().replace("@DATASET@", str(dataset)))
    argv = [str(dvc), "repro"]
    start = time.perf_counter()
    run_checked(argv, folder, env, "the first dvc repro (building every stage)")
    print(f"dvc: first repro built the pipeline in {time.perf_counter() - start:.2f} s")
    output = run_checked(argv, folder, env, "the second dvc repro")
    if output.count("didn't change, skipping") != 7 or "up to date" not in output:
        fail(f"dvc's second repro is not a no-op:\n{output}")
    return Tool("dvc", argv, folder, env)


def check_dvc_still_cached(tool: Tool) -> None:
    output = run_checked([tool.argv[0], "repro"], tool.cwd, tool.env, "dvc repro (after timing)")
    if output.count("didn't change, skipping") != 7:
        fail(f"after timing, dvc repro is not a no-op:\n{output}")
    tool.note = "repro after timing skipped all 7 stages"


def dvc_version(dvc: Path, env: dict[str, str]) -> str:
    out = subprocess.run([str(dvc), "--version"], stdout=subprocess.PIPE, text=True, env=env).stdout.strip()
    return f"dvc {out}" if out else "dvc"


# ---------------------------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--petal", default=str(REPO / "build" / "petal"), help="the petal executable (default: build/petal)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per tool (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up runs per tool (default 2)")
    parser.add_argument("--datasets", default=os.environ.get("PETAL_DATASETS") or str(REPO.parent / "shared" / "datasets"),
                        help="folder holding flowers5/ (default: $PETAL_DATASETS or ../shared/datasets)")
    parser.add_argument("--dvc", help="the dvc executable to compare with")
    parser.add_argument("--dvc-venv", default="/tmp/dvcvenv", help="venv looked in for dvc (default /tmp/dvcvenv)")
    parser.add_argument("--install-dvc", action="store_true", help="pip-install DVC into --dvc-venv if it is missing")
    parser.add_argument("--no-dvc", action="store_true", help="time petal only")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (its path is printed)")
    args = parser.parse_args()
    if args.runs < 1 or args.warmup < 0:
        fail("--runs must be >= 1 and --warmup >= 0")

    petal = Path(args.petal).resolve()
    if not os.access(petal, os.X_OK):
        fail(f"{petal} is not an executable; build it with: ninja -C build petal")
    dataset = (Path(args.datasets) / "flowers5").resolve()
    if not dataset.is_dir():
        fail(f"{dataset} does not exist; set PETAL_DATASETS or --datasets")
    images = sum(1 for p in dataset.rglob("*") if p.is_file())
    dvc, dvc_problem = find_dvc(args)

    work = Path(tempfile.mkdtemp(prefix="petal-bench-"))
    try:
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        print(f"dataset: {dataset} ({images} files)")
        print(f"work folder: {work}")
        tools = [setup_petal(petal, dataset, work)]
        tools[0].name = petal_version(petal)
        if dvc:
            tool = setup_dvc(dvc, dataset, work)
            tool.name = dvc_version(dvc, tool.env)
            tools.append(tool)

        print(f"timing: {args.warmup} warm-up + {args.runs} timed no-op runs per tool, alternating ...", flush=True)
        for _ in range(args.warmup):
            for tool in tools:
                tool.measure(keep=False)
        for _ in range(args.runs):
            for tool in tools:
                tool.measure(keep=True)
        check_petal_still_cached(tools[0])
        if dvc:
            check_dvc_still_cached(tools[1])

        base = tools[0]
        print()
        print(f"No-op re-run of a 7-stage pipeline, all stages cached ({args.runs} runs after {args.warmup} warm-ups)")
        header = f"{'tool':<16} {'median wall ms':>15} {'p90 wall ms':>12} {'peak RSS MB':>12} {'wall vs petal':>14} {'RSS vs petal':>13}"
        print(header)
        print("-" * len(header))
        for tool in tools:
            print(f"{tool.name:<16} {tool.median_ms:>15.1f} {tool.p90_ms:>12.1f} {tool.rss_mb:>12.1f} "
                  f"{tool.median_ms / base.median_ms:>13.1f}x {tool.rss_mb / base.rss_mb:>12.1f}x")
        if not dvc:
            print(f"{'dvc':<16} {'-':>15} {'-':>12} {'-':>12} {'-':>14} {'-':>13}   ({dvc_problem})")
        print("(MB = 10^6 bytes; peak RSS is the largest ru_maxrss of the timed runs)")
        for tool in tools:
            print(f"check: {tool.name}: {tool.note}")
        print()
        wall_ok = base.median_ms < TARGET_WALL_MS
        rss_ok = base.rss_mb < TARGET_RSS_MB
        print(f"target: petal median wall < {TARGET_WALL_MS:.0f} ms: {base.median_ms:.1f} ms  {'PASS' if wall_ok else 'FAIL'}")
        print(f"target: petal peak RSS < {TARGET_RSS_MB:.0f} MB:   {base.rss_mb:.1f} MB  {'PASS' if rss_ok else 'FAIL'}")
        return 0 if wall_ok and rss_ok else 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
