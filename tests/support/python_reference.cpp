#include "tests/support/python_reference.h"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#include "tests/support/test_support.h"

namespace petal::test {

namespace {

std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (const char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

}  // namespace

std::string project_python() {
  if (const char* python = std::getenv("PETAL_PYTHON"); python != nullptr && *python != '\0') return python;
  return (source_dir() / ".venv/bin/python").string();
}

int reference_threads() {
  const char* threads = std::getenv("OMP_NUM_THREADS");
  return threads != nullptr && *threads != '\0' ? std::max(1, std::atoi(threads)) : 2;
}

std::string run_python_reference(const std::string& script, const std::vector<std::string>& args) {
  std::string command = "OMP_NUM_THREADS=" + std::to_string(reference_threads()) + " " +
                        shell_quote(project_python()) + " " + shell_quote((source_dir() / "tests/parity" / script).string());
  for (const std::string& arg : args) command += " " + shell_quote(arg);
  std::string output;
  const int code = run_command(command, &output);
  if (code != 0) throw std::runtime_error("python reference " + script + " failed (" + std::to_string(code) + "):\n" + output);
  return output;
}

}  // namespace petal::test
