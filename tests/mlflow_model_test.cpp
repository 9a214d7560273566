// The MLflow model export (stages/evaluate/mlflow_model.h): the files it writes, MLmodel as MLflow
// itself reads it, refusals, and predictions through mlflow.pyfunc (tests/parity/pyfunc_check.py).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pipeline/util/sha256.h"
#include "stages/evaluate/mlflow_model.h"
#include "tests/support/python_reference.h"
#include "tests/support/test_support.h"

namespace petal {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using evaluate::MlflowModelOptions;
using evaluate::write_mlflow_model;

// Class names that need quoting in YAML, clash with a bare "label" column, or are not ASCII.
const std::vector<std::string> kClasses = {"daisy", "label", "l'\xC5\x93illet", "say \"hi\""};

MlflowModelOptions fixed_options() {
  MlflowModelOptions options;
  options.utc_time_created = "2026-01-02 03:04:05.000006";
  return options;
}

// A train stage's output folder. The export only hashes and links model.pt, so placeholder bytes
// do for the tests that never load it.
fs::path write_trained(const test::TempDir& dir, const std::string& name, const std::string& architecture = "small_cnn",
                       const std::string& weights = "placeholder weights") {
  const fs::path folder = dir / name;
  fs::create_directories(folder);
  test::write_file(folder / "model.pt", weights);
  const json spec = {{"format", 1},
                     {"architecture", architecture},
                     {"head", {{"num_classes", kClasses.size()}, {"hidden", json::array()}, {"batch_norm", true}, {"dropout", -1.0}}},
                     {"classes", kClasses},
                     {"preprocessing",
                      {{"image_size", 64},
                       {"eval_resize", 73},
                       {"cache_short_side", 96},
                       {"upscale", false},
                       {"mean", {0.485, 0.456, 0.406}},
                       {"std", {0.229, 0.224, 0.225}},
                       {"colour_order", "RGB"}}},
                     {"weights", "model.pt"},
                     {"stage", "train"}};
  test::write_file(folder / "model.json", spec.dump(2));
  std::string classes;
  for (const auto& c : kClasses) classes += c + "\n";
  test::write_file(folder / "classes.txt", classes);
  return folder;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) out.push_back(text.substr(start, end - start));
  return out;
}

TEST_CASE("mlflow model: writes MLflow's layout with the loader, the weights and the environment") {
  test::TempDir dir;
  const fs::path trained = write_trained(dir, "trained");
  const fs::path model = dir / "model";
  write_mlflow_model(trained, model, fixed_options());

  for (const char* file : {"MLmodel", "python_env.yaml", "conda.yaml", "requirements.txt", "code/petal_pyfunc.py",
                           "data/model.pt", "data/model.json", "data/classes.txt"}) {
    INFO(file);
    CHECK(fs::is_regular_file(model / file));
  }
  // The loader is the source file, embedded at build time.
  const std::string loader = test::read_file(test::source_dir() / "stages/evaluate/pyfunc/petal_pyfunc.py");
  CHECK(evaluate::pyfunc_loader_source() == loader);
  CHECK(test::read_file(model / "code/petal_pyfunc.py") == loader);
  // The weights are a copy of their own: two cache entries never share an inode, so damage to
  // one entry's file cannot reach the other unseen (issue 26).
  CHECK(test::read_file(model / "data/model.pt") == "placeholder weights");
  CHECK_FALSE(fs::equivalent(model / "data/model.pt", trained / "model.pt"));
  CHECK(nlohmann::json::parse(test::read_file(model / "data/model.json")) ==
        nlohmann::json::parse(test::read_file(trained / "model.json")));
  CHECK(test::read_file(model / "data/classes.txt") == test::read_file(trained / "classes.txt"));
  CHECK(lines(test::read_file(model / "requirements.txt")) ==
        std::vector<std::string>{"mlflow==3.17.2", "torch==1.13.*", "numpy==1.26.4", "pandas==3.0.6",
                                 "opencv-python-headless==4.6.0.*"});
}

TEST_CASE("mlflow model: requirements follow what the architecture's loader imports") {
  const auto has = [](const std::vector<std::string>& list, const std::string& item) {
    return std::find(list.begin(), list.end(), item) != list.end();
  };
  const auto lite0 = evaluate::pyfunc_requirements("efficientnet_lite0", "3.17.2");
  CHECK(has(lite0, "efficientnet_lite_pytorch==0.1.0"));
  CHECK_FALSE(has(lite0, "torchvision==0.14.*"));
  const auto resnet = evaluate::pyfunc_requirements("resnet18", "3.17.2");
  CHECK(has(resnet, "torchvision==0.14.*"));
  CHECK_FALSE(has(resnet, "efficientnet_lite_pytorch==0.1.0"));
  CHECK(has(evaluate::pyfunc_requirements("small_cnn", "9.9.9"), "mlflow==9.9.9"));
}

