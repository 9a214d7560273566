#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "pipeline/util/fs.h"
#include "tests/support/mlflow_support.h"
#include "tests/support/test_support.h"
#include "tracking/local_server.h"
#include "tracking/run_logger.h"

using namespace petal;
using namespace petal::mlflow;
using nlohmann::json;
using petal::test::TempDir;

TEST_CASE("the async logger delivers every value in order, in batches") {
  TempDir dir;
  auto client = std::make_shared<Client>(test::mlflow_url());
  const std::string experiment = test::unique_name("async");
  std::string run_id;
  {
    RunLogger logger(client, dir / "spool", "local-1", RunLoggerOptions{200, 50});
    logger.start_run(experiment, "async-run", {{"k", "v"}}, now_ms());
    logger.log_param("lr", "0.1");
    for (int step = 0; step < 1000; ++step) {
      for (int k = 0; k < 3; ++k) logger.log_metric("m" + std::to_string(k), step * 0.5 + k, step);
    }
    logger.end_run("FINISHED");
    CHECK_FALSE(logger.offline());
    CHECK(logger.last_error() == "");
    run_id = logger.run_id();
  }
  CHECK_FALSE(std::filesystem::exists(dir / "spool/local-1.spool"));  // all delivered: nothing kept
  const json back = test::python_json(
      "import json, mlflow\n"
      "c = mlflow.MlflowClient()\n"
      "r = c.get_run('" + run_id + "')\n"
      "h = c.get_metric_history(r.info.run_id, 'm2')\n"
      "print(json.dumps({'status': r.info.status, 'lr': r.data.params['lr'], 'n': [len(c.get_metric_history(r.info.run_id, 'm%d' % k)) for k in range(3)],\n"
      "  'last': sorted((m.step, m.value) for m in h)[-1]}))\n");
  CHECK(back["status"] == "FINISHED");
  CHECK(back["lr"] == "0.1");
  CHECK(back["n"] == json::array({1000, 1000, 1000}));
  CHECK(back["last"] == json::array({999, 501.5}));
}

TEST_CASE("a server killed mid-run and restarted loses nothing after sync") {
  TempDir dir;
  LocalMlflowServer server(dir / "server");
  const std::string url = server.ensure_running();
  const int port = std::stoi(url.substr(url.rfind(':') + 1));
  auto client = std::make_shared<Client>(url);
  const std::string experiment = test::unique_name("killed");
  constexpr int kKeys = 10, kSteps = 300;
  std::string local_id = "local-kill";
  {
    RunLogger logger(client, dir / "spool", local_id, RunLoggerOptions{100, 20});
    logger.start_run(experiment, "survivor", {{"phase", "test"}}, now_ms());
    logger.log_param("model", "resnet18");
    for (int step = 0; step < kSteps; ++step) {
      if (step == kSteps / 3) {
        logger.flush();
        server.stop();  // the server dies a third of the way through
      }
      for (int k = 0; k < kKeys; ++k) logger.log_metric("metric" + std::to_string(k), step + k / 100.0, step);
      if (step % 50 == 0) logger.set_tag("progress", std::to_string(step));
    }
    logger.end_run("FINISHED");
    CHECK(logger.offline());
    CHECK(logger.values_logged() == kKeys * kSteps);
  }
  REQUIRE(std::filesystem::exists(dir / "spool" / (local_id + ".spool")));
  server.ensure_running(port);  // back, with the same database
  Client again(url);
  const SyncReport report = sync_spools([&](const std::string&) -> Client& { return again; }, dir / "spool");
  CHECK(report.errors.empty());
  CHECK(report.completed == 1);
  const std::string script =
      "import json, mlflow\n"
      "mlflow.set_tracking_uri('" + url + "')\n"
      "c = mlflow.MlflowClient()\n"
      "e = c.get_experiment_by_name('" + experiment + "')\n"
      "rs = c.search_runs([e.experiment_id])\n"
      "r = rs[0]\n"
      "hist = {k: sorted((m.step, m.value) for m in c.get_metric_history(r.info.run_id, k)) for k in r.data.metrics}\n"
      "print(json.dumps({'runs': len(rs), 'status': r.info.status, 'params': r.data.params, 'progress': r.data.tags.get('progress'),\n"
      "  'values': sum(len(h) for h in hist.values()), 'keys': len(hist), 'steps0': [s for s, v in hist['metric0']] == list(range(" +
      std::to_string(kSteps) + "))}))\n";
  const json back = test::python_json(script);
  MESSAGE("kill-the-server: values logged " << kKeys * kSteps << ", values read back " << back["values"]);
  CHECK(back["runs"] == 1);
  CHECK(back["status"] == "FINISHED");
  CHECK(back["params"] == json{{"model", "resnet18"}});
  CHECK(back["progress"] == "250");
  CHECK(back["keys"] == kKeys);
  CHECK(back["values"] == kKeys * kSteps);
  CHECK(back["steps0"] == true);
  server.stop();
}

