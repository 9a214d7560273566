// petal-data-worker: the image-handling stages (OpenCV, matio), kept out of `petal` so that a
// cached run never loads them, and out of petal-worker so they never pay LibTorch's start-up.
//
//   petal-data-worker run-stage REQUEST.json   (see worker_protocol.h)
#include <opencv2/core.hpp>

#include <cstdio>
#include <cstring>

#include "stages/worker/data_stages.h"

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "run-stage") == 0) {
    return petal::serve_worker_request(argv[2], petal::data_stage_table(),
                                       [](int threads) { cv::setNumThreads(threads); });
  }
  std::fprintf(stderr, "usage: petal-data-worker run-stage REQUEST.json\n");
  return 2;
}
