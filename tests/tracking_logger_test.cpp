#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "pipeline/util/fs.h"
#include <signal.h>

#include "pipeline/util/cancel.h"
#include "tests/support/fault_server.h"
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
  const SyncReport report = sync_spools([&](const std::string&) { return &again; }, dir / "spool");
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
  CHECK(sync_spools([&](const std::string&) { return &client; }, dir / "spool").completed == 1);
  test::write_file(dir / "spool/local-off.spool", spool_copy);
  CHECK(sync_spools([&](const std::string&) { return &client; }, dir / "spool").completed == 1);
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

// ---- faults: a server that refuses, answers with a web page, or never answers (issue 26) ----

namespace {

struct Refusal {
  int status;
  const char* content_type;
  const char* body;
  const char* expected;  // in the logger's error
};

std::size_t spooled_values(const Spool::State& state) {
  std::size_t n = 0;
  for (const auto& op : state.operations) n += op.value("metrics", json::array()).size();
  return n;
}

json read_back_run(const std::string& experiment) {
  return test::python_json(
      "import json, mlflow\n"
      "c = mlflow.MlflowClient()\n"
      "e = c.get_experiment_by_name('" + experiment + "')\n"
      "rs = c.search_runs([e.experiment_id])\n"
      "r = rs[0]\n"
      "print(json.dumps({'runs': len(rs), 'status': r.info.status, 'params': r.data.params,\n"
      "  'values': len(c.get_metric_history(r.info.run_id, 'loss'))}))\n");
}

}  // namespace

TEST_CASE("a server that refuses (401, 403, 404, an HTML page) keeps the whole run in the spool, and sync delivers it") {
  const Refusal cases[] = {
      {401, "application/json", R"({"error_code": "UNAUTHENTICATED", "message": "bad credentials"})", "HTTP 401"},
      {403, "text/plain", "Forbidden", "HTTP 403"},
      {404, "text/html", "<html><body>Not Found</body></html>", "HTTP 404"},
      {200, "text/html", "<html><body><h1>Sign in to continue</h1></body></html>", "malformed JSON (HTTP 200): Sign in to continue"},
  };
  for (const Refusal& c : cases) {
    CAPTURE(c.status);
    TempDir dir;
    const auto server = test::FaultServer::answering({c.status, c.content_type, c.body});
    const std::string experiment = test::unique_name("refused");
    {
      RunLogger logger(make_logger_client(server.url()), dir / "spool", "local-refused");
      logger.start_run(experiment, "refused-run", {}, now_ms());
      logger.log_param("lr", "0.1");
      for (int i = 0; i < 101; ++i) logger.log_metric("loss", 1.0 / (i + 1), i);
      logger.end_run("FINISHED");
      CHECK(logger.refused());
      CHECK(logger.offline());
      CHECK(logger.last_error().find(c.expected) != std::string::npos);
      CHECK(logger.run_id().empty());
    }
    const Spool::State kept = Spool::read(dir / "spool/local-refused.spool");
    CHECK(kept.delivered == 0);  // nothing was confirmed, so nothing is marked delivered
    CHECK(spooled_values(kept) == 101);
    // Sync against a server that still refuses keeps the spool and says why ...
    Client refusing(server.url());
    SyncReport report = sync_spools([&](const std::string&) { return &refusing; }, dir / "spool");
    CHECK(report.completed == 0);
    REQUIRE(report.errors.size() == 1);
    CHECK(report.errors[0].find(c.expected) != std::string::npos);
    CHECK(std::filesystem::exists(dir / "spool/local-refused.spool"));
    // ... and against a working one delivers every value once.
    Client working(test::mlflow_url());
    report = sync_spools([&](const std::string&) { return &working; }, dir / "spool");
    CHECK(report.errors.empty());
    CHECK(report.completed == 1);
    CHECK_FALSE(std::filesystem::exists(dir / "spool/local-refused.spool"));
    CHECK(read_back_run(experiment) == json{{"runs", 1}, {"status", "FINISHED"}, {"params", {{"lr", "0.1"}}}, {"values", 101}});
  }
}

