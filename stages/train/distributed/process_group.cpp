#include "stages/train/distributed/collective.h"

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <vector>

// LibTorch's CMake config defines USE_C10D_GLOO / USE_C10D_NCCL for builds that have them; the
// Gloo headers themselves come from libgloo-dev on Debian.
#if defined(USE_C10D_GLOO) && __has_include(<gloo/config.h>)
#define PETAL_HAS_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#if defined(PETAL_HAS_GLOO) || defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace petal::train {

namespace {

int int_variable(const char* name, int fallback, int minimum) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*end != '\0' || value < minimum || value > 1 << 20) {
    throw std::runtime_error(std::string(name) + "=" + text + " is not a valid value (a whole number >= " +
                             std::to_string(minimum) + " expected)");
  }
  return static_cast<int>(value);
}

#if defined(PETAL_HAS_GLOO) || defined(USE_C10D_NCCL)
// A template over the concrete group: in LibTorch 1.13 ProcessGroupGloo derives from ProcessGroup,
// in 2.x from Backend, and both offer the same allreduce/broadcast calls.
template <class Group>
class ProcessGroupCollective : public Collective {
 public:
  ProcessGroupCollective(c10::intrusive_ptr<Group> group, int rank, int world, std::string backend)
      : group_(std::move(group)), rank_(rank), world_(world), backend_(std::move(backend)) {}
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string backend() const override { return backend_; }
  void all_reduce_sum(at::Tensor& tensor) override {
    std::vector<at::Tensor> tensors{tensor};
    group_->allreduce(tensors)->wait();
  }
  void broadcast(at::Tensor& tensor, int root) override {
    std::vector<at::Tensor> tensors{tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    group_->broadcast(tensors, options)->wait();
  }

 private:
  c10::intrusive_ptr<Group> group_;
  int rank_, world_;
  std::string backend_;
};
#endif

}  // namespace

RendezvousSpec RendezvousSpec::from_environment() {
  RendezvousSpec spec;
  spec.world_size = int_variable("WORLD_SIZE", 1, 1);
  spec.rank = int_variable("RANK", 0, 0);
  spec.local_rank = int_variable("LOCAL_RANK", spec.rank, 0);
  spec.master_port = int_variable("MASTER_PORT", spec.master_port, 1);
  spec.timeout_seconds = int_variable("PETAL_DIST_TIMEOUT", spec.timeout_seconds, 1);
  if (const char* addr = std::getenv("MASTER_ADDR"); addr && *addr) spec.master_addr = addr;
  if (spec.rank >= spec.world_size) {
    throw std::runtime_error("RANK=" + std::to_string(spec.rank) + " is not below WORLD_SIZE=" +
                             std::to_string(spec.world_size));
  }
  if (spec.master_port > 65535) throw std::runtime_error("MASTER_PORT must be at most 65535");
  return spec;
}

std::unique_ptr<Collective> connect_collective(const RendezvousSpec& spec, bool cuda) {
#if defined(PETAL_HAS_GLOO) || defined(USE_C10D_NCCL)
  const auto timeout = std::chrono::milliseconds(1000LL * spec.timeout_seconds);
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<std::uint16_t>(spec.master_port);
  store_options.isServer = spec.rank == 0;
  store_options.numWorkers = spec.world_size;
  store_options.timeout = timeout;
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(spec.master_addr, store_options);
  } catch (const std::exception& e) {
    throw std::runtime_error("data-parallel rendezvous at " + spec.master_addr + ":" + std::to_string(spec.master_port) +
                             " failed for rank " + std::to_string(spec.rank) + ": " + e.what() +
                             " (check MASTER_ADDR/MASTER_PORT and that every rank started)");
  }
#if defined(USE_C10D_NCCL)
  if (cuda) {
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, spec.rank, spec.world_size, options);
    return std::make_unique<ProcessGroupCollective<c10d::ProcessGroupNCCL>>(group, spec.rank, spec.world_size, "nccl");
  }
#endif
#if defined(PETAL_HAS_GLOO)
  (void)cuda;  // Gloo all-reduces CUDA tensors too (through host memory) when NCCL is missing
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  // The interface that reaches MASTER_ADDR: loopback for one host, the cluster network otherwise.
  // GLOO_SOCKET_IFNAME picks the interface as it does for PyTorch.
  const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
  options->devices.push_back(interface && *interface ? c10d::ProcessGroupGloo::createDeviceForInterface(interface)
                             : spec.master_addr == "127.0.0.1" || spec.master_addr == "localhost"
                                 ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                 : c10d::ProcessGroupGloo::createDefaultDevice());
  auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, spec.rank, spec.world_size, options);
  return std::make_unique<ProcessGroupCollective<c10d::ProcessGroupGloo>>(group, spec.rank, spec.world_size, "gloo");
#else
  throw std::runtime_error("this LibTorch build has no Gloo backend for CPU data parallelism");
#endif
#else
  (void)spec;
  (void)cuda;
  throw std::runtime_error("this petal-worker was built without c10d process groups (Gloo headers missing): install "
                           "libgloo-dev (scripts/setup.sh does) and rebuild, or run with --nproc 1");
#endif
}

}  // namespace petal::train
