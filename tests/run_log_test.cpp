#include <doctest/doctest.h>

#include <fstream>

#include "pipeline/cache/run_log.h"
#include "tests/support/test_support.h"

using namespace petal;
using petal::test::TempDir;

namespace {
RunRecord record(const std::string& stage, const std::string& key, const std::string& status, std::int64_t t) {
  return RunRecord{"run1", "exp", stage, key, status, t, t + 1, ""};
}
}  // namespace

TEST_CASE("records append and read back in order, and the first line names the version") {
  TempDir dir;
  RunLog log(dir / "runs.log");
  log.append({record("a", "k1", "ran", 1), record("b", "k2", "cached", 2)}, true);
  log.append({record("a", "k3", "failed", 3)}, false);
  const auto records = log.read();
  REQUIRE(records.size() == 3);
  CHECK(records[2].status == "failed");
  CHECK(test::read_file(dir / "runs.log").rfind("# petal run log v1\n", 0) == 0);
  CHECK(log.last_success("exp", "a")->key == "k1");
  CHECK_FALSE(log.last_success("exp", "zzz").has_value());
}

TEST_CASE("a torn last line is skipped and the next append starts on a fresh line") {
  TempDir dir;
  RunLog log(dir / "runs.log");
  log.append({record("a", "k1", "ran", 1)}, false);
  std::ofstream(dir / "runs.log", std::ios::app) << "{\"run\":\"run2\",\"exp";  // killed mid-write
  CHECK(log.read().size() == 1);
  log.append({record("a", "k2", "ran", 2)}, false);
  const auto records = log.read();
  REQUIRE(records.size() == 2);
  CHECK(records[1].key == "k2");
}

TEST_CASE("a log of another version is never misread") {
  TempDir dir;
  test::write_file(dir / "runs.log", "# petal run log v0\n{\"stage\":\"a\"}\n");
  RunLog log(dir / "runs.log");
  CHECK(log.read().empty());
  log.append({record("a", "k1", "ran", 1)}, false);
  CHECK(log.read().size() == 1);
  CHECK(std::filesystem::exists(dir / "runs.log.old"));
}

TEST_CASE("compaction keeps the latest record of each stage and status") {
  TempDir dir;
  RunLog log(dir / "runs.log");
  for (int i = 0; i < 50; ++i) log.append({record("a", "k" + std::to_string(i), "ran", i)}, false);
  log.append({record("a", "kx", "failed", 60), record("b", "kb", "cached", 61)}, false);
  log.compact();
  const auto records = log.read();
  REQUIRE(records.size() == 3);
  CHECK(log.last_success("exp", "a")->key == "k49");
}
