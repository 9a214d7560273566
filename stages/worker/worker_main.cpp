// petal-worker: the one executable that loads LibTorch. petal starts it only when a torch stage
// must actually run (a fully cached run never pays LibTorch's start-up).
//
//   petal-worker run-stage REQUEST.json   run one stage (see worker_protocol.h)
//   petal-worker predict --model DIR ...  class probabilities for images (stages/evaluate/predict_command.h)
//   petal-worker --probe                  print the LibTorch build and devices as JSON
#include <torch/torch.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "stages/evaluate/predict_command.h"
#include "stages/train/allocator_tuning.h"
#include "stages/worker/torch_stages.h"
#include "stages/worker/worker_protocol.h"

namespace {

int probe() {
  nlohmann::json devices = nlohmann::json::array();
  const bool cuda = torch::cuda::is_available();
  if (cuda) {
    for (std::size_t i = 0; i < torch::cuda::device_count(); ++i) devices.push_back("cuda:" + std::to_string(i));
  }
  const nlohmann::json out = {{"torch_version", TORCH_VERSION},
                              {"cuda_available", cuda},
                              {"devices", devices},
                              {"intra_op_threads", torch::get_num_threads()}};
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

void configure_threads(int threads) {
  torch::set_num_threads(threads);
  // Stages use intra-op parallelism only; one inter-op thread avoids oversubscribing small machines.
  torch::set_num_interop_threads(1);
}

}  // namespace

int main(int argc, char** argv) {
  petal::train::keep_freed_memory_for_reuse();
  if (argc == 2 && std::strcmp(argv[1], "--probe") == 0) return probe();
  if (argc == 3 && std::strcmp(argv[1], "run-stage") == 0) {
    return petal::serve_worker_request(argv[2], petal::torch_stage_table(), configure_threads);
  }
  if (argc >= 2 && std::strcmp(argv[1], "predict") == 0) {
    configure_threads(1);
    return petal::evaluate::run_predict_command(argc, argv);
  }
  std::fprintf(stderr, "usage: petal-worker run-stage REQUEST.json | petal-worker predict --model DIR IMAGE... | "
                       "petal-worker --probe\n");
  return 2;
}
