#include <doctest/doctest.h>

#include <cmath>

#include "tests/support/mlflow_support.h"
#include "tests/support/test_support.h"
#include "tracking/mlflow_client.h"
#include "tracking/mlflow_limits.h"

using namespace petal;
using namespace petal::mlflow;
using nlohmann::json;

TEST_CASE("experiments: get-by-name, create, ensure restores a deleted one") {
  Client client(test::mlflow_url());
  const std::string name = test::unique_name("exp");
  CHECK_FALSE(client.get_experiment_by_name(name).has_value());
  const std::string id = client.ensure_experiment(name);
  CHECK(client.get_experiment_by_name(name)->experiment_id == id);
  CHECK(client.ensure_experiment(name) == id);
  client.call("POST", "experiments/delete", {{"experiment_id", id}});
  CHECK(client.get_experiment_by_name(name)->lifecycle_stage == "deleted");
  CHECK(client.ensure_experiment(name) == id);
  CHECK(client.get_experiment_by_name(name)->lifecycle_stage == "active");
  CHECK_THROWS_WITH_AS(client.create_experiment(name), doctest::Contains("RESOURCE_ALREADY_EXISTS"), MlflowError);
}

TEST_CASE("runs: create, log a batch with NaN and infinities, update, read back with MLflow's client") {
  Client client(test::mlflow_url());
  const std::string experiment = client.ensure_experiment(test::unique_name("runs"));
  const RunInfo run = client.create_run(experiment, "trial-1", 1700000000000, {{"team", "agri"}});
  CHECK(run.run_name == "trial-1");
  CHECK(run.status == "RUNNING");
  client.log_batch(run.run_id,
                   {{"loss", 0.5, 1700000000001, 0}, {"loss", 0.25, 1700000000002, 1},
                    {"weird", std::nan(""), 1700000000003, 0}, {"big", INFINITY, 1700000000004, 0}},
                   {{"lr", "0.01"}, {"model", "resnet18"}}, {{"stage.train.status", "ran"}});
  client.set_tag(run.run_id, "note", "hello");
  client.update_run(run.run_id, "FINISHED", 1700000001000);

  const json back = test::python_json(
      "import json, mlflow\n"
      "c = mlflow.MlflowClient()\n"
      "r = c.get_run('" + run.run_id + "')\n"
      "h = c.get_metric_history(r.info.run_id, 'loss')\n"
      "print(json.dumps({'status': r.info.status, 'end': r.info.end_time, 'params': r.data.params,\n"
      "  'tags': {k: v for k, v in r.data.tags.items() if not k.startswith('mlflow.')},\n"
      "  'name': r.info.run_name, 'loss': [(m.step, m.value, m.timestamp) for m in h],\n"
      "  'weird': str(r.data.metrics['weird']), 'big': r.data.metrics['big']}))\n");
  CHECK(back["status"] == "FINISHED");
  CHECK(back["end"] == 1700000001000);
  CHECK(back["name"] == "trial-1");
  CHECK(back["params"] == json{{"lr", "0.01"}, {"model", "resnet18"}});
  CHECK(back["tags"] == json{{"team", "agri"}, {"stage.train.status", "ran"}, {"note", "hello"}});
  CHECK(back["loss"] == json::parse("[[0, 0.5, 1700000000001], [1, 0.25, 1700000000002]]"));
  CHECK(back["weird"] == "nan");
  CHECK(back["big"].get<double>() > 1e308);

  const Run mine = client.get_run(run.run_id);
  CHECK(std::isnan(mine.metrics.at("weird")));
  CHECK(mine.params.at("model") == "resnet18");
}

TEST_CASE("batches are split at the server's limits and nothing is lost") {
  Client client(test::mlflow_url());
  const std::string experiment = client.ensure_experiment(test::unique_name("limits"));
  const RunInfo run = client.create_run(experiment, "big", 1700000000000);
  std::vector<Metric> metrics;
  for (int i = 0; i < 2500; ++i) metrics.push_back({"m" + std::to_string(i % 5), double(i), 1700000000000 + i, i});
  std::vector<Param> params;
  for (int i = 0; i < 150; ++i) params.push_back({"p" + std::to_string(i), std::to_string(i)});
  std::vector<Tag> tags;
  for (int i = 0; i < 250; ++i) tags.push_back({"t" + std::to_string(i), std::to_string(i)});
  const auto batches = split_batches(metrics, params, tags);
  for (const auto& b : batches) {
    CHECK(b.metrics.size() <= 1000);
    CHECK(b.params.size() <= 100);
    CHECK(b.tags.size() <= 100);
    CHECK(b.metrics.size() + b.params.size() + b.tags.size() <= 1000);
  }
  client.log_batch(run.run_id, metrics, params, tags);
  const json back = test::python_json(
      "import json, mlflow\n"
      "c = mlflow.MlflowClient()\n"
      "r = c.get_run('" + run.run_id + "')\n"
      "n = sum(len(c.get_metric_history(r.info.run_id, 'm%d' % k)) for k in range(5))\n"
      "print(json.dumps({'params': len(r.data.params), 'tags': len([t for t in r.data.tags if t.startswith('t')]), 'values': n}))\n");
  CHECK(back == json{{"params", 150}, {"tags", 250}, {"values", 2500}});
  CHECK(client.metric_history(run.run_id, "m0").size() == 500);
}

