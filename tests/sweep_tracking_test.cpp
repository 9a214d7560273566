// `petal sweep` and `petal compare` against a real MLflow server, read back with MLflow's Python
// client: one parent run per sweep, each trial a child run (mlflow.parentRunId), the comparison on
// the parent, and after a kill the same command continues in the same runs (no duplicates).
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "pipeline/sweep/sweep_state.h"
#include "tests/support/mlflow_support.h"
#include "tests/support/test_support.h"

namespace petal {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;

// Three trials of shell stages: a shared `prep`, and `fit` reporting a score and a curve.
void write_sweep(const TempDir& dir, const std::string& experiment, double wait) {
  test::write_file(dir / "base.toml", "name = \"" + experiment + "\"\n[tracking]\nuri = \"" + test::mlflow_url() + "\"\n"
                                      "[prep]\nkind = \"shell\"\ncommand = \"echo data > $PETAL_OUT/data\"\n"
                                      "[fit]\nkind = \"shell\"\nneeds = [\"prep\"]\ncommand = \"true\"\n");
  std::string commands;
  for (const char* score : {"0.61", "0.83", "0.72"}) {
    commands += std::string(commands.empty() ? "" : ", ") + "\"sleep " + std::to_string(wait) +
                "; echo '{\\\"val_accuracy\\\": [[1, 0.4], [2, " + score + "]]}' > $PETAL_METRICS\"";
  }
  test::write_file(dir / "sweep.toml", "name = \"" + experiment + "-sweep\"\nexperiment = \"base.toml\"\n"
                                       "description = \"three scores\"\n[grid]\nfit.command = [" + commands + "]\n"
                                       "[execution]\njobs = 1\n");
}

std::string petal_command(const TempDir& dir, const std::string& args) {
  return "cd " + dir.path().string() + " && PETAL_TRACKING=on MLFLOW_TRACKING_URI=" + test::mlflow_url() + " " + test::petal_binary() + " --state-dir state " + args;
}

json runs_of(const std::string& experiment) {
  return test::python_json(
      "import json, mlflow\n"
      "c = mlflow.tracking.MlflowClient()\n"
      "e = c.get_experiment_by_name('" + experiment + "')\n"
      "out = []\n"
      "for r in c.search_runs([e.experiment_id], max_results=100):\n"
      "    arts = [a.path for a in c.list_artifacts(r.info.run_id, 'summary')] if r.data.tags.get('petal.role') == 'sweep' else []\n"
      "    out.append({'id': r.info.run_id, 'name': r.info.run_name, 'status': r.info.status, 'tags': r.data.tags,\n"
      "                'params': r.data.params, 'metrics': r.data.metrics, 'artifacts': arts,\n"
      "                'history': [m.value for m in c.get_metric_history(r.info.run_id, 'fit.val_accuracy')]})\n"
      "print(json.dumps(out))\n");
}

TEST_CASE("sweep tracking: a parent run with the comparison, one child run per trial, petal compare lists them") {
  TempDir dir;
  const std::string experiment = test::unique_name("sweeptrack");
  write_sweep(dir, experiment, 0);
  std::string out;
  REQUIRE(test::run_command(petal_command(dir, "sweep sweep.toml 2>&1"), &out) == 0);
  INFO(out);
  const json runs = runs_of(experiment);
  REQUIRE(runs.size() == 4);
  json parent;
  std::vector<json> children;
  for (const auto& r : runs) {
    if (r["tags"].value("petal.role", "") == "sweep") parent = r;
    else children.push_back(r);
  }
  REQUIRE(parent.is_object());
  CHECK(parent["name"] == experiment + "-sweep");
  CHECK(parent["status"] == "FINISHED");
  CHECK(parent["params"]["sweep.trials"] == "3");
  CHECK(parent["params"]["sweep.grid.fit.command"].get<std::string>().find("0.83") != std::string::npos);
  CHECK(parent["tags"]["petal.best_trial"].get<std::string>().rfind("t01 ", 0) == 0);
  CHECK(parent["metrics"]["best.fit.val_accuracy"] == doctest::Approx(0.83));
  CHECK(parent["tags"]["mlflow.note.content"].get<std::string>().find("three scores") != std::string::npos);
  for (const char* file : {"summary/comparison.csv", "summary/comparison.md", "summary/summary.json", "summary/objective.png",
                           "summary/validation_curves.png"}) {
    CHECK_MESSAGE(std::find(parent["artifacts"].begin(), parent["artifacts"].end(), file) != parent["artifacts"].end(), file);
  }
  REQUIRE(children.size() == 3);
  std::string best_child;
  for (const auto& c : children) {
    CHECK(c["tags"]["mlflow.parentRunId"] == parent["id"]);
    CHECK(c["status"] == "FINISHED");
    CHECK(c["tags"]["petal.sweep"] == experiment + "-sweep");
    CHECK(c["params"].contains("fit.command"));
    CHECK(c["history"].size() == 2);  // the per-epoch series, not just the final value
    if (c["tags"]["petal.trial"] == "t01") best_child = c["id"];
  }
  CHECK(parent["tags"]["petal.best_run_id"] == best_child);

  REQUIRE(test::run_command(petal_command(dir, "compare " + experiment + " --sweep " + experiment + "-sweep --metrics fit.val_accuracy 2>&1"), &out) == 0);
  INFO(out);
  CHECK(out.find(experiment + ": 3 runs") != std::string::npos);
  CHECK(out.find("fit.val_accuracy") != std::string::npos);
  // Highest first: the t01 row (0.83) precedes t02 (0.72) and t00 (0.61).
  const auto at_83 = out.find("0.8300"), at_72 = out.find("0.7200"), at_61 = out.find("0.6100");
  CHECK(at_83 < at_72);
  CHECK(at_72 < at_61);
  REQUIRE(test::run_command(petal_command(dir, "compare base.toml --csv --top 1 --include-parents 2>&1"), &out) == 0);
  CHECK(out.rfind("run,status,started (UTC),", 0) == 0);
  CHECK(std::count(out.begin(), out.end(), '\n') == 2);
  CHECK(test::run_command(petal_command(dir, "compare no-such-experiment 2>&1"), &out) == 2);
  CHECK(out.find("has no experiment named 'no-such-experiment'") != std::string::npos);
}

TEST_CASE("sweep tracking: killed and resumed, the sweep keeps its parent and each trial its one child run") {
  TempDir dir;
  const std::string experiment = test::unique_name("sweepresume");
  write_sweep(dir, experiment, 1.5);
  const std::string command = "cd " + dir.path().string() + " && PETAL_TRACKING=on exec " + test::petal_binary() +
                              " --state-dir state sweep sweep.toml > first.log 2>&1";
  const int pid = test::spawn_in_process_group(command);
  REQUIRE(pid > 0);
  // Wait until t00 finished and t01 is running, then kill the whole process group (petal and its stage).
  const fs::path state_file = test::wait_for_sweep_state(dir / "state", [](const SweepState& state) {
    return state.trials[0].status == TrialStatus::Finished && state.trials[1].status == TrialStatus::Running;
  });
  REQUIRE(!state_file.empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  test::kill_process_group(pid);

  std::string out;
  REQUIRE(test::run_command(petal_command(dir, "sweep sweep.toml 2>&1"), &out) == 0);
  INFO(out);
  CHECK(out.find("[t01] resuming") != std::string::npos);
  const json runs = runs_of(experiment);
  CHECK(runs.size() == 4);  // one parent, three children: nothing created twice
  std::string parent_id;
  for (const auto& r : runs) {
    if (r["tags"].value("petal.role", "") == "sweep") parent_id = r["id"];
  }
  for (const auto& r : runs) {
    CHECK(r["status"] == "FINISHED");
    if (r["id"] != parent_id) CHECK(r["tags"]["mlflow.parentRunId"] == parent_id);
  }
}

TEST_CASE("sweep tracking: trial processes share one parent run, created once, and --summarize logs the comparison to it") {
  TempDir dir;
  const std::string experiment = test::unique_name("sweeptrials");
  write_sweep(dir, experiment, 1.0);
  // Trials 0 and 1 at once: whichever arrives first creates the parent, the other finds it.
  std::string out;
  const std::string trial = petal_command(dir, "sweep sweep.toml --trial-index ");
  REQUIRE(test::run_command("{ (" + trial + "0 > t0.log 2>&1; echo $? > " + (dir / "t0.code").string() + ") & (" + trial +
                                "1 > t1.log 2>&1; echo $? > " + (dir / "t1.code").string() + ") & wait; }",
                            &out) == 0);
  INFO(test::read_file(dir / "t0.log"), test::read_file(dir / "t1.log"));
  CHECK(test::read_file(dir / "t0.code") == "0\n");
  CHECK(test::read_file(dir / "t1.code") == "0\n");
  const std::string logs = test::read_file(dir / "t0.log") + test::read_file(dir / "t1.log");
  CHECK(logs.find("(created by this trial)") != std::string::npos);
  CHECK(logs.find("(found in the state)") != std::string::npos);
  REQUIRE(test::run_command(petal_command(dir, "sweep sweep.toml --trial-index 2 2>&1"), &out) == 0);
  REQUIRE(test::run_command(petal_command(dir, "sweep sweep.toml --summarize 2>&1"), &out) == 0);
  INFO(out);
  CHECK(out.find("best: t01") != std::string::npos);

  const json runs = runs_of(experiment);
  REQUIRE(runs.size() == 4);  // one parent, three children
  json parent;
  for (const auto& r : runs) {
    if (r["tags"].value("petal.role", "") == "sweep") parent = r;
  }
  REQUIRE(parent.is_object());
  CHECK(parent["status"] == "FINISHED");
  CHECK(parent["tags"]["petal.best_trial"].get<std::string>().rfind("t01 ", 0) == 0);
  CHECK(parent["metrics"]["best.fit.val_accuracy"] == doctest::Approx(0.83));
  CHECK(std::find(parent["artifacts"].begin(), parent["artifacts"].end(), "summary/comparison.csv") != parent["artifacts"].end());
  for (const auto& r : runs) {
    if (r["id"] == parent["id"]) continue;
    CHECK(r["status"] == "FINISHED");
    CHECK(r["tags"]["mlflow.parentRunId"] == parent["id"]);
    if (r["tags"]["petal.trial"] == "t01") CHECK(parent["tags"]["petal.best_run_id"] == r["id"]);
  }
}

}  // namespace
}  // namespace petal
