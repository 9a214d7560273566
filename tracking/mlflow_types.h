#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace petal::mlflow {

struct Metric {
  std::string key;
  double value = 0;          // NaN and ±infinity are sent as MLflow expects ("NaN", "Infinity")
  std::int64_t timestamp_ms = 0;
  std::int64_t step = 0;
};

struct Param {
  std::string key;
  std::string value;
};

struct Tag {
  std::string key;
  std::string value;
};

struct ExperimentInfo {
  std::string experiment_id;
  std::string name;
  std::string artifact_location;
  std::string lifecycle_stage;  // "active" or "deleted"
};

struct RunInfo {
  std::string run_id;
  std::string experiment_id;
  std::string run_name;
  std::string status;  // RUNNING, SCHEDULED, FINISHED, FAILED, KILLED
  std::string artifact_uri;
  std::string lifecycle_stage;
  std::int64_t start_time = 0;
  std::int64_t end_time = 0;
};

struct Run {
  RunInfo info;
  std::map<std::string, double> metrics;  // latest value per key
  std::map<std::string, std::string> params;
  std::map<std::string, std::string> tags;
};

struct Dataset {
  std::string name;
  std::string digest;       // at most 36 characters
  std::string source_type;  // e.g. "local", "http"
  std::string source;       // e.g. a path or URL, as JSON text {"uri": ...}
  std::string schema;       // optional
  std::string profile;      // optional
  std::vector<Tag> tags;    // input tags, e.g. mlflow.data.context = "training"
};

struct FileInfo {
  std::string path;
  bool is_dir = false;
  std::int64_t file_size = 0;
};

struct RegisteredModel {
  std::string name;
  std::string description;
  std::map<std::string, std::string> aliases;  // alias -> version
};

struct ModelVersion {
  std::string name;
  std::string version;
  std::string source;
  std::string run_id;
  std::string status;
  std::map<std::string, std::string> tags;
  std::vector<std::string> aliases;
};

}  // namespace petal::mlflow
