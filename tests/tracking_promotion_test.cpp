// The register stage's server side against a real MLflow server: versions by model digest,
// champion/challenger gating, the model uploaded when the run lacks it, and model URIs resolved
// and downloaded for `petal predict`.
#include <doctest/doctest.h>

#include "tests/support/mlflow_support.h"
#include "tests/support/test_support.h"
#include "tracking/model_promotion.h"
#include "tracking/model_uri.h"

using namespace petal;
using namespace petal::mlflow;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A stand-in MLflow model folder: what register_and_promote looks for is MLmodel; the weights file
// is only hashed by the register stage, so its bytes just make versions distinct.
fs::path fake_model(const test::TempDir& dir, const std::string& name) {
  const fs::path model = dir / name;
  test::write_file(model / "MLmodel", "artifact_path: model\nflavors: {}\n");
  test::write_file(model / "data" / "model.pt", "weights of " + name);
  return model;
}

ModelRegistration request_for(const std::string& registered, const fs::path& model, double f1, double margin) {
  ModelRegistration request;
  request.registered_model = registered;
  request.artifact_path = "evaluate/model";
  request.local_model_dir = model.string();
  request.model_digest = "digest-of-" + model.filename().string();
  request.metrics = {{"test_f1", f1}, {"test_accuracy", f1 + 0.01}};
  request.tags = {{"petal.dataset_digest", "abc123"}};
  request.margin = margin;
  return request;
}

json python_state(const std::string& model) {
  return test::python_json(
      "import json, mlflow\n"
      "c = mlflow.MlflowClient()\n"
      "m = c.get_registered_model('" + model + "')\n"
      "vs = c.search_model_versions(\"name='" + model + "'\")\n"
      "print(json.dumps({'aliases': dict(m.aliases), 'versions': sorted(v.version for v in vs),\n"
      "                  'tags': {v.version: dict(v.tags) for v in vs}}))\n");
}

}  // namespace

TEST_CASE("promotion: first model champion, better beyond margin champion, tie and worse challenger, no duplicates") {
  Client client(test::mlflow_url());
  const std::string experiment = client.ensure_experiment(test::unique_name("promotion"));
  const std::string name = test::unique_name("flowers-promotion");
  test::TempDir dir;

  const RunInfo run1 = client.create_run(experiment, "first", 1700000000000);
  const auto first = register_and_promote(client, run1, request_for(name, fake_model(dir, "m1"), 0.80, 0.02));
  CHECK(first.created);
  CHECK(first.version == "1");
  CHECK(first.alias == "champion");
  CHECK(first.reason == "there was no champion");
  CHECK(first.source == run1.artifact_uri + "/evaluate/model");
  // The run lacked the model: it was uploaded, so the version's source resolves.
  bool uploaded = false;
  for (const auto& f : client.list_artifacts(run1.run_id, "evaluate/model")) uploaded |= f.path == "evaluate/model/MLmodel";
  CHECK(uploaded);

  const RunInfo run2 = client.create_run(experiment, "better", 1700000001000);
  const auto better = register_and_promote(client, run2, request_for(name, fake_model(dir, "m2"), 0.85, 0.02));
  CHECK(better.version == "2");
  CHECK(better.alias == "champion");
  CHECK(better.previous_champion == "1");
  CHECK(better.champion_metric.value_or(-1) == doctest::Approx(0.80));

  const RunInfo run3 = client.create_run(experiment, "tie", 1700000002000);
  const auto tie = register_and_promote(client, run3, request_for(name, fake_model(dir, "m3"), 0.86, 0.02));
  CHECK(tie.version == "3");
  CHECK(tie.alias == "challenger");
  CHECK(tie.reason.find("not by more than the margin") != std::string::npos);

  const RunInfo run4 = client.create_run(experiment, "worse", 1700000003000);
  const auto worse = register_and_promote(client, run4, request_for(name, fake_model(dir, "m4"), 0.70, 0.0));
  CHECK(worse.version == "4");
  CHECK(worse.alias == "challenger");

  // The same model again (same digest): no new version; it is still the champion.
  const auto again = register_and_promote(client, run2, request_for(name, dir / "m2", 0.85, 0.02));
  CHECK_FALSE(again.created);
  CHECK(again.version == "2");
  CHECK(again.alias == "champion");

  const json state = python_state(name);
  CHECK(state["versions"] == json::array({"1", "2", "3", "4"}));
  CHECK(state["aliases"] == json{{"champion", "2"}, {"challenger", "4"}});
  CHECK(state["tags"]["2"]["metric.test_f1"] == "0.85");
  CHECK(state["tags"]["2"]["petal.dataset_digest"] == "abc123");
  CHECK(state["tags"]["2"]["petal.model_digest"] == "digest-of-m2");
  CHECK(state["tags"]["3"]["petal.promotion"].get<std::string>().find("margin") != std::string::npos);
}

TEST_CASE("model URIs: models:/name@alias, models:/name/version and runs:/ download once, and errors say what exists") {
  Client client(test::mlflow_url());
  const std::string experiment = client.ensure_experiment(test::unique_name("model-uri"));
  const std::string name = test::unique_name("flowers-uri");
  test::TempDir dir;
  const RunInfo run = client.create_run(experiment, "uri", 1700000000000);
  register_and_promote(client, run, request_for(name, fake_model(dir, "m1"), 0.9, 0.0));
  const auto connect = [&client]() -> Client& { return client; };

  const ModelLocation by_alias = resolve_model_uri("models:/" + name + "@champion", connect, dir / "cache");
  CHECK(by_alias.downloaded);
  CHECK(test::read_file(by_alias.dir / "data" / "model.pt") == "weights of m1");
  CHECK(by_alias.resolved.find("= version 1") != std::string::npos);
  const ModelLocation by_version = resolve_model_uri("models:/" + name + "/1", connect, dir / "cache");
  CHECK_FALSE(by_version.downloaded);  // the same run artifact: the cached copy
  CHECK(by_version.dir == by_alias.dir);
  const ModelLocation by_run = resolve_model_uri("runs:/" + run.run_id + "/evaluate/model", connect, dir / "cache");
  CHECK(by_run.dir == by_alias.dir);
  const ModelLocation local = resolve_model_uri((dir / "m1").string(), connect, dir / "cache");
  CHECK(local.dir == dir / "m1");

  CHECK_THROWS_WITH_AS(resolve_model_uri("models:/" + name + "@staging", connect, dir / "cache"),
                       doctest::Contains("the model's aliases are: champion -> 1"), PetalError);
  CHECK_THROWS_WITH_AS(resolve_model_uri("models:/no-such-model-xyz/1", connect, dir / "cache"),
                       doctest::Contains("there is no registered model named 'no-such-model-xyz'"), PetalError);
  CHECK_THROWS_WITH_AS(resolve_model_uri("models:/" + name, connect, dir / "cache"),
                       doctest::Contains("models:/<name>@<alias>"), PetalError);
  CHECK_THROWS_WITH_AS(resolve_model_uri((dir / "missing").string(), connect, dir / "cache"),
                       doctest::Contains("is neither a folder nor a runs:/ or models:/ URI"), PetalError);
}
