#include <doctest/doctest.h>

#include <map>
#include <sstream>

#include "pipeline/exec/executor.h"
#include "tests/support/test_support.h"

using namespace petal;
using petal::test::TempDir;

namespace {

// Runs an experiment text in `dir` with state under dir/state; returns the outcomes by stage name
// and each stage's out/ folder.
struct Ran {
  RunResult result;
  std::map<std::string, std::filesystem::path> out;
  std::map<std::string, StageOutcome> by_stage;
};

Ran run_text(const TempDir& dir, const std::string& text, std::vector<std::string> overrides = {}) {
  test::write_file(dir / "x.toml", text);
  const Experiment e = load_experiment(dir / "x.toml", test::test_registry(), LoadOptions{std::move(overrides)});
  const Graph g = Graph::build(e, test::test_registry());
  StageCache cache(dir / "state/cache");
  DigestCache digests(dir / "state/digests.tsv");
  RunLog log(dir / "state/runs.log");
  const Plan plan = make_plan(g, cache, digests, false);
  ExecutionObserver quiet;
  ExecuteOptions options;
  options.run_id = "r";
  options.experiment = e.name;
  options.base_dir = dir.path();
  Ran ran;
  ran.result = execute(plan, cache, log, quiet, options);
  for (const auto& sp : plan.stages) {
    ran.out[sp.node->name()] = cache.out_dir(sp.key);
    ran.by_stage[sp.node->name()] = ran.result.outcomes[sp.node->index];
  }
  return ran;
}

void make_image_folder(const std::filesystem::path& root, const std::map<std::string, int>& counts) {
  for (const auto& [label, n] : counts) {
    for (int i = 0; i < n; ++i) test::write_file(root / label / (label + std::to_string(i) + ".jpg"), label + std::to_string(i));
  }
}

std::map<std::string, std::map<std::string, int>> split_counts(const std::filesystem::path& split_tsv) {
  std::map<std::string, std::map<std::string, int>> counts;
  std::istringstream in(test::read_file(split_tsv));
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string path, label, split;
    std::getline(f, path, '\t');
    std::getline(f, label, '\t');
    std::getline(f, split, '\t');
    ++counts[label][split];
  }
  return counts;
}

const char* kDataPipeline = "name = \"data\"\n[download]\npath = \"images\"\n[split]\n";

}  // namespace

TEST_CASE("download lists an image folder by class with content digests") {
  TempDir dir;
  make_image_folder(dir / "images", {{"daisy", 3}, {"rose", 2}});
  test::write_file(dir / "images/readme.txt", "not an image");
  test::write_file(dir / "images/loose.jpg", "no class folder");
  const Ran ran = run_text(dir, kDataPipeline);
  REQUIRE(ran.result.exit_code == 0);
  const std::string files = test::read_file(ran.out.at("download") / "files.tsv");
  CHECK(files.rfind("path\tlabel\tsize\tsha256\ndaisy/daisy0.jpg\tdaisy\t6\t", 0) == 0);
  CHECK(test::read_file(ran.out.at("download") / "classes.txt") == "daisy\nrose\n");
  CHECK(ran.by_stage.at("download").report.metrics.at("images") == 5);
  CHECK(ran.by_stage.at("download").report.notes.at(1) ==
        "ignored 1 non-image files and 1 images outside class folders");
}

TEST_CASE("a changed image re-runs download and split, an unchanged folder is cached") {
  TempDir dir;
  make_image_folder(dir / "images", {{"a", 4}, {"b", 4}});
  run_text(dir, kDataPipeline);
  CHECK(run_text(dir, kDataPipeline).result.count(StageStatus::Cached) == 2);
  test::write_file(dir / "images/a/a0.jpg", "changed");
  CHECK(run_text(dir, kDataPipeline).result.count(StageStatus::Ran) == 2);
}

