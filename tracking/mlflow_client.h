#pragma once
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tracking/http_client.h"
#include "tracking/mlflow_types.h"

namespace petal::mlflow {

// An error answer from the MLflow server: HTTP status, MLflow's error_code and its message.
class MlflowError : public PetalError {
 public:
  MlflowError(long status, std::string error_code, const std::string& message);
  long status() const { return status_; }
  const std::string& error_code() const { return error_code_; }

 private:
  long status_;
  std::string error_code_;
};

// True when a failed call means "the server is away" (no answer, 429, 5xx: try again later), false
// when the server answered and said no (4xx, or a 2xx that is not MLflow's JSON: retrying the same
// request cannot help until someone fixes the cause).
bool server_away(const std::exception& e);

// MLflow's REST API (2.0 paths, as served by MLflow 3.x). Each call blocks until answered; HttpClient
// retries transient failures. The asynchronous, loss-free logging path is AsyncLogger.
class Client {
 public:
  explicit Client(HttpSettings settings);
  explicit Client(const std::string& tracking_uri);  // settings from MLflow's environment variables

  const std::string& base_url() const { return http_->settings().base_url; }

  // --- experiments ---
  std::optional<ExperimentInfo> get_experiment_by_name(const std::string& name);
  std::string create_experiment(const std::string& name, const std::vector<Tag>& tags = {});
  void restore_experiment(const std::string& experiment_id);
  // Finds the experiment (restoring it if it was deleted) or creates it; safe against a concurrent
  // creator.
  std::string ensure_experiment(const std::string& name);

  // --- runs ---
  RunInfo create_run(const std::string& experiment_id, const std::string& run_name, std::int64_t start_time_ms,
                     const std::vector<Tag>& tags = {});
  void update_run(const std::string& run_id, const std::string& status, std::int64_t end_time_ms);
  Run get_run(const std::string& run_id);
  // Validates and splits into batches within the server's limits; NaN/inf are encoded as MLflow expects.
  void log_batch(const std::string& run_id, const std::vector<Metric>& metrics, const std::vector<Param>& params = {},
                 const std::vector<Tag>& tags = {});
  void set_tag(const std::string& run_id, const std::string& key, const std::string& value);
  void log_inputs(const std::string& run_id, const std::vector<Dataset>& datasets);
  struct SearchPage {
    std::vector<Run> runs;
    std::string next_page_token;
  };
  SearchPage search_runs(const std::vector<std::string>& experiment_ids, const std::string& filter = "",
                         const std::vector<std::string>& order_by = {}, int max_results = 1000,
                         const std::string& page_token = "");
  std::vector<Run> search_all_runs(const std::vector<std::string>& experiment_ids, const std::string& filter = "");
  // Every value of a metric, following page tokens.
  std::vector<Metric> metric_history(const std::string& run_id, const std::string& key);

  // --- artifacts (through the server's artifact proxy: `mlflow server --serve-artifacts`) ---
  // `artifact_path` is a '/'-separated folder inside the run's artifact root ("" for the root).
  // Files are streamed, never loaded whole into memory. Implemented in tracking/artifacts.cpp.
  void upload_artifact(const RunInfo& run, const std::filesystem::path& local_file, const std::string& artifact_path = "");
  void upload_artifacts(const RunInfo& run, const std::filesystem::path& local_dir, const std::string& artifact_path = "");
  std::vector<FileInfo> list_artifacts(const std::string& run_id, const std::string& path = "");
  void download_artifact(const RunInfo& run, const std::string& path, const std::filesystem::path& local_file);
  // The proxy path for an `mlflow-artifacts:/...` (or mlflow-artifacts://host/...) URI plus a
  // relative path, e.g. "/api/2.0/mlflow-artifacts/artifacts/1/<run>/artifacts/model/MLmodel".
  static std::string artifact_proxy_path(const std::string& artifact_uri, const std::string& relative_path);

  // --- model registry. Implemented in tracking/model_registry.cpp. ---
  RegisteredModel create_registered_model(const std::string& name, const std::string& description = "",
                                          const std::vector<Tag>& tags = {});
  std::optional<RegisteredModel> get_registered_model(const std::string& name);
  RegisteredModel ensure_registered_model(const std::string& name);
  ModelVersion create_model_version(const std::string& name, const std::string& source, const std::string& run_id,
                                    const std::vector<Tag>& tags = {}, const std::string& description = "");
  std::vector<ModelVersion> search_model_versions(const std::string& name);
  void set_model_version_tag(const std::string& name, const std::string& version, const std::string& key,
                             const std::string& value);
  void set_alias(const std::string& name, const std::string& alias, const std::string& version);
  std::optional<ModelVersion> get_version_by_alias(const std::string& name, const std::string& alias);
  std::optional<ModelVersion> get_model_version(const std::string& name, const std::string& version);
  // Every file under `path` of the run's artifacts, downloaded below `local_dir` (same layout).
  void download_artifact_folder(const RunInfo& run, const std::string& path, const std::filesystem::path& local_dir);
  void delete_alias(const std::string& name, const std::string& alias);

  // The underlying REST call: POST/PATCH/DELETE with a JSON body, or GET with query parameters.
  // Returns the parsed answer; throws MlflowError (server said no) or HttpUnreachable.
  nlohmann::json call(const std::string& method, const std::string& endpoint, const nlohmann::json& body);
  nlohmann::json get(const std::string& endpoint, const std::map<std::string, std::string>& query);

  HttpClient& http() { return *http_; }

 private:
  nlohmann::json parse_answer(const std::string& what, const HttpResponse& response);
  std::unique_ptr<HttpClient> http_;
};

// JSON encodings shared with the spool and the async logger.
nlohmann::json to_json(const Metric& metric);
nlohmann::json double_to_json(double value);
Run run_from_json(const nlohmann::json& run);

}  // namespace petal::mlflow