TEST_CASE("a server that accepts and never answers: values reach the spool, the request has a deadline, an interrupt ends the run at once") {
  TempDir dir;
  const auto silent = test::FaultServer::silent();
  const std::string experiment = test::unique_name("silent");
  {
    RunLogger logger(make_logger_client(silent.url()), dir / "spool", "local-silent");
    logger.start_run(experiment, "silent-run", {}, now_ms());
    for (int i = 0; i < 101; ++i) logger.log_metric("loss", i, i);
    logger.journal();  // the sender is stuck on the first request; the values are on disk anyway
    CHECK(spooled_values(Spool::read(dir / "spool/local-silent.spool")) == 101);
    CHECK_FALSE(logger.offline());  // still waiting for the server's first answer
    Interrupt::request(SIGTERM);
    const auto start = std::chrono::steady_clock::now();
    logger.end_run("KILLED");
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    Interrupt::reset();
    MESSAGE("end_run after SIGTERM with a silent server took " << waited << " s");
    CHECK(waited < 2.0);
    CHECK(logger.offline());
    CHECK_FALSE(logger.refused());
  }
  const Spool::State kept = Spool::read(dir / "spool/local-silent.spool");
  CHECK(spooled_values(kept) == 101);
  CHECK(kept.operations.back().value("status", "") == "KILLED");
  Client working(test::mlflow_url());
  const SyncReport report = sync_spools([&](const std::string&) { return &working; }, dir / "spool");
  CHECK(report.errors.empty());
  CHECK(report.completed == 1);
  CHECK(report.killed == 0);  // its final status was journaled before the interrupt cut the wait
  const json back = read_back_run(experiment);
  CHECK(back["status"] == "KILLED");
  CHECK(back["values"] == 101);
}

TEST_CASE("every request has a deadline: a silent server costs one time-out, not one per retry") {
  const auto silent = test::FaultServer::silent();
  HttpSettings settings = HttpSettings::from_environment(silent.url());
  settings.timeout_ms = 500;
  settings.retry_budget_ms = 1200;
  Client client(settings);
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(client.get_experiment_by_name("x"), HttpUnreachable);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("a silent server: " << silent.requests() << " attempts in " << took << " s");
  CHECK(silent.requests() == 1);  // a time-out is not retried: the server is away
  CHECK(took < 1.5);
}

TEST_CASE("a run whose petal was killed (no final status in its spool) is ended as KILLED by sync") {
  TempDir dir;
  const std::string experiment = test::unique_name("orphan");
  Client client(test::mlflow_url());
  std::string run_id;
  {
    RunLogger logger(make_logger_client(test::mlflow_url()), dir / "spool", "local-orphan");
    logger.start_run(experiment, "orphan-run", {}, now_ms());
    for (int i = 0; i < 10; ++i) logger.log_metric("loss", i, i);
    logger.flush();
    run_id = logger.run_id();
    // Leaving without end_run is what a SIGKILL leaves behind: a RUNNING run and a spool.
    const SyncReport live = sync_spools([&](const std::string&) { return &client; }, dir / "spool");
    CHECK(live.spools == 0);  // its lock is held while it lives: never treated as killed
    CHECK(live.killed == 0);
  }
  CHECK(client.get_run(run_id).info.status == "RUNNING");
  SyncReport report = sync_spools([&](const std::string&) { return &client; }, dir / "spool");
  CHECK(report.errors.empty());
  CHECK(report.killed == 1);
  CHECK(report.completed == 1);
  CHECK(client.get_run(run_id).info.status == "KILLED");
  CHECK(client.get_run(run_id).info.end_time > 0);
  CHECK(sync_spools([&](const std::string&) { return &client; }, dir / "spool").spools == 0);
}
