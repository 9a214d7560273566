#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include "tests/support/fault_server.h"
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

// ---- faults (issue 26): refusing and silent servers, kills with tracking on ----

namespace {

// Waits until `path` exists (the stage under test has started): never a fixed sleep.
bool wait_for_file(const std::filesystem::path& path, double seconds = 60) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!std::filesystem::exists(path)) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// `prepare` reports a metric; `hold` then waits while <dir>/hold exists, after touching <dir>/started.
std::string holding_stages(const std::filesystem::path& dir) {
  const std::string d = dir.string();
  return std::string(kStages) + "[hold]\nkind = \"shell\"\nneeds = [\"prepare\"]\ncommand = \"touch " + d +
         "/started; while [ -f " + d + "/hold ]; do sleep 0.05; done; echo '{\\\"held\\\": 1}' > $PETAL_METRICS\"\n";
}

json runs_of(const std::string& experiment) {
  return test::python_json(
      "import json, mlflow\n"
      "c = mlflow.MlflowClient()\n"
      "e = c.get_experiment_by_name('" + experiment + "')\n"
      "rs = c.search_runs([e.experiment_id], order_by=['attributes.start_time ASC'])\n"
      "print(json.dumps([{'id': r.info.run_id, 'status': r.info.status, 'metrics': r.data.metrics, 'params': len(r.data.params),\n"
      "  'end': r.info.end_time, 'tags': r.data.tags,\n"
      "  'artifacts': [f.path for f in c.list_artifacts(r.info.run_id, 'score')]} for r in rs]))\n");
}

