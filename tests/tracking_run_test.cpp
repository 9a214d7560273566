#include <doctest/doctest.h>

#include "tests/support/mlflow_support.h"
#include "tests/support/test_support.h"

using namespace petal;
using nlohmann::json;
using petal::test::TempDir;

namespace {

struct TrackedProject {
  TempDir dir;
  std::string experiment = test::unique_name("tracked");
  std::string out;

  int petal(const std::string& args, const std::string& env = "") {
    return test::run_command("cd " + dir.path().string() + " && PETAL_TRACKING=on " + env + " " + test::petal_binary() +
                                 " --state-dir state " + args,
                             &out);
  }
  void write(const std::string& uri, const std::string& stages) {
    test::write_file(dir / "x.toml", "name = \"" + experiment + "\"\ndescription = \"tracked test\"\n[tracking]\nuri = \"" +
                                         uri + "\"\n" + stages);
  }
  std::string run_id() const {  // from "petal: MLflow run <id> at ..."
    const std::size_t at = out.find("petal: MLflow run ");
    REQUIRE(at != std::string::npos);
    return out.substr(at + 18, 32);
  }
};

const char* kStages =
    "[prepare]\nkind = \"shell\"\ncommand = \"echo 3 > $PETAL_OUT/n; echo '{\\\"rows\\\": 3}' > $PETAL_METRICS\"\n"
    "[score]\nkind = \"shell\"\nneeds = [\"prepare\"]\n"
    "artifacts = [\"report.txt\"]\n"
    "command = \"cat $PETAL_IN_PREPARE/n > $PETAL_OUT/n; echo fine > $PETAL_OUT/report.txt; "
    "echo '{\\\"accuracy\\\": 0.875, \\\"loss\\\": [[0, 1.5], [1, 0.5]]}' > $PETAL_METRICS\"\n";

json read_run(const std::string& run_id) {
  return test::python_json(
      "import json, mlflow\n"
      "r = mlflow.MlflowClient().get_run('" + run_id + "')\n"
      "print(json.dumps({'status': r.info.status, 'name': r.info.run_name, 'params': r.data.params,\n"
      "  'metrics': r.data.metrics, 'tags': r.data.tags, 'experiment': mlflow.MlflowClient().get_experiment(r.info.experiment_id).name,\n"
      "  'loss': [(m.step, m.value) for m in mlflow.MlflowClient().get_metric_history(r.info.run_id, 'score.loss')],\n"
      "  'artifacts': [f.path for f in mlflow.MlflowClient().list_artifacts(r.info.run_id, 'score')]}))\n");
}

}  // namespace

TEST_CASE("a petal run becomes an MLflow run with params, stage tags and metrics, and a cached re-run keeps them") {
  TrackedProject p;
  p.write(test::mlflow_url(), kStages);
  REQUIRE(p.petal("run x.toml") == 0);
  const json first = read_run(p.run_id());
  CHECK(first["status"] == "FINISHED");
  CHECK(first["experiment"] == p.experiment);
  CHECK(first["params"]["score.command"].get<std::string>().find("accuracy") != std::string::npos);
  CHECK(first["params"]["prepare.deps"] == "[]");
  CHECK(first["metrics"] == json{{"prepare.rows", 3.0}, {"score.accuracy", 0.875}, {"score.loss", 0.5}});
  CHECK(first["loss"] == json::parse("[[0, 1.5], [1, 0.5]]"));
  CHECK(first["artifacts"] == json::array({"score/report.txt"}));
  CHECK(first["tags"]["petal.stage.score.status"] == "ran");
  CHECK(first["tags"]["petal.stage.score.key"].get<std::string>().size() == 64);
  CHECK(first["tags"]["mlflow.source.name"].get<std::string>().find("x.toml") != std::string::npos);
  CHECK(first["tags"]["mlflow.note.content"] == "tracked test");
  const std::string first_run = p.run_id();

  REQUIRE(p.petal("run x.toml") == 0);
  const json second = read_run(p.run_id());
  CHECK(p.run_id() != first_run);
  CHECK(second["status"] == "FINISHED");
  CHECK(second["metrics"] == first["metrics"]);  // reused stages still show their metrics
  CHECK(second["loss"] == first["loss"]);
  CHECK(second["artifacts"] == first["artifacts"]);
  CHECK(second["tags"]["petal.stage.score.status"] == "cached");
  CHECK(second["tags"]["petal.stage.score.built_by_run"] == first["tags"]["petal.run_id"]);
  CHECK(second["tags"]["petal.stage.score.built_by_mlflow_run"] == first_run);
}

TEST_CASE("a failed stage marks the MLflow run FAILED with the error") {
  TrackedProject p;
  p.write(test::mlflow_url(), "[broken]\nkind = \"shell\"\ncommand = \"exit 4\"\n");
  CHECK(p.petal("run x.toml") == 1);
  const json run = read_run(p.run_id());
  CHECK(run["status"] == "FAILED");
  CHECK(run["tags"]["petal.error"] == "broken: command failed (exit code 4); its output is in the stage log below");
}

TEST_CASE("Ctrl-C marks the MLflow run KILLED") {
  TrackedProject p;
  p.write(test::mlflow_url(), "[slow]\nkind = \"shell\"\ncommand = \"sleep 20\"\n");
  const std::string command = "cd " + p.dir.path().string() + " && (PETAL_TRACKING=on " + test::petal_binary() +
                              " --state-dir state run x.toml > out.log 2>&1 & p=$!; sleep 2; kill -INT $p; wait $p)";
  CHECK(test::run_command(command) == 130);
  p.out = test::read_file(p.dir / "out.log");
  CHECK(read_run(p.run_id())["status"] == "KILLED");
}

TEST_CASE("with the server away the run goes on, spools everything, and petal sync delivers it once") {
  TrackedProject p;
  p.write("http://127.0.0.1:9", kStages);
  REQUIRE(p.petal("run x.toml") == 0);
  CHECK(p.out.find("petal: 2 ran, 0 cached") != std::string::npos);
  CHECK(p.out.find("petal: tracking is offline (") != std::string::npos);
  CHECK(p.out.find("run `petal sync` later") != std::string::npos);
  REQUIRE(p.petal("sync --uri " + test::mlflow_url()) == 0);
  CHECK(p.out.find("1 spooled runs") != std::string::npos);
  CHECK(p.out.find("1 runs complete") != std::string::npos);
  const json runs = test::python_json(
      "import json, mlflow\n"
      "c = mlflow.MlflowClient()\n"
      "e = c.get_experiment_by_name('" + p.experiment + "')\n"
      "rs = c.search_runs([e.experiment_id])\n"
      "print(json.dumps([{'status': r.info.status, 'metrics': r.data.metrics, 'params': len(r.data.params)} for r in rs]))\n");
  REQUIRE(runs.size() == 1);
  CHECK(runs[0]["status"] == "FINISHED");
  CHECK(runs[0]["metrics"] == json{{"prepare.rows", 3.0}, {"score.accuracy", 0.875}, {"score.loss", 0.5}});
  CHECK(runs[0]["params"] == 6);
  REQUIRE(p.petal("sync --uri " + test::mlflow_url()) == 0);
  CHECK(p.out.find("petal sync: 0 spooled runs") != std::string::npos);
}
