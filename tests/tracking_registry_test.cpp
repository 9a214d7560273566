#include <doctest/doctest.h>

#include <thread>

#include "tests/support/mlflow_support.h"
#include "tests/support/test_support.h"
#include "tracking/mlflow_client.h"

using namespace petal;
using namespace petal::mlflow;
using nlohmann::json;

namespace {

json python_aliases(const std::string& model) {
  return test::python_json(
      "import json, mlflow\n"
      "c = mlflow.MlflowClient()\n"
      "m = c.get_registered_model('" + model + "')\n"
      "out = {'aliases': dict(m.aliases)}\n"
      "for a in m.aliases:\n"
      "    out[a] = c.get_model_version_by_alias('" + model + "', a).version\n"
      "print(json.dumps(out))\n");
}

}  // namespace

TEST_CASE("registry: models, versions with tags, aliases set, reassigned and deleted") {
  Client client(test::mlflow_url());
  const std::string experiment = client.ensure_experiment(test::unique_name("registry"));
  const RunInfo run1 = client.create_run(experiment, "train-1", 1700000000000);
  const RunInfo run2 = client.create_run(experiment, "train-2", 1700000001000);
  const std::string name = test::unique_name("flowers-classifier");

  CHECK_FALSE(client.get_registered_model(name).has_value());
  const RegisteredModel created = client.create_registered_model(name, "five flower classes", {{"team", "agri"}});
  CHECK(created.name == name);
  CHECK(created.description == "five flower classes");
  CHECK(created.aliases.empty());
  CHECK(client.ensure_registered_model(name).name == name);
  CHECK_THROWS_WITH_AS(client.create_registered_model(name), doctest::Contains("RESOURCE_ALREADY_EXISTS"), MlflowError);

  const ModelVersion v1 = client.create_model_version(name, run1.artifact_uri + "/model", run1.run_id,
                                                      {{"val_accuracy", "0.91"}, {"arch", "resnet18"}}, "first");
  const ModelVersion v2 = client.create_model_version(name, run2.artifact_uri + "/model", run2.run_id,
                                                      {{"val_accuracy", "0.94"}, {"arch", "resnet34"}});
  CHECK(v1.version == "1");
  CHECK(v2.version == "2");
  CHECK(v1.name == name);
  CHECK(v1.run_id == run1.run_id);
  CHECK(v1.source == run1.artifact_uri + "/model");
  CHECK(v1.status == "READY");
  CHECK(v1.tags == std::map<std::string, std::string>{{"val_accuracy", "0.91"}, {"arch", "resnet18"}});
  client.set_model_version_tag(name, "1", "validated", "true");
  client.set_model_version_tag(name, "1", "arch", "resnet18-v2");  // upsert

  const auto versions = client.search_model_versions(name);
  REQUIRE(versions.size() == 2);
  CHECK(versions[0].version == "1");
  CHECK(versions[1].version == "2");
  CHECK(versions[0].tags.at("validated") == "true");
  CHECK(versions[0].tags.at("arch") == "resnet18-v2");
  CHECK(versions[1].tags.at("val_accuracy") == "0.94");
  CHECK(versions[1].run_id == run2.run_id);

  CHECK_FALSE(client.get_version_by_alias(name, "champion").has_value());
  client.set_alias(name, "champion", "1");
  auto champion = client.get_version_by_alias(name, "champion");
  REQUIRE(champion.has_value());
  CHECK(champion->version == "1");
  CHECK(champion->aliases == std::vector<std::string>{"champion"});
  CHECK(champion->tags.at("validated") == "true");
  CHECK(client.get_registered_model(name)->aliases == std::map<std::string, std::string>{{"champion", "1"}});
  CHECK(python_aliases(name) == json{{"aliases", {{"champion", "1"}}}, {"champion", "1"}});

  client.set_alias(name, "champion", "2");  // reassign
  client.set_alias(name, "champion", "2");  // idempotent
  client.set_alias(name, "challenger", "1");
  client.set_alias(name, "v2-candidate", "2");  // starts with v but is not v<digits>
  CHECK(client.get_version_by_alias(name, "champion")->version == "2");
  CHECK(client.get_registered_model(name)->aliases ==
        std::map<std::string, std::string>{{"champion", "2"}, {"challenger", "1"}, {"v2-candidate", "2"}});
  CHECK(python_aliases(name) == json{{"aliases", {{"champion", "2"}, {"challenger", "1"}, {"v2-candidate", "2"}}},
                                     {"champion", "2"},
                                     {"challenger", "1"},
                                     {"v2-candidate", "2"}});
  const auto with_aliases = client.search_model_versions(name);
  REQUIRE(with_aliases.size() == 2);
  CHECK(with_aliases[0].aliases == std::vector<std::string>{"challenger"});
  CHECK(with_aliases[1].aliases.size() == 2);

  client.delete_alias(name, "champion");
  client.delete_alias(name, "v2-candidate");
  CHECK_FALSE(client.get_version_by_alias(name, "champion").has_value());
  CHECK(client.get_registered_model(name)->aliases == std::map<std::string, std::string>{{"challenger", "1"}});
  CHECK(python_aliases(name) == json{{"aliases", {{"challenger", "1"}}}, {"challenger", "1"}});

  CHECK_THROWS_WITH_AS(client.set_alias(name, "champion", "7"), doctest::Contains("refused"), MlflowError);
  CHECK_FALSE(client.get_version_by_alias(test::unique_name("no-such-model"), "champion").has_value());
  CHECK(client.search_model_versions(test::unique_name("no-such-model")).empty());
}

