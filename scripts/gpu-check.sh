#!/usr/bin/env bash
# The GPU check (issue 24; docs/gpu.md): on a machine with an NVIDIA GPU, CMake, ninja, a compiler,
# CUDA and PyTorch's pip wheel (python3 imports torch and torchvision), and the kit from
# scripts/gpu-kit.sh in .gpu-kit/, it
#   1. unpacks the kit, configures and builds the LibTorch targets against the wheel's LibTorch
#      (cmake -DPETAL_TORCH_ONLY=ON, CUDA arch 9.0 unless TORCH_CUDA_ARCH_LIST says otherwise),
#   2. runs every CUDA test case of petal_torch_tests (each must really run on the GPU),
#   3. benchmarks training, petal vs PyTorch eager: resnet50, mobilenet_v2, efficientnet_b0,
#      batch 256, 224 px, channels-last, bf16 autocast, compute only,
#   4. runs the default experiment (experiments/flowers5.toml) with device = "cuda", untracked,
#   5. benchmarks resnet50 over an epoch of petal's loader (skipped with --quick),
# each step under its own time limit, a failed step not stopping the next, and prints one summary
# table (also OUT/summary.md). Logs go to OUT: env.log build.log tests.log experiment.log bench.log
# steps.tsv metrics.json summary.md.
#
# Usage: scripts/gpu-check.sh [--out DIR] [--quick] [--jobs N] [--budget SECONDS] [--help]
#   --out DIR         where logs and the summary go (default: $OUT, else ./gpu-check-out)
#   --quick           fewer benchmark steps, no epoch benchmark
#   --jobs N          build jobs (default: the number of cores)
#   --budget SECONDS  the whole check's time; each step gets what is left, up to its own limit
#                     (default 540)
#   --rehearse        no GPU needed: unpack, configure, build and list the CUDA test cases, then
#                     stop (a dry run of the build on any machine with a LibTorch; budget 7200 s)
# Environment: PYTHON (default python3), TORCH_PREFIX (default: PYTHON's torch.utils.cmake_prefix_path),
# PETAL_GPU_BUILD_DIR (default build-gpu), TORCH_CUDA_ARCH_LIST.
# Exit status: 0 every step passed; 1 some step failed; 2 no GPU here; 64 bad arguments.
set -uo pipefail

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
bad_usage() { echo "gpu-check.sh: $1 (see --help)" >&2; exit 64; }

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
build="${PETAL_GPU_BUILD_DIR:-$repo/build-gpu}"
kit="$repo/.gpu-kit"
out="${OUT:-./gpu-check-out}"
quick=0
jobs="$(nproc)"
budget=
rehearse=0
started=$SECONDS
experiment_sets=(--set train.device=cuda --set finetune.device=cuda --set evaluate.device=cuda --set register.enabled=false)

parse_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --out) [[ $# -ge 2 && -n "$2" ]] || bad_usage "--out needs a folder"; out="$2"; shift 2 ;;
      --out=*) out="${1#--out=}"; shift ;;
      --quick) quick=1; shift ;;
      --rehearse) rehearse=1; shift ;;
      --jobs) [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || bad_usage "--jobs needs a positive number"; jobs="$2"; shift 2 ;;
      --budget) [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || bad_usage "--budget needs seconds"; budget="$2"; shift 2 ;;
      -h|--help) usage; exit 0 ;;
      *) bad_usage "unknown argument '$1'" ;;
    esac
  done
  budget="${budget:-$((rehearse ? 7200 : 540))}"
}

has_gpu() {
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 &&
    "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1
}

# The output folder, a work folder for the steps' results (WORK), and the environment of the steps.
prepare_run() {
  mkdir -p "$out" || bad_usage "cannot create $out"
  out="$(cd "$out" && pwd)"
  work="$(mktemp -d /tmp/petal-gpu-check.XXXXXX)"
  mkdir -p "$work/tests"
  : >"$work/steps.tsv"
  export PETAL_TRACKING=off PYTHONUNBUFFERED=1
  export -f unpack_kit link_inputs configure build_targets default_experiment bench
  export repo python build kit work out jobs quick
  export experiment_sets_text="${experiment_sets[*]}"
}

