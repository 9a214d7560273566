#pragma once
#include <filesystem>
#include <string>

#include "pipeline/dag/stage_kind.h"

namespace petal {

// Runs a stage in a worker process (so petal itself never loads LibTorch): writes the request next
// to the stage's log, starts the worker, forwards cancellation, and copies the worker's report into
// `ctx.report`. Throws PetalError with the worker's message when it fails.
//
// The worker executable is $PETAL_WORKER if set, else $PETAL_WORKER_DIR/<worker_name>, else
// `<worker_name>` beside the running petal. Workers: petal-worker (LibTorch: models, training,
// the loader) and petal-data-worker (OpenCV: image checks, decoding, augmentation previews).
//
// WorkerParallelism::DataParallel: when ctx.data_parallel asks for several processes, one worker per
// local rank (with the rendezvous variables of data_parallel_launch.h and a share of ctx.threads).
// The host's first rank writes ctx.output_dir and the log, the others scratch folders beside it;
// the report is the first rank's. When one rank fails the others are stopped, and the error names
// the rank and ends with its log's last lines.
enum class WorkerParallelism { Single, DataParallel };
void run_in_worker(StageContext& ctx, const std::string& kind, const std::string& worker_name = "petal-worker",
                   WorkerParallelism parallelism = WorkerParallelism::Single);

// The worker executable: $PETAL_WORKER (one explicit executable), else $PETAL_WORKER_DIR/<name>,
// else <name> beside the running executable. Throws PetalError (exit code 3) when there is none.
std::filesystem::path worker_executable(const std::string& worker_name);

// Intra-op threads a worker may use: $PETAL_THREADS, else the machine's cores.
int worker_thread_budget();

}  // namespace petal
