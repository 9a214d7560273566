// A stage worker for tests: speaks the same protocol as petal-worker, without LibTorch.
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include "stages/worker/worker_protocol.h"

int main(int argc, char** argv) {
  if (argc != 3 || std::strcmp(argv[1], "run-stage") != 0) return 2;
  petal::WorkerStageTable table;
  table["via-worker"] = [](petal::StageContext& ctx) {
    const auto sleep_ms = ctx.params.at("sleep_ms").get<long long>();
    for (long long waited = 0; waited < sleep_ms; waited += 5) {
      if (ctx.cancelled()) throw petal::StageCancelled();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (ctx.params.at("fail").get<bool>()) throw std::runtime_error("worker failed on purpose");
    std::string text;
    for (const auto& [name, dir] : ctx.inputs) {
      std::ifstream in(dir / "value.txt");
      text += std::string(std::istreambuf_iterator<char>(in), {});
    }
    std::ofstream(ctx.output_dir / "value.txt") << text << ctx.params.at("text").get<std::string>();
    ctx.report.metric("threads_budget", 1);
    ctx.report.note("ran in a worker");
  };
  int threads_seen = 0;
  return petal::serve_worker_request(argv[2], table, [&](int threads) { threads_seen = threads; });
}
