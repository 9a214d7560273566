#include <doctest/doctest.h>

#include <cstdlib>
#include <thread>

#include "pipeline/exec/executor.h"
#include "pipeline/util/cancel.h"
#include "tests/support/test_support.h"

using namespace petal;
using petal::test::TempDir;

namespace {

struct WorkerRun {
  TempDir dir;
  RunResult result;
  Plan plan;
  std::unique_ptr<StageCache> cache;

  explicit WorkerRun(const std::string& text) {
    ::setenv("PETAL_WORKER", test::test_worker().c_str(), 1);
    test::write_file(dir / "x.toml", text);
    static Experiment experiment;  // the graph points into it; tests run one at a time
    experiment = load_experiment(dir / "x.toml", test::test_registry());
    static Graph graph;
    graph = Graph::build(experiment, test::test_registry());
    cache = std::make_unique<StageCache>(dir / "state/cache");
    DigestCache digests(dir / "state/digests.tsv");
    RunLog log(dir / "state/runs.log");
    plan = make_plan(graph, *cache, digests, false);
    ExecutionObserver quiet;
    ExecuteOptions options;
    options.run_id = "r";
    options.experiment = experiment.name;
    options.base_dir = dir.path();
    result = execute(plan, *cache, log, quiet, options);
    ::unsetenv("PETAL_WORKER");
  }
  const StageOutcome& last() const { return result.outcomes.back(); }
};

const char* kTwoStages = "name = \"w\"\n[a]\nkind = \"emit\"\ntext = \"A\"\n[b]\nkind = \"via-worker\"\nneeds = [\"a\"]\n";

}  // namespace

TEST_CASE("a worker stage reads its inputs, writes outputs that petal commits, and reports back") {
  WorkerRun run(kTwoStages);
  REQUIRE(run.result.exit_code == 0);
  CHECK(run.last().status == StageStatus::Ran);
  CHECK(test::read_file(run.cache->out_dir(run.plan.stages.back().key) / "value.txt") == "Aw");
  CHECK(run.last().report.metrics.at("threads_budget") == 1);
  CHECK(run.last().report.notes == std::vector<std::string>{"ran in a worker"});
}

TEST_CASE("a failing worker fails the stage with the worker's message") {
  WorkerRun run(std::string(kTwoStages) + "fail = true\n");
  CHECK(run.result.exit_code == kExitStageFailed);
  CHECK(run.last().error == "worker failed on purpose");
  CHECK(run.last().log_tail.find("petal-worker: b failed: worker failed on purpose") != std::string::npos);
}

TEST_CASE("interrupting petal stops the worker and commits nothing") {
  Interrupt::reset();
  std::thread interrupter([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    Interrupt::request(2);
  });
  WorkerRun run(std::string(kTwoStages) + "sleep_ms = 20000\n");
  interrupter.join();
  Interrupt::reset();
  CHECK(run.result.exit_code == kExitInterrupted);
  CHECK(run.last().status == StageStatus::Interrupted);
  CHECK(run.last().seconds < 10);
  CHECK(run.cache->lookup(run.plan.stages.back().key, false).state == EntryState::Missing);
}
