#!/usr/bin/env python3
"""The one summary table of scripts/gpu-check.sh, from what its steps left in WORK.

  python3 scripts/gpu_check_summary.py WORK > summary.md

WORK holds steps.tsv (step, exit status, seconds, note), tests/<case>.log (doctest output of one
test case), bench-compute.json and bench-epoch.json (bench/train_throughput.py --json-out) and
experiment.json (wall time, exit status, the evaluate stage's metrics). Anything missing shows as
"not run". Standard library only.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# The default experiment on 2 CPU cores (README.md), to compare accuracy with.
CPU_REFERENCE = "CPU (README): test accuracy 0.743, macro-F1 0.742"
NOT_RAN_MARKER = "did not run"


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def steps(work: Path) -> list[tuple[str, int, float, str]]:
    rows = []
    for line in (work / "steps.tsv").read_text().splitlines() if (work / "steps.tsv").exists() else []:
        fields = line.split("\t") + ["", "", "", ""]
        try:
            rows.append((fields[0], int(fields[1]), float(fields[2]), fields[3]))
        except ValueError:
            continue
    return rows


def step_table(rows: list[tuple[str, int, float, str]]) -> list[str]:
    out = ["| step | result | seconds | note |", "| --- | --- | ---: | --- |"]
    for name, rc, seconds, note in rows:
        result = "ok" if rc == 0 else ("timed out" if rc in (124, 137) else f"failed (exit {rc})")
        result = "skipped" if note.startswith("skipped") else result
        out.append(f"| {name} | {result} | {seconds:.0f} | {note} |")
    return out


def test_result(log: Path) -> tuple[str, str]:
    """(verdict, counts) of one doctest test case's log."""
    if not log.exists():
        return "not run", ""
    text = log.read_text(errors="replace")
    cases = re.search(r"test cases:\s*(\d+) \|\s*(\d+) passed \|\s*(\d+) failed", text)
    asserts = re.search(r"assertions:\s*(\d+) \|\s*(\d+) passed \|\s*(\d+) failed", text)
    counts = f"{asserts[2]}/{asserts[1]} assertions passed, {asserts[3]} failed" if asserts else "no doctest summary"
    if NOT_RAN_MARKER in text:
        return "SKIPPED (no CUDA in the test)", counts
    if not cases or cases[1] == "0":
        return "no such test case", counts
    return ("pass" if cases[3] == "0" and int(cases[2]) > 0 else "FAIL"), counts


def test_table(work: Path) -> list[str]:
    out = ["| CUDA test case | result | assertions |", "| --- | --- | --- |"]
    logs = sorted((work / "tests").glob("*.log")) if (work / "tests").is_dir() else []
    for log in logs:
        verdict, counts = test_result(log)
        out.append(f"| {log.stem} | {verdict} | {counts} |")
    return out if logs else out + ["| (none) | not run | |"]


def bench_table(work: Path) -> list[str]:
    out = ["| model | mode | petal img/s | PyTorch img/s | ratio | goal |", "| --- | --- | ---: | ---: | ---: | --- |"]
    described = []
    for name, goal in (("bench-compute.json", 1.0), ("bench-epoch.json", None)):
        data = read_json(work / name)
        if not data:
            out.append(f"| ({name[6:-5]}) | not run or failed | | | | |")
            continue
        described.append(data.get("device", ""))
        for row in data["rows"]:
            target = f">= {goal:.1f}x" if goal else "vs compute: see below"
            out.append(f"| {row['model']} | {row['mode']} | {row['petal']:.0f} | {row['pytorch']:.0f} | "
                       f"{row['ratio']:.2f}x | {target} |")
    return out + loader_share(work) + ([f"Bench settings: {'; '.join(sorted(set(described)))}"] if described else [])


def loader_share(work: Path) -> list[str]:
    """petal's epoch img/s as a share of its compute-only img/s (the loader goal: >= 90%)."""
    compute, epoch = read_json(work / "bench-compute.json"), read_json(work / "bench-epoch.json")
    if not compute or not epoch:
        return []
    speeds = {row["model"]: row["petal"] for row in compute["rows"] if row["mode"] == "compute"}
    lines = []
    for row in epoch["rows"]:
        if row["model"] in speeds:
            share = row["petal"] / speeds[row["model"]]
            lines.append(f"petal {row['model']} epoch / compute: {share:.0%} (goal >= 90%)")
    return [""] + lines if lines else []


def experiment_lines(work: Path) -> list[str]:
    data = read_json(work / "experiment.json")
    if not data:
        return ["Default experiment: not run"]
    metrics = data.get("metrics") or {}
    accuracy = next((metrics[k] for k in ("test_accuracy", "test.accuracy", "accuracy") if k in metrics), None)
    f1 = next((metrics[k] for k in ("test_f1", "test.f1", "test_macro_f1", "macro_f1") if k in metrics), None)
    text = (f"Default experiment (experiments/flowers5.toml, device = cuda): exit {data.get('rc')}, "
            f"{data.get('wall_s', 0):.1f} s wall (goal < 60 s)")
    if accuracy is not None:
        text += f", test accuracy {accuracy:.3f}"
    if f1 is not None:
        text += f", test macro-F1 {f1:.3f}"
    return [text + f"; {CPU_REFERENCE}", *(f"  {line}" for line in data.get("stage_lines", []))]


def summary(work: Path) -> str:
    header = (work / "header.txt").read_text().strip() if (work / "header.txt").exists() else ""
    parts = ["## petal GPU check", header, "", *step_table(steps(work)), "", *test_table(work), "",
             *bench_table(work), "", *experiment_lines(work)]
    return "\n".join(parts).replace("\n\n\n", "\n\n") + "\n"


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(sys.argv) == 2 else 2
    sys.stdout.write(summary(Path(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
