#!/usr/bin/env python3
"""Sweep overhead benchmark: what `petal sweep` costs per trial beyond the trials' own work.

Each trial is a 4-stage pipeline of shell stages that do (almost) nothing: a shared `prep` and
`features` (the same in every trial, like download/split/augment), then `fit` and `report`, which
differ per trial. So the time measured is orchestration: loading and checking the trials, cache
keys, locks, commits, the run log, the state file, and (with --tracking) the MLflow runs.

Side by side, in alternating rounds, on fresh state each round:
  * sweep: `petal sweep sweep.toml -j 1` (one process for all N trials, sequential like the loop)
  * loop:  N separate `petal run base.toml --set fit.command=...` processes, one per trial
           (the plain loop a user would write instead of a sweep file)
Reported: wall time per trial (median over --rounds), and the ratio loop / sweep.

Usage:
  python3 bench/sweep_overhead.py [--petal build/petal] [--trials 20] [--rounds 3] [--tracking]

--tracking starts an MLflow server (the project's .venv) on a free port and logs both variants to
it; without it both run with --no-tracking.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

BASE = """name = "overhead"
{tracking}
[prep]
kind = "shell"
command = "echo data > $PETAL_OUT/data"
[features]
kind = "shell"
needs = ["prep"]
command = "cat $PETAL_IN_PREP/data > $PETAL_OUT/features"
[fit]
kind = "shell"
needs = ["features"]
command = "true"
[report]
kind = "shell"
needs = ["fit"]
command = "echo '{{\\"val_accuracy\\": 0.5}}' > $PETAL_METRICS"
"""


def fit_command(i: int) -> str:
    return f"echo {i} > $PETAL_OUT/model"


def write_project(folder: Path, trials: int, uri: str | None) -> None:
    tracking = f'[tracking]\nuri = "{uri}"\n' if uri else ""
    (folder / "base.toml").write_text(BASE.format(tracking=tracking))
    values = ", ".join('"' + fit_command(i).replace('"', '\\"') + '"' for i in range(trials))
    (folder / "sweep.toml").write_text(
        f'name = "overhead-sweep"\nexperiment = "base.toml"\n[grid]\nfit.command = [{values}]\n[execution]\njobs = 1\n')


def timed(argv: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-3000:]}")
    return elapsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--petal", default=str(REPO / "build" / "petal"))
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tracking", action="store_true", help="log both variants to a local MLflow server")
    args = parser.parse_args()
    petal = str(Path(args.petal).resolve())
    if not Path(petal).exists():
        print(f"no petal at {petal}; build it first (ninja -C build petal petal-data-worker)")
        return 2

    server = None
    uri = None
    tmp = Path(tempfile.mkdtemp(prefix="petal-sweep-bench-"))
    env = dict(os.environ, PETAL_TRACKING="on" if args.tracking else "off")
    if args.tracking:
        port = free_port()
        uri = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([str(REPO / ".venv" / "bin" / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                                   "--backend-store-uri", f"sqlite:///{tmp}/mlflow.db", "--default-artifact-root",
                                   str(tmp / "artifacts"), "--workers", "1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import urllib.request
        for _ in range(120):
            try:
                urllib.request.urlopen(uri + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            sys.exit("the MLflow server did not start")
    try:
        sweep_times, loop_times = [], []
        for round_number in range(args.rounds):
            for variant in (("sweep", "loop") if round_number % 2 == 0 else ("loop", "sweep")):
                folder = tmp / f"r{round_number}-{variant}"
                folder.mkdir()
                write_project(folder, args.trials, uri)
                extra = [] if args.tracking else ["--no-tracking"]
                if variant == "sweep":
                    elapsed = timed([petal, "--state-dir", "state", "sweep", "sweep.toml", "--no-charts", *extra], folder, env)
                    sweep_times.append(elapsed / args.trials)
                else:
                    total = 0.0
                    for i in range(args.trials):
                        total += timed([petal, "--state-dir", "state", "run", "base.toml", "-j", "1", *extra, "--set",
                                        f"fit.command={fit_command(i)}"], folder, env)
                    loop_times.append(total / args.trials)
        sweep_ms = statistics.median(sweep_times) * 1000
        loop_ms = statistics.median(loop_times) * 1000
        print(f"sweep overhead: {args.trials} trials of a 4-stage shell pipeline (2 shared stages), "
              f"{args.rounds} rounds, tracking {'on (local MLflow server)' if args.tracking else 'off'}, "
              f"{os.cpu_count()} cores")
        print()
        print("| variant | per trial (median) | rounds (per trial, ms) | ratio to sweep |")
        print("| --- | --- | --- | --- |")
        print(f"| petal sweep (one process) | {sweep_ms:.1f} ms | {', '.join(f'{t * 1000:.0f}' for t in sweep_times)} | 1.00x |")
        print(f"| loop of petal run | {loop_ms:.1f} ms | {', '.join(f'{t * 1000:.0f}' for t in loop_times)} | "
              f"{loop_ms / sweep_ms:.2f}x |")
        return 0
    finally:
        if server:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    sys.exit(main())