TEST_CASE("registry: invalid alias names are refused on petal's side") {
  Client client(test::mlflow_url());
  const std::string name = client.ensure_registered_model(test::unique_name("alias-rules")).name;
  for (const char* reserved : {"latest", "Latest", "LATEST"}) {
    CHECK_THROWS_WITH_AS(client.set_alias(name, reserved, "1"),
                         doctest::Contains("is reserved by MLflow (it always means the newest version)"), PetalError);
  }
  for (const char* version : {"v1", "V12", "v007"}) {
    CHECK_THROWS_WITH_AS(client.set_alias(name, version, "1"), doctest::Contains("(v<number> names a version)"),
                         PetalError);
  }
  for (const char* bad : {"bad alias", "a.b", "prod/eu", "caf\xc3\xa9", "x'y"}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(client.set_alias(name, bad, "1"), doctest::Contains("may contain only letters, digits, '_' and '-'"),
                         PetalError);
  }
  CHECK_THROWS_WITH_AS(client.set_alias(name, "", "1"), "model alias must not be empty", PetalError);
  CHECK_THROWS_WITH_AS(client.set_alias(name, std::string(256, 'a'), "1"),
                       doctest::Contains("is 256 characters long; MLflow allows at most 255"), PetalError);
  CHECK_THROWS_AS(client.get_version_by_alias(name, "latest"), PetalError);
  CHECK_THROWS_AS(client.delete_alias(name, "v3"), PetalError);
  try {
    client.set_alias(name, "latest", "1");
  } catch (const MlflowError&) {
    FAIL("the reserved name must be refused before the request, not by the server");
  } catch (const PetalError&) {
  }

  // The longest valid alias and the edge cases that are allowed reach the server and are accepted.
  const RunInfo run = client.create_run(client.ensure_experiment(test::unique_name("alias-rules")), "r", 1700000000000);
  client.create_model_version(name, run.artifact_uri + "/model", run.run_id);
  for (const std::string& ok : {std::string(255, 'a'), std::string("v"), std::string("v1a"), std::string("latest-good"),
                               std::string("_-_"), std::string("Stage_2")}) {
    CAPTURE(ok);
    client.set_alias(name, ok, "1");
    CHECK(client.get_version_by_alias(name, ok)->version == "1");
  }
}

TEST_CASE("registry: ensure_registered_model tolerates a concurrent creator - quoted names are searchable") {
  const std::string url = test::mlflow_url();
  const std::string name = test::unique_name("race");
  std::vector<std::string> results(4);
  std::vector<std::string> errors(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      try {
        Client client(url);
        results[static_cast<std::size_t>(i)] = client.ensure_registered_model(name).name;
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(i)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4; ++i) {
    CHECK(errors[static_cast<std::size_t>(i)] == "");
    CHECK(results[static_cast<std::size_t>(i)] == name);
  }

  Client client(url);
  const std::string quoted = test::unique_name("it's-a-model");
  client.create_registered_model(quoted);
  const RunInfo run = client.create_run(client.ensure_experiment(test::unique_name("quoted")), "r", 1700000000000);
  client.create_model_version(quoted, run.artifact_uri + "/model", run.run_id);
  client.create_model_version(quoted, run.artifact_uri + "/model", run.run_id);
  const auto versions = client.search_model_versions(quoted);
  REQUIRE(versions.size() == 2);
  CHECK(versions[0].name == quoted);
  CHECK_THROWS_WITH_AS(client.search_model_versions("both ' and \""), doctest::Contains("cannot quote it"), PetalError);
}
