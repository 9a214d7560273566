#pragma once
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "pipeline/dag/stage_kind.h"

namespace petal {

// The contract between petal and a stage worker process (petal-worker for LibTorch stages).
// petal writes a request file and starts `<worker> run-stage <request.json>`; the worker runs the
// stage's implementation and writes the report file; exit code 0 means success. A worker never
// commits anything: it writes into `output_dir`, which petal commits or discards.
//
// request.json: {"format": 1, "kind", "stage", "params", "inputs": {name: dir}, "output_dir",
//                "base_dir", "report_file", "threads", "resume_dir"}
// report file:  StageReport::to_json(), or {"error": "message"} on failure
struct WorkerRequest {
  static constexpr int kFormat = 1;
  std::string kind;
  std::string stage;
  nlohmann::json params;
  std::map<std::string, std::filesystem::path> inputs;
  std::filesystem::path output_dir;
  std::filesystem::path base_dir;
  std::filesystem::path report_file;
  int threads = 1;
  std::filesystem::path resume_dir;  // StageContext::resume_dir; empty: none

  nlohmann::json to_json() const;
  static WorkerRequest from_json(const nlohmann::json& json);  // throws std::runtime_error
};

// The implementations a worker executable offers, by kind name.
using WorkerStageTable = std::map<std::string, std::function<void(StageContext&)>>;

// The worker side: reads the request, sets up the context, runs the implementation, writes the
// report. `configure_threads` lets a torch worker apply the thread budget. Returns the exit code.
int serve_worker_request(const std::filesystem::path& request_file, const WorkerStageTable& stages,
                         const std::function<void(int threads)>& configure_threads);

}  // namespace petal