# step NAME LIMIT LOG COMMAND...: runs COMMAND under the smaller of LIMIT and the budget's rest,
# appends its output to LOG and records the outcome in steps.tsv.
step() {
  local name="$1" cap="$2" log="$3"
  shift 3
  local left=$((budget - (SECONDS - started) - 10))
  local limit=$((cap < left ? cap : left))
  if ((limit < 5)); then
    printf '%s\t124\t0\tskipped: the time budget (%ss) is spent\n' "$name" "$budget" >>"$work/steps.tsv"
    echo "gpu-check: $name skipped (time budget spent)"
    return 124
  fi
  echo "gpu-check: $name (limit ${limit}s) ..."
  echo "=== $name: $* (limit ${limit}s)" >>"$log"
  local t0=$SECONDS rc
  timeout -k 10 "$limit" "$@" >>"$log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\tlimit %ss, log %s\n' "$name" "$rc" "$((SECONDS - t0))" "$limit" "$(basename "$log")" >>"$work/steps.tsv"
  echo "gpu-check: $name exit $rc after $((SECONDS - t0)) s"
  return "$rc"
}

environment() {
  {
    echo "date: $(date -u +%FT%TZ); host: ${HOSTNAME:-?}; cores: $(nproc); repo: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$python" -c 'import torch, torchvision; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "torchvision", torchvision.__version__)'
    command -v nvcc >/dev/null && nvcc --version | tail -2
    "${CXX:-c++}" --version | head -1
    cmake --version | head -1
    ninja --version
    cat "$build/kit/kit.json" 2>/dev/null
  } 2>&1
}

unpack_kit() {
  [[ -e "$kit/kit.tar.xz" ]] || { echo "no $kit/kit.tar.xz: run scripts/gpu-kit.sh where packages can be installed"; return 3; }
  rm -rf "$build/kit" && mkdir -p "$build/kit" || return 1
  if command -v xz >/dev/null; then
    tar -xJf "$kit/kit.tar.xz" -C "$build/kit" || return 1
  else  # Python's tarfile reads xz without the xz tool
    "$python" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$kit/kit.tar.xz" "$build/kit" || return 1
  fi
  cat "$build/kit/kit.json"
  ldd "$build/kit/bin/petal" "$build/kit/bin/petal-data-worker"
  ! ldd "$build/kit/bin/petal" "$build/kit/bin/petal-data-worker" | grep -q 'not found' && "$build/kit/bin/petal" --version
}

link_inputs() {
  if [[ -e "$kit/weights/efficientnet-lite0-57934424.pth" && ! -e "$repo/weights/efficientnet-lite0-57934424.pth" ]]; then
    mkdir -p "$repo/weights"
    ln -sfn ../.gpu-kit/weights/efficientnet-lite0-57934424.pth "$repo/weights/efficientnet-lite0-57934424.pth"
  fi
  [[ -d "$kit/datasets/flowers5" ]] && export PETAL_DATASETS="$kit/datasets"
  echo "datasets: ${PETAL_DATASETS:-unset, the experiment default}; weights: $(ls -L "$repo/weights/"*.pth 2>&1)"
}

configure() {
  local prefix nvcc
  prefix="${TORCH_PREFIX:-$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')}" || return 1
  nvcc="$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null)"
  [[ -n "$nvcc" ]] && export PATH="$(dirname "$nvcc"):$PATH" CUDACXX="$nvcc"
  cmake -S "$repo" -B "$build" -G Ninja -DPETAL_TORCH_ONLY=ON -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" -DPETAL_KIT_ROOT="$build/kit" \
    -DTORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" -DCMAKE_CUDA_ARCHITECTURES=90
}

build_targets() { ninja -C "$build" -j "$jobs" petal-worker petal_torch_tests petal_bench_train; }

