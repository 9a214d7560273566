#pragma once
// How `petal run --nproc N --nnodes M --node-rank R --master-addr A --master-port P` spreads a
// data-parallel stage (train, finetune) over processes: N workers on this host, ranks
// R*N .. R*N+N-1 of N*M, meeting at A:P (rank 0 hosts the rendezvous). Each worker gets the
// usual variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT),
// so the worker side is the same under any launcher. Torch-free: petal itself only spawns.
#include <map>
#include <string>

namespace petal {

struct DataParallelLaunch {
  int nproc = 1;       // processes on this host
  int nnodes = 1;      // hosts
  int node_rank = 0;   // this host's index; 0 hosts the rendezvous, logs to MLflow
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: a free port (one host only; several hosts must agree on one)

  int world_size() const { return nproc * nnodes; }
  bool active() const { return world_size() > 1; }
  // Throws PetalError naming the option and what to pass.
  void validate() const;
  // The environment of local rank `local_rank`; `port` replaces a master_port of 0.
  std::map<std::string, std::string> rank_environment(int local_rank, int port) const;
  // Defaults from the rendezvous variables the CLI leaves unset: MASTER_ADDR, MASTER_PORT,
  // NNODES, NODE_RANK (as a batch system or torchrun-style wrapper exports them).
  static DataParallelLaunch from_environment();
};

}  // namespace petal