TEST_CASE("what the server would reject is refused on petal's side with a clear error") {
  CHECK(check_key("train/loss") == "");
  CHECK(check_key("a..b") == "must not contain '..'");
  CHECK(check_key("/abs") == "must not start with '/'");
  CHECK(check_key("bad$key") == "may only contain letters, digits, '_', '-', '.', ' ', ':' and '/'");
  CHECK(check_key(std::string(251, 'k')) == "is longer than 250 characters");
  Client client(test::mlflow_url());
  CHECK_THROWS_WITH_AS(client.log_batch("r", {{"bad$key", 1, 1, 0}}),
                       "MLflow metric key 'bad$key' may only contain letters, digits, '_', '-', '.', ' ', ':' and '/'; rename it",
                       PetalError);
  CHECK_THROWS_WITH_AS(client.log_batch("r", {}, {{"p", std::string(6001, 'x')}}),
                       doctest::Contains("has a value of 6001 characters; the server keeps at most 6000"), PetalError);
}

TEST_CASE("search, paging and dataset inputs") {
  Client client(test::mlflow_url());
  const std::string experiment = client.ensure_experiment(test::unique_name("search"));
  for (int i = 0; i < 3; ++i) {
    const RunInfo r = client.create_run(experiment, "r" + std::to_string(i), 1700000000000 + i);
    client.log_batch(r.run_id, {{"acc", 0.5 + 0.1 * i, 1700000000000, 0}}, {{"model", i == 2 ? "vgg" : "resnet"}});
  }
  CHECK(client.search_all_runs({experiment}).size() == 3);
  const auto resnets = client.search_all_runs({experiment}, "params.model = 'resnet'");
  CHECK(resnets.size() == 2);
  const auto page = client.search_runs({experiment}, "", {"metrics.acc DESC"}, 2);
  REQUIRE(page.runs.size() == 2);
  CHECK(page.runs[0].params.at("model") == "vgg");
  CHECK_FALSE(page.next_page_token.empty());

  const std::string run_id = resnets[0].info.run_id;
  client.log_inputs(run_id, {Dataset{"flowers5-split", "0123456789abcdef0123456789abcdef", "local",
                                     "{\"uri\": \"/data/flowers5\"}", "", "", {{"mlflow.data.context", "training"}}}});
  const json back = test::python_json(
      "import json, mlflow\n"
      "r = mlflow.MlflowClient().get_run('" + run_id + "')\n"
      "d = r.inputs.dataset_inputs[0]\n"
      "print(json.dumps({'name': d.dataset.name, 'digest': d.dataset.digest, 'context': d.tags[0].value}))\n");
  CHECK(back == json{{"name", "flowers5-split"}, {"digest", "0123456789abcdef0123456789abcdef"}, {"context", "training"}});
}

TEST_CASE("bad answers become clear errors: HTML error page, truncated JSON, wrong status, no server") {
  test::TempDir dir;
  test::write_file(dir / "api/2.0/mlflow/experiments/get-by-name", "{\"experiment\": {\"experiment_id\": \"1\", ");
  test::HttpServer server(dir.path());
  const std::string base = server.url("");
  HttpSettings settings = HttpSettings::from_environment(base.substr(0, base.size() - 1));
  settings.max_attempts = 2;
  settings.initial_backoff_ms = 10;
  Client client(settings);
  CHECK_THROWS_WITH_AS(client.get_experiment_by_name("x"),
                       doctest::Contains("answered GET experiments/get-by-name with malformed JSON (HTTP 200)"),
                       MlflowError);
  CHECK_THROWS_WITH_AS(client.get_run("r"), doctest::Contains("answered GET runs/get with HTTP 404: "), MlflowError);
  try {
    client.create_experiment("x");
    FAIL("expected an error");
  } catch (const MlflowError& e) {
    CHECK(e.status() == 501);
    CHECK(std::string(e.what()).find("<") == std::string::npos);  // HTML reduced to its text
  }
  HttpSettings nowhere = HttpSettings::from_environment("http://127.0.0.1:9");
  nowhere.max_attempts = 2;
  nowhere.initial_backoff_ms = 10;
  CHECK_THROWS_WITH_AS(Client(nowhere).get_run("r"), doctest::Contains("cannot reach http://127.0.0.1:9 (GET /api/2.0/mlflow/runs/get)"),
                       HttpUnreachable);
}

TEST_CASE("credentials never appear in error messages") {
  CHECK(redact_url("http://user:secret@host:5000/x") == "http://***@host:5000/x");
  CHECK(redact_url("http://host:5000") == "http://host:5000");
  HttpSettings settings = HttpSettings::from_environment("http://user:secret@127.0.0.1:9");
  settings.max_attempts = 1;
  try {
    Client(settings).get_run("r");
  } catch (const PetalError& e) {
    CHECK(std::string(e.what()).find("secret") == std::string::npos);
  }
}
