#include "pipeline/exec/data_parallel_launch.h"

#include <cstdlib>

#include "pipeline/util/error.h"

namespace petal {

namespace {

int int_from_environment(const char* name, int fallback) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*end != '\0' || value < 0 || value > 65535) {
    throw PetalError(std::string("environment variable ") + name + "=" + text + " is not a valid number", {},
                     kExitUsage);
  }
  return static_cast<int>(value);
}

}  // namespace

void DataParallelLaunch::validate() const {
  if (nproc < 1) throw PetalError("--nproc must be at least 1", {}, kExitUsage);
  if (nnodes < 1) throw PetalError("--nnodes must be at least 1", {}, kExitUsage);
  if (node_rank < 0 || node_rank >= nnodes) {
    throw PetalError("--node-rank " + std::to_string(node_rank) + " must be in [0, " + std::to_string(nnodes) +
                         ") for --nnodes " + std::to_string(nnodes),
                     {}, kExitUsage);
  }
  if (nnodes > 1 && master_port == 0) {
    throw PetalError("--nnodes " + std::to_string(nnodes) + " needs --master-port (or MASTER_PORT): every host must "
                     "meet at the same address and port",
                     {}, kExitUsage);
  }
  if (master_port < 0 || master_port > 65535) throw PetalError("--master-port must be in [1, 65535]", {}, kExitUsage);
}

std::map<std::string, std::string> DataParallelLaunch::rank_environment(int local_rank, int port) const {
  return {{"RANK", std::to_string(node_rank * nproc + local_rank)},
          {"WORLD_SIZE", std::to_string(world_size())},
          {"LOCAL_RANK", std::to_string(local_rank)},
          {"LOCAL_WORLD_SIZE", std::to_string(nproc)},
          {"GROUP_RANK", std::to_string(node_rank)},
          {"MASTER_ADDR", master_addr},
          {"MASTER_PORT", std::to_string(master_port ? master_port : port)}};
}

DataParallelLaunch DataParallelLaunch::from_environment() {
  DataParallelLaunch launch;
  if (const char* addr = std::getenv("MASTER_ADDR"); addr && *addr) launch.master_addr = addr;
  launch.master_port = int_from_environment("MASTER_PORT", 0);
  launch.nnodes = std::max(1, int_from_environment("NNODES", 1));
  launch.node_rank = int_from_environment("NODE_RANK", 0);
  return launch;
}

}  // namespace petal