TEST_CASE("a run started while the server is down gets a real MLflow run on replay, and a replay is never doubled") {
  TempDir dir;
  HttpSettings nowhere = HttpSettings::from_environment("http://127.0.0.1:9");
  nowhere.max_attempts = 1;
  auto offline = std::make_shared<Client>(nowhere);
  const std::string experiment = test::unique_name("offline");
  {
    RunLogger logger(offline, dir / "spool", "local-off");
    logger.start_run(experiment, "offline-run", {}, now_ms());
    for (int i = 0; i < 50; ++i) logger.log_metric("x", i, i);
    logger.end_run("FINISHED");
    CHECK(logger.offline());
    CHECK(logger.run_id().empty());
  }
  // Simulate a sync that was killed after creating the run but before finishing: replay twice.
  const std::string spool_copy = test::read_file(dir / "spool/local-off.spool");
  Client client(test::mlflow_url());
  CHECK(sync_spools([&](const std::string&) -> Client& { return client; }, dir / "spool").completed == 1);
  test::write_file(dir / "spool/local-off.spool", spool_copy);
  CHECK(sync_spools([&](const std::string&) -> Client& { return client; }, dir / "spool").completed == 1);
  const json back = test::python_json(
      "import json, mlflow\n"
      "c = mlflow.MlflowClient()\n"
      "e = c.get_experiment_by_name('" + experiment + "')\n"
      "rs = c.search_runs([e.experiment_id])\n"
      "print(json.dumps({'runs': len(rs), 'values': len(c.get_metric_history(rs[0].info.run_id, 'x')), 'status': rs[0].info.status}))\n");
  CHECK(back == json{{"runs", 1}, {"values", 50}, {"status", "FINISHED"}});
}

TEST_CASE("a bad metric key is refused at the call and does not sink the rest of the batch") {
  TempDir dir;
  auto client = std::make_shared<Client>(test::mlflow_url());
  std::string run_id;
  {
    RunLogger logger(client, dir / "spool", "local-badkey");
    logger.start_run(test::unique_name("badkey"), "badkey", {}, now_ms());
    for (int i = 0; i < 100; ++i) logger.log_metric("loss", i, i);
    CHECK_THROWS_WITH_AS(logger.log_metric("acc@top1", 1, 0),
                         "MLflow metric key 'acc@top1' may only contain letters, digits, '_', '-', '.', ' ', ':' and '/'; rename it",
                         PetalError);
    logger.log_param("lr", "0.1");
    logger.end_run("FINISHED");
    CHECK(logger.last_error() == "");
    run_id = logger.run_id();
  }
  CHECK(client->metric_history(run_id, "loss").size() == 100);
  CHECK(client->get_run(run_id).params.at("lr") == "0.1");
}

TEST_CASE("the spool marks what was delivered, so a later sync sends nothing twice") {
  TempDir dir;
  auto client = std::make_shared<Client>(test::mlflow_url());
  RunLogger logger(client, dir / "spool", "local-marker");
  logger.start_run(test::unique_name("marker"), "marker", {}, now_ms());
  for (int i = 0; i < 100; ++i) logger.log_metric("x", i, i);
  logger.flush();
  const Spool::State state = Spool::read(logger.spool_file());
  REQUIRE(state.operations.size() == 2);  // create_run, one log_batch
  CHECK(state.delivered == state.operations.back()["seq"].get<std::int64_t>());
  CHECK(state.run_id == logger.run_id());
  logger.end_run("FINISHED");
}
