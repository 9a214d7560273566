// petal-data-worker: the image-handling stages (OpenCV, matio), kept out of `petal` so that a
// cached run never loads them, and out of petal-worker so they never pay LibTorch's start-up.
//
//   petal-data-worker run-stage REQUEST.json   (see worker_protocol.h)
//   petal-data-worker sweep-charts REQUEST.json OUT_DIR   (see pipeline/sweep/sweep_charts.h)
#include <opencv2/core.hpp>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "pipeline/sweep/sweep_charts.h"
#include "stages/worker/data_stages.h"

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "run-stage") == 0) {
    return petal::serve_worker_request(argv[2], petal::data_stage_table(),
                                       [](int threads) { cv::setNumThreads(threads); });
  }
  if (argc == 4 && std::strcmp(argv[1], "sweep-charts") == 0) {
    try {
      std::ifstream in(argv[2]);
      petal::draw_sweep_charts(nlohmann::json::parse(in), argv[3]);
      return 0;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "sweep-charts: %s\n", e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "usage: petal-data-worker run-stage REQUEST.json | sweep-charts REQUEST.json OUT_DIR\n");
  return 2;
}
