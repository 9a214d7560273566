#!/usr/bin/env python3
"""MLflow client benchmark: petal's tracking client vs MLflow's Python client, one server.

Logs KEYS x STEPS metric values (default 10 x 1,000 = 10,000) to ONE local MLflow server
(petal's LocalMlflowServer: `mlflow server --workers 1`, sqlite, job execution off, started in a
temp folder for the whole benchmark and stopped at the end), each variant into a fresh run:

  1. petal RunLogger (async, batched, spooled): first log_metric .. end of flush(); also the cost
     of log_metric on the calling thread (mean and max of the 10,000 calls)
  2. petal Client::log_batch, synchronous, batches of 1,000 (reference)
  3. Python MlflowClient.log_batch, batches of 1,000 Metric objects
  4. Python fluent mlflow.log_metric(..., synchronous=False) per value, then
     mlflow.flush_async_logging(); also the cost of log_metric on the calling thread. MLflow's
     default: each value is its own request, sent by a pool of 10 threads
  4b the same with MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS=1 (MLflow's knob that merges queued
     values into batches)
  5. Python fluent mlflow.log_metric(...) synchronous, one HTTP request per value
  Variants 4 and 5 are timed on 1,000 values and extrapolated (labelled) when their warm-up says
  a full run would take longer than --slow-limit-s (180 s).

Petal's variants run in build/bench/petal_bench_tracking (bench/tracking_client.cpp), which this
script builds with ninja first (--no-build to skip). Every run is created before the clock starts
and ended after it stops; the clock runs from the first log call until everything is confirmed
delivered. After each run the Python client reads every value back (get_metric_history) and checks
keys, steps and values. Rounds alternate the order of the variants; one small warm-up round first.

Usage:
  python3 bench/tracking_client.py [--repeats 3] [--keys 10] [--steps 1000] [--slow-limit-s 180]
                                   [--skip-sync] [--no-build] [--bench PATH] [--keep]

Exit status: 0 when petal meets both goals (RunLogger >= 5x faster than the fastest Python
variant; log_metric < 5 us per call on the caller's thread) and every run verified, 1 when not,
2 when the benchmark could not run.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
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
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
GOAL_SPEEDUP = 5.0
GOAL_PER_CALL_US = 5.0
EXPERIMENT = "petal-bench-tracking"


def fail(message: str) -> "NoReturn":  # noqa: F821
    print(f"tracking_client: error: {message}", file=sys.stderr)
    sys.exit(2)


try:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric
except ImportError:  # re-run under the project's venv, which has mlflow
    if VENV_PYTHON.exists() and Path(sys.executable).resolve() != VENV_PYTHON.resolve():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), __file__, *sys.argv[1:]])
    fail(f"mlflow is not importable and {VENV_PYTHON} does not exist (run scripts/setup.sh)")


def key_name(k: int) -> str:
    return f"bench.k{k}"


def value_of(k: int, step: int) -> float:
    return k + step / 1000.0 + 0.5  # the same expression as in tracking_client.cpp


def now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------------------------------------
# variants: each logs keys x steps values into a fresh run and returns
#   {"run_id", "wall_ms", "per_call_us", "max_call_us", "steps_logged", "extrapolated"}
# ---------------------------------------------------------------------------------------------


def petal_variant(bench: Path, command: str, url: str, run_name: str, keys: int, steps: int, spool: Path) -> dict:
    argv = [str(bench), command, "--uri", url, "--experiment", EXPERIMENT, "--run-name", run_name,
            "--keys", str(keys), "--steps", str(steps), "--batch", "1000", "--spool", str(spool)]
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        fail(f"{' '.join(argv)} exited {result.returncode} without a result:\n{result.stdout}{result.stderr}")
    out = json.loads(lines[-1])
    if result.returncode != 0 or out.get("error") or out.get("offline"):
        fail(f"{command} failed (exit {result.returncode}): error={out.get('error')!r} offline={out.get('offline')}"
             f"\n{result.stderr}")
    return {"run_id": out["run_id"], "wall_ms": out["wall_ms"], "per_call_us": out["per_call_us"],
            "max_call_us": out["max_call_us"], "steps_logged": steps, "extrapolated": False,
            "caller_loop_ms": out["caller_loop_ms"] if command == "run-logger" else None,
            "per_request_ms": out.get("per_batch_call_ms"),
            "spool_removed": out.get("spool_removed", True)}


def python_log_batch(url: str, run_name: str, keys: int, steps: int) -> dict:
    client = MlflowClient(tracking_uri=url)
    experiment_id = mlflow.set_experiment(EXPERIMENT).experiment_id
    run_id = client.create_run(experiment_id, run_name=run_name, tags={"petal.bench": "tracking_client"}).info.run_id
    batch: list[Metric] = []
    requests: list[float] = []
    perf = time.perf_counter

    def send() -> None:
        a = perf()
        client.log_batch(run_id, metrics=batch)
        requests.append(perf() - a)

    start = perf()
    for s in range(steps):
        for k in range(keys):
            batch.append(Metric(key_name(k), value_of(k, s), now_ms(), s))
            if len(batch) >= 1000:
                send()
                batch = []
    if batch:
        send()
    wall = perf() - start
    with quiet_stdout():
        client.set_terminated(run_id)
    values = keys * steps
    # Synchronous: the caller's thread carries the whole time.
    return {"run_id": run_id, "wall_ms": wall * 1e3, "per_call_us": wall * 1e6 / values, "max_call_us": None,
            "steps_logged": steps, "extrapolated": False, "per_request_ms": statistics.mean(requests) * 1e3}


@contextlib.contextmanager
def quiet_stdout():
    """MLflow prints "View run ... at: URL" lines to stdout when a run ends."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


