// `petal sweep FILE --emit kubernetes|slurm [-o PATH]`: the sweep as a cluster job file
// (pipeline/sweep/cluster_job.h). Reads the sweep (every trial is checked, as before a run) and
// writes one file; runs nothing and touches no state.
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "pipeline/cli/commands.h"
#include "pipeline/dag/stage_registry.h"
#include "pipeline/exec/project.h"
#include "pipeline/sweep/cluster_job.h"
#include "pipeline/sweep/sweep_trials.h"
#include "pipeline/util/fs.h"

namespace petal::cli {

namespace fs = std::filesystem;

namespace {

// This petal, by its absolute path: the Slurm tasks run the same build from the shared folder.
std::string this_executable() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw PetalError("cannot find petal's own executable (/proc/self/exe): " + ec.message(), {}, kExitEnvironment);
  return self.string();
}

// The sweep file as the pods see it: relative to the image's working directory, which holds the
// project as the current folder holds it here.
std::string path_inside_image(const std::string& file) {
  const fs::path relative = fs::absolute(file).lexically_normal().lexically_relative(fs::current_path());
  if (relative.empty() || *relative.begin() == "..") {
    throw PetalError("the sweep file " + file + " is outside the current folder; run `petal sweep --emit kubernetes` "
                     "from the project folder, whose layout the image has in its working directory");
  }
  return relative.string();
}

}  // namespace

int run_sweep_emit(const GlobalOptions& global, const SweepOptions& options) {
  const SweepEmitOptions& emit = options.emit;
  const bool kubernetes = emit.kind == "kubernetes";
  const SweepDefinition sweep = load_sweep_definition(options.file);
  if (kubernetes && !emit.datasets_claim.empty()) {
    // Resolve the trials as the pods will, with $PETAL_DATASETS at the mount, so that the sweep id
    // the manifest names is the one they compute (and the file does not depend on this shell's value).
    ::setenv("PETAL_DATASETS", emit.datasets_mount.c_str(), 1);
  }
  const auto trials = load_trials(sweep, builtin_registry());

  ClusterJob job;
  job.sweep_name = sweep.name;
  job.sweep_id = sweep_id_of(sweep, sweep_digest(sweep, trials));
  job.trials = trials.size();
  job.parallelism = options.jobs > 0 ? options.jobs : sweep.jobs > 0 ? sweep.jobs : static_cast<int>(trials.size());
  const TrackingConfig& tracking = trials.front()->experiment.tracking;
  job.needs_tracking_uri = !options.no_tracking && tracking.enabled && tracking.uri.empty();
  if (options.no_tracking) job.flags.push_back("--no-tracking");
  if (options.no_charts) job.flags.push_back("--no-charts");
  job.cpus = emit.cpus;
  job.memory_gib = emit.memory_gib;
  job.gpus = emit.gpus;
  const bool to_stdout = emit.output.empty() || emit.output == "-";
  job.output_name = to_stdout ? "" : fs::path(emit.output).filename().string();
  if (kubernetes) {
    job.petal = emit.image_petal;
    job.sweep_file = path_inside_image(options.file);
    if (emit.state_mount.empty() || emit.state_mount.front() != '/') {
      throw PetalError("--state-mount '" + emit.state_mount + "' must be an absolute path, e.g. /opt/petal/.petal");
    }
    job.state_dir = emit.state_mount;
    job.image = emit.image;
    job.state_claim = emit.state_claim;
    job.datasets_claim = emit.datasets_claim;
    job.datasets_mount = emit.datasets_mount;
    job.secret = emit.secret;
  } else {
    const Project project = Project::locate(global.state_dir.empty() ? std::nullopt
                                                                     : std::optional<fs::path>(global.state_dir));
    job.petal = this_executable();
    job.sweep_file = fs::absolute(options.file).lexically_normal().string();
    job.state_dir = project.state_dir.lexically_normal().string();
    job.work_dir = fs::current_path().string();
    job.time_limit = emit.time_limit;
    job.partition = emit.partition;
  }
  const std::string text = kubernetes ? kubernetes_job_manifest(job) : slurm_array_script(job);
  if (to_stdout) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return kExitOk;
  }
  write_file_atomically(emit.output, text);
  std::printf("petal sweep: wrote %s: %s, sweep %s, %zu trials, %d at once\n", emit.output.c_str(),
              kubernetes ? "a Kubernetes Indexed Job and its summary Job" : "a Slurm job-array script", job.sweep_id.c_str(),
              job.trials, std::max(1, std::min(job.parallelism, static_cast<int>(job.trials))));
  std::printf("petal sweep: %s\n", kubernetes ? "kubectl apply -f it; its header says how to run the summary after the trials"
                                              : "sbatch it; its header shows the dependent summary job");
  return kExitOk;
}

}  // namespace petal::cli
