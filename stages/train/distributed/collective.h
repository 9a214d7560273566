#pragma once
// Data-parallel training across processes (and hosts) on LibTorch's own engine: c10d process
// groups, Gloo on CPU and NCCL on CUDA builds that have it. Only this interface is seen by the
// trainer; the c10d headers stay in process_group.cpp.
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

namespace petal::train {

// One process's place in the group, from the usual rendezvous variables:
// RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT (as torchrun and `petal run --nproc` set them).
struct RendezvousSpec {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  int timeout_seconds = 1800;  // PETAL_DIST_TIMEOUT: a collective waiting longer than this fails

  bool active() const { return world_size > 1; }
  // world_size 1 when WORLD_SIZE is unset; std::runtime_error naming the variable when one is malformed.
  static RendezvousSpec from_environment();
};

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string backend() const = 0;  // "gloo" or "nccl"
  // In place, on every rank: the element-wise sum over ranks. Blocks until done.
  virtual void all_reduce_sum(at::Tensor& tensor) = 0;
  // In place: every rank's tensor becomes root's.
  virtual void broadcast(at::Tensor& tensor, int root) = 0;
};

// Joins the group described by `spec` (rank 0 hosts the TCP store at MASTER_ADDR:MASTER_PORT).
// NCCL when `cuda` and the LibTorch build has it, else Gloo. Throws std::runtime_error with what
// to do when this LibTorch build has neither or the rendezvous times out.
std::unique_ptr<Collective> connect_collective(const RendezvousSpec& spec, bool cuda);

}  // namespace petal::train