# Every test case of petal_torch_tests whose name mentions CUDA, one log each, all at once (the GPU
# and 16 cores have room; none of them is timed).
cuda_tests() {
  local binary="$build/tests/petal_torch_tests" name file failed=0
  [[ -x "$binary" ]] || { echo "no $binary (the build failed)" >>"$out/tests.log"; return 1; }
  "$binary" --list-test-cases --no-version | grep -i 'cuda' | sed 's/^ *//' >"$work/cuda-cases.txt"
  [[ -s "$work/cuda-cases.txt" ]] || { echo "no CUDA test cases listed" >>"$out/tests.log"; return 1; }
  while IFS= read -r name; do
    file="$work/tests/$(echo "$name" | cut -d: -f1 | tr -c 'A-Za-z0-9\n' '_').log"
    # doctest's filters take wildcards; commas and brackets in a name would split or match them.
    OMP_NUM_THREADS=4 step "test: ${name:0:60}" 200 "$file" "$binary" -tc="$(echo "$name" | tr ',[]' '???')" \
      --duration=true &
  done <"$work/cuda-cases.txt"
  wait
  for file in "$work"/tests/*.log; do
    if grep -q 'did not run' "$file"; then  # a CUDA test that found no device passes: not here
      printf '%s\t1\t0\tran without CUDA (did not run)\n' "$(basename "$file" .log)" >>"$work/steps.tsv"
      failed=1
    fi
    cat "$file" >>"$out/tests.log"
  done
  return "$failed"
}

default_experiment() {
  local state="$work/experiment-state" t0 rc
  t0=$(date +%s.%N)
  (cd "$repo" && "$build/petal" --state-dir "$state" run experiments/flowers5.toml --no-tracking "${experiment_sets[@]}") |
    tee "$work/experiment-run.txt"
  rc=${PIPESTATUS[0]}
  "$python" - "$state" "$rc" "$t0" "$(date +%s.%N)" "$out" "$work/experiment.json" "$build/petal" "$repo" \
    "${experiment_sets[@]}" <<'EOF'
import json, subprocess, sys
from pathlib import Path
state, rc, t0, t1, out, result, petal, repo, *sets = sys.argv[1:]
record = {"rc": int(rc), "wall_s": float(t1) - float(t0), "metrics": {},
          "stage_lines": [line.strip() for line in Path(result).with_name("experiment-run.txt").read_text().splitlines()
                          if " done in " in line or line.startswith("petal: ")]}
try:
    status = json.loads(subprocess.run([petal, "--state-dir", state, "status", "experiments/flowers5.toml", "--json", *sets],
                                       cwd=repo, capture_output=True, text=True, check=True).stdout)
    key = next(s["key"] for s in status["stages"] if s["stage"] == "evaluate")
    found = sorted(Path(state).glob(f"cache/entries/**/{key}/**/metrics.json"))
    record["metrics"] = json.loads(found[0].read_text())
    (Path(out) / "metrics.json").write_text(found[0].read_text())
except Exception as error:  # noqa: BLE001 - reported in the summary
    record["error"] = repr(error)
Path(result).write_text(json.dumps(record))
print(json.dumps(record)[:2000])
EOF
  return "$rc"
}

bench() {
  local mode="$1" models="$2" steps=20 warmup=5
  ((quick)) && steps=10 warmup=3
  (cd "$repo" && PETAL_BUILD_DIR="$build" "$python" bench/train_throughput.py --no-build --device cuda --channels-last \
    --amp --amp-dtype bf16 --models "$models" --modes "$mode" --size 224 --batch 256 --threads 4 --workers 12 \
    --steps "$steps" --warmup "$warmup" --datasets "${PETAL_DATASETS:-$repo/../shared/datasets}" \
    --json-out "$work/bench-$mode.json")
}

all_passed() { awk -F'\t' '$2 != 0 {bad = 1} END {exit bad}' "$work/steps.tsv"; }

build_steps() {
  environment >"$out/env.log"
  head -3 "$out/env.log"
  link_inputs >>"$out/env.log" 2>&1
  step "unpack the kit" 60 "$out/env.log" bash -c unpack_kit
  step "configure (PETAL_TORCH_ONLY)" 180 "$out/build.log" bash -c configure
  step "build" "$((rehearse ? budget : 420))" "$out/build.log" bash -c build_targets
}

gpu_steps() {
  cuda_tests
  step "bench: compute" 240 "$out/bench.log" bash -c 'bench compute resnet50,mobilenet_v2,efficientnet_b0'
  step "default experiment on cuda" 180 "$out/experiment.log" bash -c "experiment_sets=($experiment_sets_text); default_experiment"
  ((quick)) || step "bench: epoch (loader)" 150 "$out/bench.log" bash -c 'bench epoch resnet50'
}

write_summary() {
  {
    echo "$(sed -n 2p "$out/env.log") · $(sed -n 3p "$out/env.log") · petal $(git -C "$repo" rev-parse --short HEAD 2>/dev/null)"
    echo "build: $build, $jobs jobs; budget ${budget}s, used $((SECONDS - started)) s; quick=$quick; bench: 12 loader threads, 4 intra-op threads"
  } >"$work/header.txt"
  cp "$work/steps.tsv" "$out/steps.tsv"
  "$python" "$repo/scripts/gpu_check_summary.py" "$work" | tee "$out/summary.md"
}

main() {
  parse_args "$@"
  if ((!rehearse)) && ! has_gpu; then
    echo "gpu-check.sh: no GPU: nvidia-smi lists none or $python's torch sees no CUDA device; nothing was run" >&2
    exit 2
  fi
  prepare_run
  build_steps
  if ((rehearse)); then
    "$build/tests/petal_torch_tests" --list-test-cases --no-version | grep -i cuda
    cat "$work/steps.tsv"
    all_passed
    return
  fi
  gpu_steps
  write_summary
  all_passed
}

# Sourced (tests, a step by hand), it only defines the functions.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
