#pragma once
// Runs the Python references (tests/parity/*.py) with the project's .venv, which sees Debian's
// torch 1.13 and torchvision 0.14 through --system-site-packages.
#include <filesystem>
#include <string>
#include <vector>

namespace petal::test {

// The project's Python: $PETAL_PYTHON, else <source>/.venv/bin/python.
std::string project_python();

// The intra-op threads the references run with: OMP_NUM_THREADS from the environment, default 2.
// A comparison computes petal's side with as many (OpenBLAS and oneDNN round differently per
// thread count, and some reference networks amplify that beyond the tolerances).
int reference_threads();

// Runs `python <source>/tests/parity/<script> <args...>` with reference_threads() intra-op
// threads and returns its stdout; throws
// std::runtime_error with the script's output when it exits non-zero.
std::string run_python_reference(const std::string& script, const std::vector<std::string>& args);

}  // namespace petal::test