TEST_CASE("a missing dataset folder is a clear error naming the parameter") {
  TempDir dir;
  test::write_file(dir / "x.toml", kDataPipeline);
  const Experiment e = load_experiment(dir / "x.toml", test::test_registry());
  const Graph g = Graph::build(e, test::test_registry());
  StageCache cache(dir / "state/cache");
  DigestCache digests(dir / "state/digests.tsv");
  try {
    make_plan(g, cache, digests, false);
    FAIL("expected an error");
  } catch (const PetalError& error) {
    CHECK(error.where().line == 3);
    CHECK(error.message() == "download.path: " + (dir / "images").string() +
                                 " does not exist; point download.path at an existing file or folder (or override "
                                 "it with --set download.path=PATH)");
  }
}

TEST_CASE("split is stratified, reproducible for a seed, and different for another seed") {
  TempDir dir;
  make_image_folder(dir / "images", {{"a", 50}, {"b", 30}, {"c", 20}});
  const Ran first = run_text(dir, kDataPipeline);
  const auto counts = split_counts(first.out.at("split") / "split.tsv");
  CHECK(counts.at("a").at("train") == 40);
  CHECK(counts.at("a").at("val") == 5);
  CHECK(counts.at("a").at("test") == 5);
  CHECK(counts.at("c").at("val") == 2);
  CHECK(first.by_stage.at("split").report.metrics.at("train_images") == 80);

  TempDir other;
  make_image_folder(other / "images", {{"a", 50}, {"b", 30}, {"c", 20}});
  const Ran same = run_text(other, kDataPipeline);
  CHECK(test::read_file(same.out.at("split") / "split.tsv") == test::read_file(first.out.at("split") / "split.tsv"));
  const Ran reseeded = run_text(other, kDataPipeline, {"split.seed=7"});
  CHECK(test::read_file(reseeded.out.at("split") / "split.tsv") !=
        test::read_file(first.out.at("split") / "split.tsv"));
}

TEST_CASE("shell stages see their inputs and output folder, and report metrics") {
  TempDir dir;
  test::write_file(dir / "script.sh", "echo script-v1\n");
  const std::string text =
      "name = \"sh\"\n"
      "[make]\nkind = \"shell\"\ncommand = \"echo made > $PETAL_OUT/a.txt; echo '{\\\"score\\\": 0.75}' > $PETAL_METRICS\"\n"
      "[use]\nkind = \"shell\"\nneeds = [\"make\"]\ndeps = [\"script.sh\"]\n"
      "command = \"cat $PETAL_IN_MAKE/a.txt > $PETAL_OUT/b.txt; sh script.sh >> $PETAL_OUT/b.txt\"\n";
  const Ran ran = run_text(dir, text);
  REQUIRE(ran.result.exit_code == 0);
  CHECK(test::read_file(ran.out.at("use") / "b.txt") == "made\nscript-v1\n");
  CHECK(ran.by_stage.at("make").report.metrics.at("score") == 0.75);
  test::write_file(dir / "script.sh", "echo script-v2\n");  // a dependency's content is part of the key
  const Ran again = run_text(dir, text);
  CHECK(again.by_stage.at("make").status == StageStatus::Cached);
  CHECK(again.by_stage.at("use").status == StageStatus::Ran);
  CHECK(test::read_file(again.out.at("use") / "b.txt") == "made\nscript-v2\n");
}

TEST_CASE("a failing shell command fails the stage and shows its output") {
  TempDir dir;
  const Ran ran = run_text(dir, "name = \"sh\"\n[bad]\nkind = \"shell\"\ncommand = \"echo oops; exit 3\"\n");
  CHECK(ran.result.exit_code == kExitStageFailed);
  const StageOutcome& o = ran.by_stage.at("bad");
  CHECK(o.status == StageStatus::Failed);
  CHECK(o.error == "command failed (exit code 3); its output is in the stage log below");
  CHECK(o.log_tail == "oops\n");
}