@contextlib.contextmanager
def environment(name: str, value: str | None):
    previous = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def python_fluent(run_name: str, keys: int, steps: int, synchronous: bool, buffering_s: str | None = None) -> dict:
    with environment("MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS", buffering_s):
        return _python_fluent(run_name, keys, steps, synchronous)


def _python_fluent(run_name: str, keys: int, steps: int, synchronous: bool) -> dict:
    mlflow.set_experiment(EXPERIMENT)
    run = mlflow.start_run(run_name=run_name, tags={"petal.bench": "tracking_client"})
    names = [key_name(k) for k in range(keys)]
    inside = 0.0
    longest = 0.0
    perf = time.perf_counter
    try:
        start = perf()
        for s in range(steps):
            for k in range(keys):
                a = perf()
                mlflow.log_metric(names[k], value_of(k, s), step=s, synchronous=synchronous)
                d = perf() - a
                inside += d
                if d > longest:
                    longest = d
        logged = perf()
        if not synchronous:
            mlflow.flush_async_logging()
        delivered = perf()
    finally:
        with quiet_stdout():
            mlflow.end_run()
    values = keys * steps
    wall = delivered - start
    return {"run_id": run.info.run_id, "wall_ms": wall * 1e3,
            "per_call_us": (wall if synchronous else inside) * 1e6 / values,
            "max_call_us": None if synchronous else longest * 1e6,
            "caller_loop_ms": None if synchronous else (logged - start) * 1e3,
            "steps_logged": steps, "extrapolated": False}


def verify(url: str, run_id: str, keys: int, steps: int) -> tuple[int, int, str]:
    """Reads the run back; returns (values found correct, values expected, problem or "")."""
    client = MlflowClient(tracking_uri=url)
    expected = keys * steps
    found_keys = set(client.get_run(run_id).data.metrics)
    want_keys = {key_name(k) for k in range(keys)}
    problem = "" if found_keys == want_keys else f"keys {sorted(found_keys)} != {sorted(want_keys)}"
    good = 0
    for k in range(keys):
        history = client.get_metric_history(run_id, key_name(k))
        by_step: dict[int, list[float]] = {}
        for m in history:
            by_step.setdefault(m.step, []).append(m.value)
        if len(history) != steps and not problem:
            problem = f"{key_name(k)} has {len(history)} values, expected {steps}"
        for s in range(steps):
            if by_step.get(s) == [value_of(k, s)]:
                good += 1
            elif not problem:
                problem = f"{key_name(k)} step {s}: {by_step.get(s)} != [{value_of(k, s)}]"
    return good, expected, problem


# ---------------------------------------------------------------------------------------------


class Variant:
    def __init__(self, name: str, label: str, python: bool, run, slow: bool = False):
        self.name, self.label, self.python, self.run = name, label, python, run
        self.slow = slow  # one HTTP request per value: may be timed on fewer values and extrapolated
        self.timed_steps: int | None = None
        self.results: list[dict] = []

    def median(self, field: str) -> float | None:
        values = [r[field] for r in self.results if r.get(field) is not None]
        return statistics.median(values) if values else None