TEST_CASE("mlflow model: MLflow reads MLmodel, its signature and petal's metadata") {
  test::TempDir dir;
  const fs::path trained = write_trained(dir, "trained", "efficientnet_lite0");
  write_mlflow_model(trained, dir / "model", fixed_options());
  test::run_python_reference("pyfunc_check.py", {"mlmodel", (dir / "model").string(), (dir / "read.json").string()});
  const json read = json::parse(test::read_file(dir / "read.json"));
  INFO(test::read_file(dir / "model/MLmodel"));

  const json& doc = read.at("yaml");
  const json& flavor = doc.at("flavors").at("python_function");
  CHECK(flavor.at("loader_module") == "petal_pyfunc");
  CHECK(flavor.at("code") == "code");
  CHECK(flavor.at("data") == "data");
  CHECK(flavor.at("env") == json{{"conda", "conda.yaml"}, {"virtualenv", "python_env.yaml"}});
  CHECK(flavor.at("python_version") == "3.11.2");
  CHECK(doc.at("artifact_path") == "model");
  CHECK(doc.at("mlflow_version") == "3.17.2");
  CHECK(doc.at("utc_time_created") == "2026-01-02 03:04:05.000006");
  const std::string sha = sha256_hex("placeholder weights");
  CHECK(doc.at("model_uuid") == sha.substr(0, 32));

  const json& petal = doc.at("metadata").at("petal");
  CHECK(petal.at("architecture") == "efficientnet_lite0");
  CHECK(petal.at("classes") == kClasses);
  CHECK(petal.at("model_sha256") == sha);
  CHECK(petal.at("preprocessing").at("mean") == json{0.485, 0.456, 0.406});
  CHECK(petal.at("head").at("dropout") == -1.0);
  CHECK(petal.at("prediction_columns") == evaluate::prediction_columns(kClasses));
  CHECK(read.at("model").at("model_uuid") == sha.substr(0, 32));  // mlflow.models.Model.load agrees

  const json inputs = read.at("signature").at("inputs");
  CHECK(inputs == json::parse(R"([{"type": "binary", "name": "image", "required": true}])"));
  const json outputs = read.at("signature").at("outputs");
  REQUIRE(outputs.size() == kClasses.size() + 2);
  CHECK(outputs[0] == json{{"type", "string"}, {"name", "label"}, {"required", true}});
  CHECK(outputs[1] == json{{"type", "float"}, {"name", "probability"}, {"required", true}});
  for (std::size_t i = 0; i < kClasses.size(); ++i) {
    CHECK(outputs[i + 2] == json{{"type", "float"}, {"name", "p_" + kClasses[i]}, {"required", true}});
  }

  // Every pinned requirement is what this project's .venv runs (OpenCV aside: Debian's).
  CHECK(read.at("unsatisfied_requirements") == json::array());
  CHECK(read.at("python_env").at("python") == "3.11.2");
  CHECK(read.at("python_env").at("dependencies") == json{"-r requirements.txt"});
  CHECK(read.at("conda").at("dependencies").at(0) == "python=3.11.2");
}

TEST_CASE("mlflow model: the same inputs give the same files, other weights another uuid") {
  test::TempDir dir;
  const fs::path trained = write_trained(dir, "trained");
  write_mlflow_model(trained, dir / "a", fixed_options());
  write_mlflow_model(trained, dir / "b", fixed_options());
  for (const char* file : {"MLmodel", "requirements.txt", "python_env.yaml", "conda.yaml"}) {
    INFO(file);
    CHECK(test::read_file(dir / "a" / file) == test::read_file(dir / "b" / file));
  }
  const fs::path other = write_trained(dir, "other", "small_cnn", "other weights");
  write_mlflow_model(other, dir / "c", fixed_options());
  const std::string mlmodel = test::read_file(dir / "c/MLmodel");
  CHECK(mlmodel.find("model_uuid: '" + sha256_hex("other weights").substr(0, 32) + "'") != std::string::npos);

  MlflowModelOptions now;  // no time given: the current time, in MLflow's format
  write_mlflow_model(trained, dir / "d", now);
  const std::string text = test::read_file(dir / "d/MLmodel");
  const std::size_t at = text.find("utc_time_created: '");
  REQUIRE(at != std::string::npos);
  CHECK(text.substr(at + 19, 26).size() == 26);
  CHECK(text[at + 19 + 26] == '\'');
}

// doctest::Contains takes a doctest::String, built from a C string.
doctest::Contains contains(const std::string& text) { return doctest::Contains(text.c_str()); }

