// Data-parallel training on LibTorch's c10d engine (Gloo over loopback), through the real CLI:
// `petal run --nproc 2` and two `petal run --nnodes 2` "hosts", compared with one process on the
// same global batch. Where no BatchNorm layer trains (frozen backbone, linear head) the ranks'
// weighted gradient all-reduce must reproduce the one-process update to float rounding; a whole
// network with BatchNorm (each rank normalises its own shard, as PyTorch's DDP does) must stay
// close to it - far closer than a different seed lands.
#include <ATen/ATen.h>

#include <sys/wait.h>

#include <cmath>
#include <string>

#include "pipeline/util/net.h"
#include "stages/train/weights/state_dict_file.h"
#include "tests/support/colour_images.h"
#include "tests/support/test_support.h"
#include "tests/support/torch_doctest.h"

namespace petal {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

const char* kExperiment =
    "name = \"dp\"\n"
    "[download]\nsource = \"local\"\npath = \"data\"\n"
    "[split]\nratios = [0.6, 0.2, 0.2]\nseed = 1\n"
    "[augment]\npolicy = \"light\"\nimage_size = 32\n"
    "[train]\nmodel = \"small_cnn\"\nweights = \"none\"\nfreeze_backbone = false\nthreads = 1\nbatch_size = 24\n"
    "epochs = 2\noptimizer = \"sgd\"\nlr = 0.01\nhead_dropout = 0.0\n";

int petal(const TempDir& dir, const std::string& state, const std::string& args, std::string* output = nullptr) {
  std::string text;
  const int code = test::run_command("cd " + dir.path().string() + " && PETAL_TRACKING=off " + test::petal_binary() +
                                         " --state-dir " + state + " run exp.toml " + args + " 2>&1",
                                     &text);
  if (output) *output = text;
  if (code != 0) MESSAGE("petal run " << args << " exited " << code << ":\n" << text);
  return code;
}

weights::StateDict trained(const TempDir& dir, const std::string& state) {
  const fs::path out = test::newest_stage_output(dir / state, "train");
  REQUIRE_MESSAGE(!out.empty(), "no train output in " << state);
  return weights::read_state_dict(out / "model.pt");
}

// Over all parameters (not the running statistics): |a - b| / |a|, and the largest element difference.
struct Difference {
  double relative = 0;
  double max_abs = 0;
};
Difference difference(const weights::StateDict& a, const weights::StateDict& b) {
  REQUIRE(a.size() == b.size());
  double diff2 = 0, norm2 = 0, worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i].first == b[i].first);
    if (!a[i].second.is_floating_point() || a[i].first.find("running_") != std::string::npos) continue;
    const at::Tensor d = (a[i].second.to(at::kDouble) - b[i].second.to(at::kDouble));
    diff2 += d.pow(2).sum().item<double>();
    norm2 += a[i].second.to(at::kDouble).pow(2).sum().item<double>();
    worst = std::max(worst, d.abs().max().item<double>());
  }
  return {std::sqrt(diff2 / norm2), worst};
}

std::string epoch_line(const std::string& log, int epoch) {
  const auto at = log.find("epoch " + std::to_string(epoch) + "/");
  return at == std::string::npos ? "" : log.substr(at, log.find('\n', at) - at);
}

TEST_CASE("data-parallel: 2 processes over Gloo train a BatchNorm network close to 1 process, far closer than another seed") {
  TempDir dir;
  test::make_colour_images(dir / "data", 40, 3);
  test::write_file(dir / "exp.toml", kExperiment);
  REQUIRE(petal(dir, "one", "") == 0);
  std::string log;
  REQUIRE(petal(dir, "two", "--nproc 2", &log) == 0);
  REQUIRE(petal(dir, "seed", "--set train.seed=1") == 0);

  const fs::path out = test::newest_stage_output(dir / "two", "train");
  const std::string training = test::read_file(out / "training.json");
  CHECK(training.find("\"backend\": \"gloo\"") != std::string::npos);
  CHECK(training.find("\"world_size\": 2") != std::string::npos);
  CHECK(test::read_file(out.parent_path() / "stage.log").find("data-parallel: rank 0 of 2 (gloo)") != std::string::npos);

  const Difference ranks = difference(trained(dir, "one"), trained(dir, "two"));
  const Difference seeds = difference(trained(dir, "one"), trained(dir, "seed"));
  MESSAGE("relative parameter difference: 2 processes vs 1: " << ranks.relative << ", another seed: " << seeds.relative);
  CHECK(ranks.relative < 0.02);
  CHECK(seeds.relative > 0.5);
}

