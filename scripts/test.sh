#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs every test: unit tests, integration tests and the
# crash-safety test. Extra arguments go to ctest, e.g. scripts/test.sh -L crash
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cd build
ctest --output-on-failure -j 2 "$@"
