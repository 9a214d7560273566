#pragma once
// A trained petal model (the train or finetune stage's output) as an MLflow model directory with
// the python_function flavor, so that `mlflow.pyfunc.load_model(dir)` and `mlflow models serve`
// predict exactly what petal predicts. The Python side is stages/evaluate/pyfunc/petal_pyfunc.py,
// compiled into this library as text and written to <out>/code/. No LibTorch, no OpenCV.
//
// Layout written (MLflow's own, as mlflow.pyfunc.save_model(loader_module=...) writes it):
//   MLmodel               YAML: flavors.python_function (loader_module petal_pyfunc, code, data,
//                         env), signature, model_uuid, metadata.petal; written last
//   python_env.yaml, conda.yaml, requirements.txt   the environment, pinned to what petal is tested with
//   code/petal_pyfunc.py  the loader
//   data/model.pt         the state dict (a copy of the trained one: a reflink where the file system has them)
//   data/model.json, data/classes.txt
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace petal::evaluate {

// The MLflow and Python versions petal's export is tested with (the project's .venv).
inline constexpr const char* kTestedMlflowVersion = "3.17.2";
inline constexpr const char* kTestedPythonVersion = "3.11.2";

struct MlflowModelOptions {
  std::string mlflow_version = kTestedMlflowVersion;  // MLmodel's mlflow_version and the mlflow pin
  std::string python_version = kTestedPythonVersion;  // python_env.yaml, conda.yaml, the flavor's python_version
  // MLmodel's utc_time_created, "YYYY-MM-DD HH:MM:SS.ffffff" as MLflow writes it. Empty: the
  // current time. Pass a fixed value for byte-identical output from identical inputs.
  std::string utc_time_created;
  std::string artifact_path = "model";  // the model's folder within its run's artifacts
};

// Writes the MLflow model for `trained_dir` into `out_dir`, which must not exist or be empty.
// Throws std::runtime_error when trained_dir is not a train/finetune output (model.json or model.pt
// missing, model.json unreadable or not petal's format 1, an unknown architecture) or a file
// cannot be written; messages name the file and what to do.
void write_mlflow_model(const std::filesystem::path& trained_dir, const std::filesystem::path& out_dir,
                        const MlflowModelOptions& options = {});

// The prediction's columns, in order: "label", "probability", then class_column(c) per class.
std::string class_column(const std::string& class_name);  // "p_" + class_name
std::vector<std::string> prediction_columns(const std::vector<std::string>& classes);

// requirements.txt for a model of `architecture`: the packages its loader imports, each pinned
// to the release petal is tested with (torchvision only for torchvision's architectures,
// efficientnet_lite_pytorch only for efficientnet_lite0).
std::vector<std::string> pyfunc_requirements(const std::string& architecture, const std::string& mlflow_version);

// MLmodel's model_uuid: the first 32 hex digits of model.pt's SHA-256 (same weights, same uuid).
std::string model_uuid_from_sha256(const std::string& weights_sha256);

// The text of petal_pyfunc.py, embedded at build time (generated source, see CMakeLists.txt).
std::string_view pyfunc_loader_source();

}  // namespace petal::evaluate