int wait_exit(int pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

TEST_CASE("a tracking server that refuses (401) fails the run's tracking loudly and loses nothing: sync delivers the run") {
  const auto refusing = test::FaultServer::answering(
      {401, "application/json", R"({"error_code": "UNAUTHENTICATED", "message": "bad credentials"})"});
  TrackedProject p;
  p.write(refusing.url(), kStages);
  CHECK(p.petal("run x.toml") == 3);
  CHECK(p.out.find("petal: 2 ran, 0 cached") != std::string::npos);
  CHECK(p.out.find("petal: error: the MLflow server refused this run's tracking: MLflow server " + refusing.url() +
                   " refused GET experiments/get-by-name (HTTP 401 UNAUTHENTICATED): bad credentials; set "
                   "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN") != std::string::npos);
  CHECK(p.out.find("nothing was lost") != std::string::npos);
  // `petal sync` against the same refusing server keeps everything and exits 3 ...
  CHECK(p.petal("sync") == 3);
  CHECK(p.out.find("0 runs complete") != std::string::npos);
  CHECK(p.out.find("not delivered (kept in the spool)") != std::string::npos);
  // ... and against a working server delivers the whole run.
  REQUIRE(p.petal("sync --uri " + test::mlflow_url()) == 0);
  CHECK(p.out.find("1 runs complete") != std::string::npos);
  const json runs = runs_of(p.experiment);
  REQUIRE(runs.size() == 1);
  CHECK(runs[0]["status"] == "FINISHED");
  CHECK(runs[0]["metrics"] == json{{"prepare.rows", 3.0}, {"score.accuracy", 0.875}, {"score.loss", 0.5}});
  CHECK(runs[0]["params"] == 6);
  CHECK(runs[0]["artifacts"] == json::array({"score/report.txt"}));
}

TEST_CASE("SIGKILL of petal with tracking on: the next petal sync ends the MLflow run as KILLED, with what was logged") {
  TrackedProject p;
  p.write(test::mlflow_url(), holding_stages(p.dir.path()));
  test::write_file(p.dir / "hold", "");
  const int pid = test::spawn_in_process_group("cd " + p.dir.path().string() + " && PETAL_TRACKING=on exec " +
                                               test::petal_binary() + " --state-dir state run x.toml > out.log 2>&1");
  REQUIRE(wait_for_file(p.dir / "started"));
  test::kill_process_group(pid);  // the MLflow run (if the kill let it be created) stays RUNNING
  REQUIRE(p.petal("sync") == 0);
  CHECK(p.out.find("1 runs complete (1 left RUNNING by a killed petal, now ended as KILLED)") != std::string::npos);
  const json after = runs_of(p.experiment);
  REQUIRE(after.size() == 1);
  CHECK(after[0]["status"] == "KILLED");
  CHECK(after[0]["end"].get<std::int64_t>() > 0);
  CHECK(after[0]["metrics"]["prepare.rows"] == 3.0);  // a stage's results are journaled when it ends
  CHECK(p.petal("sync") == 0);
  CHECK(p.out.find("petal sync: 0 spooled runs") != std::string::npos);
}

TEST_CASE("the next petal run ends a run left RUNNING by a SIGKILL as KILLED, and links reused stages to their builders") {
  TrackedProject p;
  p.write(test::mlflow_url(), holding_stages(p.dir.path()));
  test::write_file(p.dir / "hold", "");
  const int pid = test::spawn_in_process_group("cd " + p.dir.path().string() + " && PETAL_TRACKING=on exec " +
                                               test::petal_binary() + " --state-dir state run x.toml > out.log 2>&1");
  REQUIRE(wait_for_file(p.dir / "started"));
  test::kill_process_group(pid);
  std::filesystem::remove(p.dir / "hold");
  REQUIRE(p.petal("run x.toml") == 0);
  CHECK(p.out.find("petal: delivered 1 earlier spooled runs") != std::string::npos);
  CHECK(p.out.find("1 left RUNNING by a killed petal, now KILLED") != std::string::npos);
  const json runs = runs_of(p.experiment);
  REQUIRE(runs.size() == 2);
  CHECK(runs[0]["status"] == "KILLED");
  CHECK(runs[1]["status"] == "FINISHED");
  CHECK(runs[1]["tags"]["petal.stage.prepare.status"] == "cached");
}

TEST_CASE("runs synced after being offline get the links to the runs that built their reused stages") {
  TrackedProject p;
  p.write(test::mlflow_url(), kStages);
  REQUIRE(p.petal("run x.toml") == 0);
  p.write("http://127.0.0.1:9", kStages);  // the server is away for the second, all-cached run
  REQUIRE(p.petal("run x.toml") == 0);
  CHECK(p.out.find("petal: tracking is offline (") != std::string::npos);
  REQUIRE(p.petal("sync --uri " + test::mlflow_url()) == 0);
  const json runs = runs_of(p.experiment);
  REQUIRE(runs.size() == 2);
  CHECK(runs[1]["tags"]["petal.stage.prepare.status"] == "cached");
  CHECK(runs[1]["tags"]["petal.stage.prepare.built_by_mlflow_run"] == runs[0]["id"]);
  CHECK(runs[1]["tags"]["petal.stage.score.built_by_mlflow_run"] == runs[0]["id"]);
}

TEST_CASE("SIGTERM with a tracking server that never answers: petal exits within 2 s and sync delivers everything") {
  const auto silent = test::FaultServer::silent();
  TrackedProject p;
  p.write(silent.url(), holding_stages(p.dir.path()));
  test::write_file(p.dir / "hold", "");
  const int pid = test::spawn_in_process_group("cd " + p.dir.path().string() + " && PETAL_TRACKING=on exec " +
                                               test::petal_binary() + " --state-dir state run x.toml > out.log 2>&1");
  REQUIRE(wait_for_file(p.dir / "started"));
  const auto start = std::chrono::steady_clock::now();
  kill(pid, SIGTERM);
  const int code = wait_exit(pid);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  kill(-pid, SIGKILL);  // the held stage, if it outlived petal
  MESSAGE("SIGTERM to exit with a silent tracking server: " << took << " s");
  CHECK(code == 130);
  CHECK(took < 2.0);
  const std::string out = test::read_file(p.dir / "out.log");
  CHECK(out.find("values are safe in") != std::string::npos);
  REQUIRE(p.petal("sync --uri " + test::mlflow_url()) == 0);
  const json runs = runs_of(p.experiment);
  REQUIRE(runs.size() == 1);
  CHECK(runs[0]["status"] == "KILLED");
  CHECK(runs[0]["metrics"]["prepare.rows"] == 3.0);
  CHECK(runs[0]["params"] == 9);
}

TEST_CASE("petal predict with a tracking server that never answers fails at the request deadline, naming the server") {
  const auto silent = test::FaultServer::silent();
  TempDir dir;
  test::write_bmp(dir / "photo.bmp", 1);
  std::string out;
  const auto start = std::chrono::steady_clock::now();
  const int code = test::run_command("MLFLOW_HTTP_REQUEST_TIMEOUT=1 " + test::petal_binary() + " --state-dir " +
                                         (dir / "state").string() + " predict --model models:/flowers5/1 --tracking-uri " +
                                         silent.url() + " " + (dir / "photo.bmp").string(),
                                     &out);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("predict against a silent server: exit " << code << " after " << took << " s");
  CHECK(code == 3);
  CHECK(took < 5);
  CHECK(out.find("petal: error: cannot reach " + silent.url() + " (GET /api/2.0/mlflow/model-versions/get): Operation timed out") !=
        std::string::npos);
}
