#include "stages/worker/worker_protocol.h"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>


namespace petal {

using nlohmann::json;

json WorkerRequest::to_json() const {
  json in = json::object();
  for (const auto& [name, dir] : inputs) in[name] = dir.string();
  return json{{"format", kFormat},         {"kind", kind},
              {"stage", stage},            {"params", params},
              {"inputs", in},              {"output_dir", output_dir.string()},
              {"base_dir", base_dir.string()}, {"report_file", report_file.string()},
              {"threads", threads},        {"resume_dir", resume_dir.string()}};
}

WorkerRequest WorkerRequest::from_json(const json& j) {
  if (j.value("format", 0) != kFormat) throw std::runtime_error("unsupported worker request format");
  WorkerRequest r;
  r.kind = j.at("kind").get<std::string>();
  r.stage = j.at("stage").get<std::string>();
  r.params = j.at("params");
  for (const auto& [name, dir] : j.at("inputs").items()) r.inputs[name] = dir.get<std::string>();
  r.output_dir = j.at("output_dir").get<std::string>();
  r.base_dir = j.at("base_dir").get<std::string>();
  r.report_file = j.at("report_file").get<std::string>();
  r.threads = j.value("threads", 1);
  r.resume_dir = j.value("resume_dir", std::string());
  return r;
}

namespace {

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_stop(int) { g_stop = 1; }

void write_report(const std::filesystem::path& file, const json& report) {
  std::ofstream out(file, std::ios::trunc);
  out << report.dump() << "\n";
}

}  // namespace

int serve_worker_request(const std::filesystem::path& request_file, const WorkerStageTable& stages,
                         const std::function<void(int threads)>& configure_threads) {
  WorkerRequest request;
  try {
    std::ifstream in(request_file);
    if (!in) throw std::runtime_error("cannot read " + request_file.string());
    request = WorkerRequest::from_json(json::parse(in));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "petal-worker: bad request %s: %s\n", request_file.c_str(), e.what());
    return 2;
  }
  std::signal(SIGTERM, on_stop);
  std::signal(SIGINT, on_stop);
  const auto found = stages.find(request.kind);
  if (found == stages.end()) {
    const std::string message = "this worker has no implementation of stage kind '" + request.kind + "'";
    write_report(request.report_file, json{{"error", message}});
    std::fprintf(stderr, "petal-worker: %s\n", message.c_str());
    return 1;
  }
  if (configure_threads) configure_threads(std::max(1, request.threads));
  StageReport report;
  StageContext context{request.stage,
                       request.params,
                       request.inputs,
                       request.output_dir,
                       {},
                       request.base_dir,
                       [] { return g_stop != 0; },
                       report};
  context.threads = std::max(1, request.threads);
  context.resume_dir = request.resume_dir;
  try {
    found->second(context);
  } catch (const StageCancelled&) {
    write_report(request.report_file, json{{"error", "cancelled"}, {"cancelled", true}});
    return 130;
  } catch (const std::exception& e) {
    write_report(request.report_file, json{{"error", e.what()}});
    std::fprintf(stderr, "petal-worker: %s failed: %s\n", request.stage.c_str(), e.what());
    return 1;
  }
  write_report(request.report_file, report.to_json());
  return 0;
}

}  // namespace petal