TEST_CASE("mlflow model: a folder that is not a train or finetune output is refused with the reason") {
  test::TempDir dir;
  const std::string what = "it must be the output folder of a train or finetune stage";
  CHECK_THROWS_WITH_AS(write_mlflow_model(dir / "nowhere", dir / "m1"), contains("is not a folder: " + what),
                       std::runtime_error);

  const fs::path no_json = write_trained(dir, "no_json");
  fs::remove(no_json / "model.json");
  CHECK_THROWS_WITH_AS(write_mlflow_model(no_json, dir / "m2"),
                       contains((no_json / "model.json").string() + " is missing: " + what), std::runtime_error);

  const fs::path no_weights = write_trained(dir, "no_weights");
  fs::remove(no_weights / "model.pt");
  CHECK_THROWS_WITH_AS(write_mlflow_model(no_weights, dir / "m3"),
                       contains((no_weights / "model.pt").string() + " is missing: " + what), std::runtime_error);

  const fs::path broken = write_trained(dir, "broken");
  test::write_file(broken / "model.json", "{not json");
  CHECK_THROWS_WITH_AS(write_mlflow_model(broken, dir / "m4"), doctest::Contains("model.json: not valid JSON"),
                       std::runtime_error);

  const fs::path unknown = write_trained(dir, "unknown", "resnet999");
  CHECK_THROWS_WITH_AS(write_mlflow_model(unknown, dir / "m5"),
                       doctest::Contains("unknown architecture 'resnet999' (known: resnet18"), std::runtime_error);

  const fs::path old = write_trained(dir, "old");
  json spec = json::parse(test::read_file(old / "model.json"));
  spec.erase("format");
  test::write_file(old / "model.json", spec.dump());
  CHECK_THROWS_WITH_AS(write_mlflow_model(old, dir / "m6"), doctest::Contains("format is not 1"), std::runtime_error);

  const fs::path good = write_trained(dir, "good");
  test::write_file(dir / "taken/file", "x");
  CHECK_THROWS_WITH_AS(write_mlflow_model(good, dir / "taken"), doctest::Contains("already exists and is not an empty folder"),
                       std::runtime_error);
  CHECK_FALSE(fs::exists(dir / "m2"));  // a refusal writes nothing
}

// The Python half: fixtures with petal's key names, exported here, loaded and run by MLflow.
void check_pyfunc_cases(const std::string& cases) {
  test::TempDir dir;
  test::run_python_reference("pyfunc_check.py", {"images", (dir / "images").string()});
  test::run_python_reference("pyfunc_check.py", {"trained", (dir / "trained").string(), cases});
  const json names = json::parse(test::read_file(dir / "trained/cases.json"));
  for (const auto& name : names) {
    write_mlflow_model(dir / "trained" / name.get<std::string>(), dir / "mlflow" / name.get<std::string>(), fixed_options());
  }
  test::run_python_reference("pyfunc_check.py", {"predict", (dir / "trained").string(), (dir / "mlflow").string(),
                                                 (dir / "images").string(), (dir / "results.json").string()});
  const json results = json::parse(test::read_file(dir / "results.json"));
  CHECK(results.size() == names.size() + 1);
  for (const auto& [name, result] : results.items()) {
    INFO(name << ": " << result.dump(1));
    CHECK(result.at("errors").empty());
  }
}

// One CTest case per few architectures: each loads torch and MLflow and runs every image.
TEST_CASE("mlflow model: mlflow.pyfunc loads resnet18 with linear, dropout and MLP heads strictly and predicts") {
  check_pyfunc_cases("resnet18,resnet18_mlp,resnet18_dropout");
}

TEST_CASE("mlflow model: mlflow.pyfunc loads mobilenet_v2 and efficientnet_lite0 strictly and predicts") {
  check_pyfunc_cases("mobilenet_v2,efficientnet_lite0,efficientnet_lite0_mlp");
}

TEST_CASE("mlflow model: mlflow.pyfunc loads efficientnet_lite1 and efficientnet_lite2 (MLP head) strictly and predicts") {
  check_pyfunc_cases("efficientnet_lite1,efficientnet_lite2_mlp");
}

TEST_CASE("mlflow model: mlflow.pyfunc loads small_cnn strictly and predicts") {
  check_pyfunc_cases("small_cnn,small_cnn_mlp");
}

TEST_CASE("mlflow model: mlflow.pyfunc loads resnet50 strictly and predicts") { check_pyfunc_cases("resnet50"); }

TEST_CASE("mlflow model: mlflow.pyfunc loads densenet121 strictly and predicts") { check_pyfunc_cases("densenet121"); }
TEST_CASE("mlflow model: mlflow.pyfunc loads convnext_tiny with an MLP head strictly and predicts") { check_pyfunc_cases("convnext_tiny"); }

// vit_b_16 at 64 px (the loader resizes the stored 224 px position embedding), maxvit_t at 224 px
// with an MLP head, inception_v3 at 96 px with its auxiliary classifier's weights in the file.
TEST_CASE("mlflow model: mlflow.pyfunc loads vit_b_16 at 64 px strictly and predicts") { check_pyfunc_cases("vit_b_16"); }
TEST_CASE("mlflow model: mlflow.pyfunc loads maxvit_t with an MLP head strictly and predicts") { check_pyfunc_cases("maxvit_t"); }
TEST_CASE("mlflow model: mlflow.pyfunc loads inception_v3 strictly and predicts") { check_pyfunc_cases("inception_v3"); }

TEST_CASE("mlflow model: mlflow.pyfunc loads efficientnet_b0 strictly and predicts") {
  check_pyfunc_cases("efficientnet_b0");
}

}  // namespace
}  // namespace petal
