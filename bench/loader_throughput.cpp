// petal's side of bench/loader_throughput.py: prints one JSON object per run on stdout.
//
//   petal_bench_loader load DATA_DIR [--workers N] [--batch B] [--epochs E] [--warmup-epochs W]
//                                    [--channels-last]
//       BatchLoader over an augment stage's output (its policy and seed), the train split;
//       times E epochs after W warm-up epochs; the consumer only drops the batches.
//   petal_bench_loader decode FILE_LIST --mode petal|opencv [--short-side S] [--rounds R]
//       decodes every file of the list (one path a line) on one core, R rounds, best round:
//       petal = the augment stage's decode path (read, decode_image: DCT-scaled JPEG decode,
//       resize to the short side if larger, BGR -> RGB); opencv = cv::imread(path, IMREAD_COLOR).
#include <ATen/Parallel.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <sched.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "stages/augment/image_decode.h"
#include "stages/train/loader.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Peak resident set (VmHWM) and the current anonymous / file-backed parts, in kB.
json memory() {
  json out = json::object();
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    for (const char* key : {"VmHWM", "RssAnon", "RssFile"}) {
      if (line.rfind(std::string(key) + ":", 0) == 0) out[key] = std::atol(line.c_str() + std::strlen(key) + 1);
    }
  }
  return out;
}

const char* option(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 0; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  }
  return fallback;
}

bool flag(int argc, char** argv, const char* name) {
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return true;
  }
  return false;
}

int load(int argc, char** argv) {
  // The consumer does no tensor work; one intra-op thread keeps LibTorch from starting a pool
  // that would compete with the loader's workers.
  at::set_num_threads(1);
  petal::LoaderOptions options;
  options.data_dir = argv[2];
  options.workers = std::atoi(option(argc, argv, "--workers", "2"));
  options.batch_size = std::atoll(option(argc, argv, "--batch", "64"));
  options.channels_last = flag(argc, argv, "--channels-last");
  const int epochs = std::atoi(option(argc, argv, "--epochs", "3"));
  const int warmup = std::atoi(option(argc, argv, "--warmup-epochs", "1"));
  petal::BatchLoader loader(options);
  double checksum = 0;
  for (int e = 0; e < warmup; ++e) {
    loader.start_epoch(e);
    while (loader.next()) {
    }
  }
  std::int64_t images = 0, batches = 0;
  const auto start = Clock::now();
  for (int e = warmup; e < warmup + epochs; ++e) {
    loader.start_epoch(e);
    while (auto batch = loader.next()) {
      images += batch->images.size(0);
      ++batches;
      checksum += batch->images.data_ptr<float>()[0];  // touch the batch so nothing is optimised away
    }
  }
  const double elapsed = seconds_since(start);
  const json out = {{"side", "petal"},
                    {"images", images},
                    {"batches", batches},
                    {"seconds", elapsed},
                    {"images_per_second", images / elapsed},
                    {"workers", loader.workers()},
                    {"prefetch", loader.prefetch()},
                    {"peak_in_flight", loader.peak_in_flight()},
                    {"samples_per_epoch", loader.samples()},
                    {"checksum", checksum},
                    {"memory_kb", memory()}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

int decode(int argc, char** argv) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  sched_setaffinity(0, sizeof one, &one);  // one core, as the reference
  cv::setNumThreads(1);
  std::vector<std::string> files;
  {
    std::ifstream in(argv[2]);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) files.push_back(line);
    }
  }
  const std::string mode = option(argc, argv, "--mode", "petal");
  const int short_side = std::atoi(option(argc, argv, "--short-side", "256"));
  const int rounds = std::atoi(option(argc, argv, "--rounds", "3"));
  double best = 1e30;
  std::uint64_t pixels = 0;
  for (int r = 0; r < rounds; ++r) {
    pixels = 0;
    const auto start = Clock::now();
    for (const auto& file : files) {
      cv::Mat image = mode == "petal" ? petal::augment::decode_image(petal::augment::read_file_bytes(file), short_side, false)
                                      : cv::imread(file, cv::IMREAD_COLOR);
      if (image.empty()) {
        std::fprintf(stderr, "cannot decode %s\n", file.c_str());
        return 2;
      }
      pixels += image.total();
    }
    best = std::min(best, seconds_since(start));
  }
  const json out = {{"side", mode},           {"images", files.size()}, {"seconds", best},
                    {"images_per_second", files.size() / best}, {"pixels", pixels}, {"rounds", rounds}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc >= 3 && std::strcmp(argv[1], "load") == 0) return load(argc, argv);
    if (argc >= 3 && std::strcmp(argv[1], "decode") == 0) return decode(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "petal_bench_loader: %s\n", e.what());
    return 2;
  }
  std::fprintf(stderr,
               "usage: petal_bench_loader load DATA_DIR [--workers N] [--batch B] [--epochs E] [--warmup-epochs W] "
               "[--channels-last]\n"
               "       petal_bench_loader decode FILE_LIST --mode petal|opencv [--short-side S] [--rounds R]\n");
  return 2;
}