TEST_CASE("data-parallel: with no BatchNorm training, 2 processes give the 1-process weights to float rounding") {
  TempDir dir;
  test::make_colour_images(dir / "data", 40, 4);
  test::write_file(dir / "exp.toml", kExperiment);
  REQUIRE(petal(dir, "init", "--set train.epochs=1") == 0);
  fs::copy_file(test::newest_stage_output(dir / "init", "train") / "model.pt", dir / "init.pt");
  // The backbone's BatchNorm layers stay in eval mode while the linear head trains, with
  // augmentation (so the loader's shards are exercised) and a partial last batch, which splits
  // unevenly and is weighted by each rank's share.
  const std::string frozen = "--set train.weights=file --set train.weights_file=" + (dir / "init.pt").string() +
                             " --set train.freeze_backbone=true --set train.epochs=3 --set train.lr=0.05 --set train.batch_size=20";
  std::string one_log, two_log;
  REQUIRE(petal(dir, "one", frozen, &one_log) == 0);
  REQUIRE(petal(dir, "two", frozen + " --nproc 2", &two_log) == 0);
  const Difference d = difference(trained(dir, "one"), trained(dir, "two"));
  MESSAGE("head-only, 2 processes vs 1: max abs difference " << d.max_abs << ", relative " << d.relative);
  CHECK(d.max_abs < 1e-5);
  CHECK(test::read_file(test::newest_stage_output(dir / "two", "train").parent_path() / "stage.log")
            .find("data-parallel: 2 local processes of 2") != std::string::npos);  // really two ranks
  // The merged metrics are the one-process metrics too.
  const std::string one_epoch = epoch_line(test::read_file(test::newest_stage_output(dir / "one", "train").parent_path() / "stage.log"), 3);
  const std::string two_epoch = epoch_line(test::read_file(test::newest_stage_output(dir / "two", "train").parent_path() / "stage.log"), 3);
  REQUIRE(!one_epoch.empty());
  CHECK(one_epoch.substr(0, one_epoch.find(" | lr")) == two_epoch.substr(0, two_epoch.find(" | lr")));

  SUBCASE("two hosts (--nnodes 2) meeting at MASTER_ADDR:MASTER_PORT give the same weights") {
    const int port = free_loopback_port();
    const std::string hosts = frozen + " --nnodes 2 --master-addr 127.0.0.1 --master-port " + std::to_string(port);
    const int follower = test::spawn_in_process_group("cd " + dir.path().string() + " && PETAL_TRACKING=off " +
                                                      test::petal_binary() + " --state-dir host1 run exp.toml " + hosts +
                                                      " --node-rank 1 > host1.log 2>&1");
    std::string log;
    const int code = petal(dir, "host0", hosts + " --node-rank 0", &log);
    int status = 0;
    waitpid(follower, &status, 0);
    REQUIRE(code == 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(test::read_file(dir / "host1.log").find("host 1 of 2") != std::string::npos);
    CHECK(difference(trained(dir, "one"), trained(dir, "host0")).max_abs < 1e-5);
    CHECK(difference(trained(dir, "one"), trained(dir, "host1")).max_abs < 1e-5);
  }
}

TEST_CASE("data-parallel: a rank's error fails the stage with the rank named, and nothing is committed") {
  TempDir dir;
  test::make_colour_images(dir / "data", 6, 5);
  test::write_file(dir / "exp.toml", kExperiment);
  std::string log;
  CHECK(petal(dir, "s", "--nproc 3 --set train.batch_size=4", &log) == 1);
  CHECK(log.find("(petal-worker): batch_size = 4 is too small for 3 data-parallel processes") != std::string::npos);
  CHECK(log.find("FAILED after") != std::string::npos);
  CHECK(test::newest_stage_output(dir / "s", "train").empty());
  CHECK(petal(dir, "s", "--nnodes 2", &log) == 2);
  CHECK(log.find("--nnodes 2 needs --master-port") != std::string::npos);
  CHECK(petal(dir, "s", "--nnodes 2 --node-rank 2 --master-port 1234", &log) != 0);
}

}  // namespace
}  // namespace petal
