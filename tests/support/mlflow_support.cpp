#include "tests/support/mlflow_support.h"

#include <random>
#include <stdexcept>

#include "pipeline/util/fs.h"
#include "tests/support/test_support.h"

namespace petal::test {

std::string mlflow_url() {
  const auto info = nlohmann::json::parse(read_file(fs::path(PETAL_TEST_MLFLOW_DIR) / "server.json"));
  return info.at("url").get<std::string>();
}

nlohmann::json python_json(const std::string& script) { return python_json(script, mlflow_url()); }

nlohmann::json python_json(const std::string& script, const std::string& tracking_uri) {
  TempDir dir;
  write_file(dir / "script.py", script);
  std::string output;
  const int code = run_command("MLFLOW_TRACKING_URI=" + tracking_uri + " " + (source_dir() / ".venv/bin/python").string() +
                                   " " + (dir / "script.py").string() + " 2>/dev/null",
                               &output);
  if (code != 0) throw std::runtime_error("python failed (" + std::to_string(code) + "): " + output);
  const std::size_t start = output.find_first_of("{[");
  return nlohmann::json::parse(output.substr(start == std::string::npos ? 0 : start));
}

std::string unique_name(const std::string& prefix) {
  std::random_device device;
  return prefix + "-" + std::to_string(now_ms()) + "-" + std::to_string(device() % 100000);
}

}  // namespace petal::test
