#!/usr/bin/env bash
# scripts/gpu-check.sh without a GPU: --help, argument errors, "no GPU" (exit 2), the parsed
# options (the script sourced), and the summary table from a made-up work folder. CTest:
# gpu_check_script (tests/CMakeLists.txt).
set -uo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
script="$repo/scripts/gpu-check.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failures=0
check() {  # check DESCRIPTION COMMAND...: the command must succeed
  if "${@:2}"; then echo "ok: $1"; else echo "FAILED: $1"; failures=$((failures + 1)); fi
}

# A machine "without a GPU" even where one is: an nvidia-smi that finds none.
mkdir -p "$tmp/bin" && printf '#!/bin/sh\nexit 9\n' >"$tmp/bin/nvidia-smi" && chmod +x "$tmp/bin/nvidia-smi"
export PATH="$tmp/bin:$PATH"

"$script" --help >"$tmp/help" 2>&1; rc=$?
check "--help exits 0" test "$rc" -eq 0
check "--help shows the usage line" grep -q '^Usage: scripts/gpu-check.sh \[--out DIR\] \[--quick\]' "$tmp/help"
for bad in "--bogus" "--jobs 0" "--jobs" "--budget x" "--out"; do
  # shellcheck disable=SC2086
  "$script" $bad >"$tmp/err" 2>&1; rc=$?
  check "'$bad' exits 64" test "$rc" -eq 64
  check "'$bad' says what is wrong" grep -q 'gpu-check.sh: .* (see --help)' "$tmp/err"
done
"$script" --out "$tmp/out" --quick >"$tmp/err" 2>&1; rc=$?
check "no GPU exits 2" test "$rc" -eq 2
check "no GPU says so" grep -q 'no GPU' "$tmp/err"
check "no GPU writes nothing" test ! -e "$tmp/out"

# The options, parsed by the sourced script.
(
  source "$script"
  parse_args --out=/x --quick --jobs 3 --budget 100
  [[ "$out" == /x && "$quick" == 1 && "$jobs" == 3 && "$budget" == 100 && "$rehearse" == 0 ]]
) && check "options parsed" true || check "options parsed" false
( source "$script"; parse_args --rehearse; [[ "$budget" == 7200 ]] ) && check "--rehearse budget" true ||
  check "--rehearse budget" false

# The summary from made-up results: a test case that skipped its CUDA part is not a pass.
work="$tmp/work" && mkdir -p "$work/tests"
printf 'build\t0\t187\tlimit 420s\nbench: epoch (loader)\t124\t0\tskipped: the time budget (540s) is spent\n' >"$work/steps.tsv"
printf '[doctest] test cases: 1 | 1 passed | 0 failed | 9 skipped\n[doctest] assertions: 52 | 52 passed | 0 failed |\n' \
  >"$work/tests/model_zoo_on_CUDA.log"
printf 'the CUDA training checks did not run\n[doctest] test cases: 1 | 1 passed | 0 failed | 9 skipped\n' \
  >"$work/tests/train_stage_on_CUDA.log"
echo '{"device": "cuda", "rows": [{"model": "resnet50", "mode": "compute", "petal": 4800, "pytorch": 4694, "ratio": 1.0226}]}' \
  >"$work/bench-compute.json"
echo '{"rc": 0, "wall_s": 48.2, "metrics": {"test_accuracy": 0.751, "test_f1": 0.748}}' >"$work/experiment.json"
python3 "$repo/scripts/gpu_check_summary.py" "$work" >"$tmp/summary.md"
check "summary: build time" grep -q '^| build | ok | 187 |' "$tmp/summary.md"
check "summary: skipped step" grep -q '^| bench: epoch (loader) | skipped |' "$tmp/summary.md"
check "summary: a test case that ran" grep -q '^| model_zoo_on_CUDA | pass | 52/52 assertions passed' "$tmp/summary.md"
check "summary: a test case that skipped" grep -q '^| train_stage_on_CUDA | SKIPPED' "$tmp/summary.md"
check "summary: petal vs PyTorch" grep -q '^| resnet50 | compute | 4800 | 4694 | 1.02x |' "$tmp/summary.md"
check "summary: the experiment" grep -q '48.2 s wall (goal < 60 s), test accuracy 0.751, test macro-F1 0.748' "$tmp/summary.md"
check "summary: no epoch run" grep -q '^| (epoch) | not run or failed' "$tmp/summary.md"

echo "$failures failed"
exit $((failures > 0))