def build(bench: Path, no_build: bool) -> None:
    if no_build:
        if not bench.exists():
            fail(f"{bench} does not exist (build it: ninja -C build petal_bench_tracking)")
        return
    build_dir = REPO / "build"
    ninja = shutil.which("ninja")
    if ninja is None or not (build_dir / "build.ninja").exists():
        if bench.exists():
            print(f"(no ninja or no configured build/; using the existing {bench})")
            return
        fail("cannot build petal_bench_tracking: need ninja and a configured build/ (cmake -G Ninja -B build)")
    print("building petal_bench_tracking ...", flush=True)
    result = subprocess.run([ninja, "-C", str(build_dir), "-j2", "petal_bench_tracking"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        if bench.exists():
            print(f"warning: the build failed; using the existing {bench}:\n{result.stdout[-2000:]}")
            return
        fail(f"ninja petal_bench_tracking failed:\n{result.stdout[-4000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (median reported)")
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--slow-limit-s", type=float, default=180.0,
                        help="variants 4 and 5 (one request per value) log 1,000 values and are extrapolated when "
                             "their warm-up says a full run would take longer than this")
    parser.add_argument("--skip-sync", action="store_true", help="leave out variant 5 (per-value synchronous)")
    parser.add_argument("--bench", type=Path, default=REPO / "build" / "bench" / "petal_bench_tracking")
    parser.add_argument("--no-build", action="store_true", help="do not run ninja; use --bench as it is")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (server db, log, spools)")
    args = parser.parse_args()
    if args.repeats < 1 or args.keys < 1 or args.steps < 1:
        fail("--repeats, --keys and --steps must be >= 1")

    build(args.bench, args.no_build)
    bench = args.bench.resolve()
    keys, steps = args.keys, args.steps
    total = keys * steps

    work = Path(tempfile.mkdtemp(prefix="petal-bench-tracking-"))
    server_dir = work / "server"
    spool = work / "spool"
    env_note = f"PETAL_MLFLOW={os.environ['PETAL_MLFLOW']}" if os.environ.get("PETAL_MLFLOW") else ""
    url = None
    try:
        print("starting the MLflow server (LocalMlflowServer: sqlite, --workers 1, job execution off) ...",
              flush=True)
        t0 = time.perf_counter()
        started = subprocess.run([str(bench), "server-start", str(server_dir)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        if started.returncode != 0:
            fail(f"the server did not start:\n{started.stderr}")
        url = json.loads(started.stdout.strip().splitlines()[-1])["url"]
        print(f"server {url} up in {time.perf_counter() - t0:.1f} s (folder {server_dir}) {env_note}")
        mlflow.set_tracking_uri(url)

        sync_label = "5 Python fluent log_metric, synchronous"
        variants = [
            Variant("runlogger", "1 petal RunLogger (async, batched)", False,
                    lambda n, s: petal_variant(bench, "run-logger", url, n, keys, s, spool)),
            Variant("petal_batch", "2 petal Client::log_batch (sync, 1000)", False,
                    lambda n, s: petal_variant(bench, "log-batch", url, n, keys, s, spool)),
            Variant("py_batch", "3 Python MlflowClient.log_batch (1000)", True,
                    lambda n, s: python_log_batch(url, n, keys, s)),
            Variant("py_async", "4 Python fluent log_metric, async", True,
                    lambda n, s: python_fluent(n, keys, s, synchronous=False), slow=True),
            Variant("py_async_buffered", "4b same, MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS=1", True,
                    lambda n, s: python_fluent(n, keys, s, synchronous=False, buffering_s="1")),
        ]
        if not args.skip_sync:
            variants.append(Variant("py_sync", sync_label, True,
                                    lambda n, s: python_fluent(n, keys, s, synchronous=True), slow=True))

        print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
              f"mlflow {mlflow.__version__}; {keys} keys x {steps} steps = {total:,} values per run; "
              f"{args.repeats} timed rounds after 1 warm-up round ({keys} x 10)\n", flush=True)

        all_verified = True
        warm_steps = min(10, steps)
        for v in variants:  # warm-up: server code paths, connections, the Python client's imports
            r = v.run(f"warmup-{v.name}", warm_steps)
            good, expected, problem = verify(url, r["run_id"], keys, r["steps_logged"])
            all_verified &= not problem and good == expected
            v.timed_steps = steps
            note = ""
            estimate_s = r["wall_ms"] / 1e3 * steps / warm_steps
            if v.slow and estimate_s > args.slow_limit_s and steps > 100:
                v.timed_steps = 100
                note = (f"  -> about {estimate_s:.0f} s for {total:,} values (> {args.slow_limit_s:.0f} s): "
                        f"timed on {keys * 100:,} values, extrapolated")
            print(f"  warm-up {v.label:<50} {r['wall_ms']:9.1f} ms  verified {good}/{expected} {problem}{note}",
                  flush=True)
        for round_no in range(1, args.repeats + 1):
            order = variants if round_no % 2 else list(reversed(variants))
            for v in order:
                r = v.run(f"{v.name}-r{round_no}", v.timed_steps)
                if v.timed_steps != steps:  # scaled to the full run, clearly labelled
                    r["wall_ms"] *= steps / v.timed_steps
                    r["extrapolated"] = True
                good, expected, problem = verify(url, r["run_id"], keys, r["steps_logged"])
                ok = not problem and good == expected
                all_verified &= ok
                r["verified"] = ok
                v.results.append(r)
                extra = ""
                if r.get("max_call_us") is not None:
                    extra = f"  per call {r['per_call_us']:.2f} us (max {r['max_call_us']:.0f} us)"
                if r.get("per_request_ms") is not None:
                    extra += f"  {r['per_request_ms']:.0f} ms per log-batch request"
                if r.get("caller_loop_ms") is not None:
                    extra += f", log calls done after {r['caller_loop_ms']:.0f} ms"
                if r["extrapolated"]:
                    extra += f"  [{expected:,} values logged, time x{steps / r['steps_logged']:.0f}]"
                if r.get("spool_removed") is False:
                    extra += "  [spool NOT removed after end_run]"
                    all_verified = False
                print(f"  round {round_no} {v.label:<50} {r['wall_ms']:9.1f} ms  "
                      f"verified {good}/{expected}{'' if ok else '  FAILED: ' + problem}{extra}", flush=True)
    finally:
        if url is not None or server_dir.exists():
            subprocess.run([str(bench), "server-stop", str(server_dir)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    # ---- the table ----
    python_best = min((v for v in variants if v.python), key=lambda v: v.median("wall_ms"))
    best_ms = python_best.median("wall_ms")
    print(f"\nMedian of {args.repeats} runs; {total:,} values per run; speed-up = fastest Python variant's "
          f"wall time / this variant's ({python_best.label.split(' ', 1)[1]}).")
    print("Per-call us: time on the calling thread per value (async: mean inside log_metric; "
          "sync: wall / values).")
    header = f"{'variant':<50} {'wall ms':>10} {'min-max ms':>21} {'values/s':>10} {'per-call us':>11} " \
             f"{'max call us':>11} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    for v in variants:
        wall = v.median("wall_ms")
        walls = [r["wall_ms"] for r in v.results]
        max_call = max((r["max_call_us"] for r in v.results if r.get("max_call_us") is not None), default=None)
        label = v.label + (" *" if any(r["extrapolated"] for r in v.results) else "")
        spread = f"{min(walls):.1f}-{max(walls):.1f}"
        print(f"{label:<50} {wall:10.1f} {spread:>21} {total / wall * 1e3:10,.0f} "
              f"{v.median('per_call_us'):11.2f} {('-' if max_call is None else f'{max_call:.0f}'):>11} "
              f"{best_ms / wall:8.2f}x")
    if any(r["extrapolated"] for v in variants for r in v.results):
        print(f"* extrapolated: a full run would have taken > {args.slow_limit_s:.0f} s, so each timed run logged "
              f"{keys * 100:,} values (all verified) and its wall time is scaled x{steps / 100:g}")

    runlogger = variants[0]
    speedup = best_ms / runlogger.median("wall_ms")
    per_call = runlogger.median("per_call_us")
    goals = [
        (f"petal RunLogger >= {GOAL_SPEEDUP:.0f}x faster than the fastest Python variant: {speedup:.2f}x",
         speedup >= GOAL_SPEEDUP),
        (f"RunLogger.log_metric < {GOAL_PER_CALL_US:.0f} us per call on the caller's thread: {per_call:.2f} us "
         f"(max single call {max(r['max_call_us'] for r in runlogger.results):.0f} us)", per_call < GOAL_PER_CALL_US),
        ("every run read back complete and exact (get_metric_history)", all_verified),
    ]
    print("\nGoals:")
    for text, ok in goals:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    return 0 if all(ok for _, ok in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
