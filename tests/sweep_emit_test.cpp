// Sweeps on a cluster: `petal sweep --trial-index N` (one trial per process, several at once on one
// state folder), `--summarize`, and the job files `--emit kubernetes|slurm` writes — parsed (YAML by
// the project's Python with PyYAML), syntax-checked (bash -n) and, above all, run here: the pods'
// command lines with $JOB_COMPLETION_INDEX set, the sbatch script with $SLURM_ARRAY_TASK_ID set, and
// its documented submit commands through a stand-in `sbatch`.
#include <doctest/doctest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "pipeline/sweep/sweep_state.h"
#include "pipeline/util/quoting.h"
#include "tests/support/python_reference.h"
#include "tests/support/test_support.h"

namespace petal {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;

// A project folder with a sweep of shell stages: `prep`, shared by every trial, and `fit`, which
// sleeps `wait` seconds and reports its score. The sweep lives in a folder whose name needs quoting
// in every language the job files speak ("my sweeps/it's"), so that quoting is tested by running.
struct ClusterProject {
  TempDir dir;
  fs::path sweep_dir;
  std::string out;

  explicit ClusterProject(const std::vector<std::string>& scores, double wait = 0, const std::string& extra = "") {
    sweep_dir = dir / "my sweeps" / "it's";
    fs::create_directories(sweep_dir);
    test::write_file(sweep_dir / "base.toml",
                     "name = \"clustersweep\"\n"
                     "[prep]\nkind = \"shell\"\ncommand = \"echo prep >> \\\"$COUNTER_FILE\\\"; echo data > $PETAL_OUT/data\"\n"
                     "[fit]\nkind = \"shell\"\nneeds = [\"prep\"]\ncommand = \"true\"\n");
    std::string commands;
    for (const auto& score : scores) {
      commands += std::string(commands.empty() ? "" : ", ") + "\"echo fit >> \\\"$COUNTER_FILE\\\"; sleep " +
                  std::to_string(wait) + "; echo '{\\\"val_accuracy\\\": " + score + "}' > $PETAL_METRICS\"";
    }
    test::write_file(sweep_dir / "sweep.toml", "name = \"cluster-sweep\"\nexperiment = \"base.toml\"\n[grid]\nfit.command = [" +
                                                   commands + "]\n" + extra);
    // The pods run petal as the Dockerfile builds it: build/petal in the working directory.
    fs::create_directories(dir / "build");
    fs::create_symlink(test::petal_binary(), dir / "build" / "petal");
  }
  std::string sweep_file() const { return "my sweeps/it's/sweep.toml"; }
  // A command line run in the project folder, untracked, counting stage executions.
  std::string in_project(const std::string& command) const {
    return "cd " + shell_quote(dir.path().string()) + " && export PETAL_TRACKING=off COUNTER_FILE=" +
           shell_quote((dir / "counter").string()) + " && " + command;
  }
  int petal(const std::string& args) {
    return test::run_command(in_project("build/petal --state-dir state sweep " + shell_quote(sweep_file()) + " " + args), &out);
  }
  int count(const std::string& word) const {
    std::ifstream in(dir / "counter");
    int n = 0;
    for (std::string line; std::getline(in, line);) n += line == word ? 1 : 0;
    return n;
  }
  fs::path state_file() const {
    for (const auto& entry : fs::directory_iterator(dir / "state" / "sweeps")) {
      if (entry.path().extension() == ".json") return entry.path();
    }
    return {};
  }
  SweepState state() const { return *SweepState::load(state_file()); }
};

// Every document of a YAML file, as JSON, read by PyYAML (mlflow's dependency, in the project's .venv).
json yaml_documents(const fs::path& file) {
  std::string out;
  const int code = test::run_command(
      shell_quote(test::project_python()) +
          " -c 'import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))' " +
          shell_quote(file.string()),
      &out);
  INFO(out);
  REQUIRE(code == 0);
  return json::parse(out);
}

std::string value_of(const json& env, const std::string& name) {
  for (const auto& e : env) {
    if (e.at("name") == name) return e.contains("value") ? e.at("value").get<std::string>() : std::string("<from>");
  }
  return "";
}

TEST_CASE("sweep emit: shell and YAML quoting give back every value") {
  for (const std::string value : {"plain", "two words", "it's", "$HOME `ls` \"q\" \\ * ; &", "a=b", "%1", ""}) {
    std::string out;
    REQUIRE(test::run_command("printf '%s' " + shell_quote(value), &out) == 0);
    CHECK(out == value);
  }
  CHECK(shell_quote("build/petal") == "build/petal");
  CHECK(shell_quote("it's") == "'it'\\''s'");
  CHECK(yaml_quote("a \"b\" \\ \n") == "\"a \\\"b\\\" \\\\ \\n\"");
  CHECK(yaml_quote("yes") == "\"yes\"");  // never a YAML boolean
  CHECK(first_control_character("a\nb") == '\n');
  CHECK(first_control_character("plain") == -1);
}

TEST_CASE("sweep --trial-index: two trial processes at once both finish, each record kept, the shared stage built once") {
  ClusterProject project({"0.5", "0.9", "0.7"}, 2.0);
  // Trials 0 and 1 start together (the first to arrive creates the state, the other joins it).
  // Once both are marked running, a third process for trial 1 finds it locked, and the whole
  // sweep and the summary are refused while they run.
  const std::string trial = "build/petal --state-dir state sweep " + shell_quote(project.sweep_file()) + " --trial-index ";
  const int code = test::run_command(project.in_project(
                                         "{ (" + trial + "0 > t0.log 2>&1; echo $? > t0.code) & (" + trial +
                                         "1 > t1.log 2>&1; echo $? > t1.code) & "
                                         "for i in $(seq 300); do [ \"$(cat state/sweeps/*.json 2>/dev/null | "
                                         "grep -c '\"status\": \"running\"')\" -ge 2 ] && break; sleep 0.05; done; " +
                                         trial + "1 > again.log 2>&1; echo $? > again.code; "
                                         "build/petal --state-dir state sweep " + shell_quote(project.sweep_file()) +
                                         " > whole.log 2>&1; echo $? > whole.code; "
                                         "build/petal --state-dir state sweep " + shell_quote(project.sweep_file()) +
                                         " --summarize > early.log 2>&1; echo $? > early.code; wait; }"),
                                     &project.out);
  REQUIRE(code == 0);
  const auto read = [&](const std::string& name) { return test::read_file(project.dir / name); };
  INFO(read("t0.log"), read("t1.log"));
  CHECK(read("t0.code") == "0\n");
  CHECK(read("t1.code") == "0\n");
  CHECK(read("again.code") == "3\n");
  CHECK(read("again.log").find("trial t01 of sweep cluster-sweep is already running in another petal process") != std::string::npos);
  CHECK(read("whole.code") == "3\n");
  CHECK(read("whole.log").find("is already running in another petal process") != std::string::npos);
  CHECK(read("early.code") == "3\n");
  CHECK(read("early.log").find("has trials running in other petal processes") != std::string::npos);
  CHECK(project.count("prep") == 1);
  CHECK(project.count("fit") == 2);

  const SweepState state = project.state();
  REQUIRE(state.trials.size() == 3);
  CHECK(state.trials[0].status == TrialStatus::Finished);
  CHECK(state.trials[1].status == TrialStatus::Finished);
  CHECK(state.trials[2].status == TrialStatus::Pending);
  CHECK(state.trials[0].objective == 0.5);
  CHECK(state.trials[1].objective == 0.9);
  CHECK(state.trials[0].attempts == 1);
  CHECK(state.trials[1].attempts == 1);
  // Created once: every trial's run id comes from the same sweep-wide base id.
  const std::string base = state.trials[0].petal_run_id.substr(0, state.trials[0].petal_run_id.rfind('-'));
  for (const auto& r : state.trials) CHECK(r.petal_run_id == base + "-" + r.id);

  // A finished trial is not run again; the whole-sweep mode continues what the trial processes left.
  REQUIRE(project.petal("--trial-index 1") == 0);
  CHECK(project.out.find("trial t01 was finished before; nothing to run") != std::string::npos);
  REQUIRE(project.petal("") == 0);
  CHECK(project.out.find("3 trials (2 finished before)") != std::string::npos);
  CHECK(project.count("fit") == 3);
  CHECK(project.state().trials[1].petal_run_id == state.trials[1].petal_run_id);
}

TEST_CASE("sweep --trial-index: a trial process killed mid-trial leaves no lock behind, and its retry continues the same run") {
  ClusterProject project({"0.5", "0.9"}, 1.5);
  const int pid = test::spawn_in_process_group(project.in_project(
      "exec build/petal --state-dir state sweep " + shell_quote(project.sweep_file()) + " --trial-index 1 > first.log 2>&1"));
  REQUIRE(pid > 0);
  const fs::path state_file = test::wait_for_sweep_state(
      project.dir / "state", [](const SweepState& state) { return state.trials[1].status == TrialStatus::Running; });
  REQUIRE(!state_file.empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  test::kill_process_group(pid);  // a lost node: no chance to record anything
  const SweepState before = *SweepState::load(state_file);
  CHECK(before.trials[1].status == TrialStatus::Running);

  REQUIRE(project.petal("--trial-index 1") == 0);  // the retried task
  INFO(project.out);
  CHECK(project.out.find("[t01] resuming") != std::string::npos);
  const SweepState after = *SweepState::load(state_file);
  CHECK(after.trials[1].status == TrialStatus::Finished);
  CHECK(after.trials[1].attempts == 2);
  CHECK(after.trials[1].petal_run_id == before.trials[1].petal_run_id);
  CHECK(after.trials[0].status == TrialStatus::Pending);  // untouched
  // Summarized with a trial never run: the comparison all the same, and exit code 1.
  CHECK(project.petal("--summarize --no-charts") == 1);
  CHECK(project.out.find("summarizing 2 trials") != std::string::npos);
  CHECK(project.out.find("1 finished, 1 pending") != std::string::npos);
  CHECK(project.out.find("best: t01") != std::string::npos);
}

TEST_CASE("sweep --trial-index and --emit: bad input is refused with what to do") {
  ClusterProject project({"0.5", "0.9", "0.7"});
  CHECK(project.petal("--trial-index 3") == 2);
  CHECK(project.out.find("--trial-index 3 is out of range: sweep cluster-sweep (my sweeps/it's/sweep.toml) has 3 trials, "
                         "indexes 0 to 2; `petal sweep my sweeps/it's/sweep.toml --list` lists them") != std::string::npos);
  CHECK(project.petal("--trial-index -1") == 2);
  CHECK(project.petal("--emit kube") == 2);
  CHECK(project.out.find("unknown kind 'kube': use --emit kubernetes (an Indexed Job manifest) or --emit slurm") !=
        std::string::npos);
  CHECK(project.petal("--image petal:1") == 2);
  CHECK(project.out.find("--image requires --emit") != std::string::npos);
  CHECK(project.petal("--trial-index 0 --summarize") == 2);
  CHECK(project.petal("--emit kubernetes --pvc Bad_Name") == 2);
  CHECK(project.out.find("--pvc 'Bad_Name' is not a Kubernetes object name") != std::string::npos);
  CHECK(project.petal("--emit slurm --time 'one day'") == 2);
  CHECK(project.out.find("--time 'one day' is not a Slurm time limit") != std::string::npos);
  CHECK(project.petal("--summarize") == 2);
  CHECK(project.out.find("has no state yet") != std::string::npos);
  CHECK(project.out.find("--trial-index N") != std::string::npos);
  CHECK(!fs::exists(project.dir / "counter"));  // nothing ran
}

TEST_CASE("sweep --emit kubernetes: an Indexed Job, one completion per trial, whose pod command runs here") {
  ClusterProject project({"0.5", "0.9", "0.7"}, 0, "[execution]\njobs = 2\n");
  const std::string state = (project.dir / "state").string();
  const std::string emit = "--emit kubernetes --no-tracking --image registry.example/petal:1.2 --state-mount " +
                           shell_quote(state) + " --gpus 1 -o job.yaml";
  REQUIRE(project.petal(emit) == 0);
  INFO(project.out);
  CHECK(project.out.find("wrote job.yaml: a Kubernetes Indexed Job and its summary Job, sweep cluster-sweep-") != std::string::npos);
  const std::string first = test::read_file(project.dir / "job.yaml");
  REQUIRE(project.petal(emit) == 0);
  CHECK(test::read_file(project.dir / "job.yaml") == first);  // deterministic

  const json docs = yaml_documents(project.dir / "job.yaml");
  REQUIRE(docs.size() == 2);
  const json& job = docs[0];
  CHECK(job.at("apiVersion") == "batch/v1");
  CHECK(job.at("kind") == "Job");
  const std::string name = job.at("metadata").at("name");
  CHECK(name.rfind("petal-cluster-sweep-", 0) == 0);
  CHECK(name.size() <= 52);
  const json& spec = job.at("spec");
  CHECK(spec.at("completionMode") == "Indexed");
  CHECK(spec.at("completions") == 3);
  CHECK(spec.at("parallelism") == 2);
  CHECK(spec.at("backoffLimitPerIndex") == 2);
  CHECK(spec.at("backoffLimit") == 9);
  CHECK(spec.at("podFailurePolicy").at("rules")[1].at("action") == "FailIndex");
  const json& pod = spec.at("template").at("spec");
  CHECK(pod.at("restartPolicy") == "Never");
  REQUIRE(pod.at("containers").size() == 1);
  const json& container = pod.at("containers")[0];
  CHECK(container.at("image") == "registry.example/petal:1.2");
  const json command = container.at("command");
  REQUIRE(command.size() == 3);
  CHECK(command[0] == "/bin/sh");
  CHECK(command[2].get<std::string>().find("--trial-index \"$JOB_COMPLETION_INDEX\"") != std::string::npos);
  CHECK(command[2].get<std::string>().find("--no-tracking") != std::string::npos);
  CHECK(container.at("resources").at("limits").at("nvidia.com/gpu") == "1");
  // The shared state volume (a PVC) mounted where --state-dir points; the datasets read-only.
  std::map<std::string, json> mounts, volumes;
  for (const auto& m : container.at("volumeMounts")) mounts[m.at("name")] = m;
  for (const auto& v : pod.at("volumes")) volumes[v.at("name")] = v;
  CHECK(mounts.at("petal-state").at("mountPath") == state);
  CHECK(volumes.at("petal-state").at("persistentVolumeClaim").at("claimName") == "petal-state");
  CHECK(mounts.at("datasets").at("readOnly") == true);
  CHECK(volumes.at("datasets").at("persistentVolumeClaim").at("claimName") == "petal-datasets");
  const json& env = container.at("env");
  CHECK(value_of(env, "PETAL_DATASETS") == "/datasets");
  bool uri_from_secret = false;
  for (const auto& e : env) {
    if (e.at("name") == "MLFLOW_TRACKING_URI") {
      const json& ref = e.at("valueFrom").at("secretKeyRef");
      uri_from_secret = ref.at("name") == "petal-mlflow" && ref.at("key") == "MLFLOW_TRACKING_URI";
    }
  }
  CHECK(uri_from_secret);
  // The summary: a second Job, suspended until the trials have ended, running --summarize.
  const json& summary = docs[1];
  CHECK(summary.at("metadata").at("name") == name + "-summary");
  CHECK(summary.at("spec").at("suspend") == true);
  const json summary_command = summary.at("spec").at("template").at("spec").at("containers")[0].at("command");
  CHECK(summary_command[2].get<std::string>().find("--summarize") != std::string::npos);

  // Each pod's command, here: the completion index in the environment, the plain env values set.
  std::string env_words;
  for (const auto& e : env) {
    if (e.contains("value")) env_words += e.at("name").get<std::string>() + "=" + shell_quote(e.at("value").get<std::string>()) + " ";
  }
  for (int index = 0; index < 3; ++index) {
    const std::string run = "JOB_COMPLETION_INDEX=" + std::to_string(index) + " " + env_words + "/bin/sh -c " +
                            shell_quote(command[2].get<std::string>());
    REQUIRE(test::run_command(project.in_project(run), &project.out) == 0);
    CHECK(project.out.find("trial t0" + std::to_string(index)) != std::string::npos);
  }
  REQUIRE(test::run_command(project.in_project(env_words + "/bin/sh -c " + shell_quote(summary_command[2].get<std::string>())), &project.out) == 0);
  CHECK(project.out.find("best: t01") != std::string::npos);
  CHECK(project.count("prep") == 1);
  CHECK(project.count("fit") == 3);
  // The emitted sweep id is the one the trials used.
  const std::string id = job.at("metadata").at("annotations").at("petal.dev/sweep-id");
  CHECK(project.state_file().filename() == id + ".json");
  const fs::path summary_dir = project.dir / "state" / "sweeps" / id;
  CHECK(test::read_file(summary_dir / "comparison.csv").find("1,t01,") != std::string::npos);
  const json summary_json = json::parse(test::read_file(summary_dir / "summary.json"));
  CHECK(summary_json.dump().find("t01") != std::string::npos);
  for (const auto& r : project.state().trials) CHECK(r.status == TrialStatus::Finished);
}

// A stand-in for Slurm's sbatch, as much as the emitted script and its header use: a job array's
// tasks run here (`%` of them at once) with $SLURM_ARRAY_TASK_ID, a --wrap command by sh; the job
// id is printed for --parsable. It returns after the job ran, so any dependency is met.
const char* kFakeSbatch = R"sh(#!/bin/bash
wrap="" script=""
for arg in "$@"; do
  case "$arg" in
    --wrap=*) wrap="${arg#--wrap=}" ;;
    --*) ;;
    *) script="$arg" ;;
  esac
done
if [ -n "$wrap" ]; then
  sh -c "$wrap" > summary.out 2>&1
  echo $? > summary.code
  echo 1001
  exit 0
fi
read -r first last at_once < <(sed -n 's/^#SBATCH --array=\([0-9]*\)-\([0-9]*\)%\([0-9]*\)$/\1 \2 \3/p' "$script")
for ((i = first; i <= last; i++)); do
  (SLURM_ARRAY_TASK_ID=$i SLURM_CPUS_PER_TASK=1 bash "$script" > "task-$i.out" 2>&1; echo $? > "task-$i.code") &
  while [ "$(jobs -rp | wc -l)" -ge "$at_once" ]; do wait -n; done
done
wait
echo 1000
)sh";

TEST_CASE("sweep --emit slurm: a job-array script that runs its trials here, and a dependent summary") {
  ClusterProject project({"0.5", "0.9", "0.7"}, 0.2, "[execution]\njobs = 2\n");
  REQUIRE(project.petal("--emit slurm --cpus 2 --time 2:00:00 --partition gpu -o 'petal sweep.sbatch'") == 0);
  INFO(project.out);
  const fs::path script = project.dir / "petal sweep.sbatch";
  const std::string text = test::read_file(script);
  REQUIRE(project.petal("--emit slurm --cpus 2 --time 2:00:00 --partition gpu -o 'petal sweep.sbatch'") == 0);
  CHECK(test::read_file(script) == text);  // deterministic
  std::string out;
  CHECK(test::run_command("bash -n " + shell_quote(script.string()), &out) == 0);
  CHECK(text.rfind("#!/bin/bash\n#SBATCH --job-name=petal-cluster-sweep\n#SBATCH --array=0-2%2\n#SBATCH --cpus-per-task=2\n", 0) == 0);
  CHECK(text.find("#SBATCH --time=2:00:00\n") != std::string::npos);
  CHECK(text.find("#SBATCH --partition=gpu\n") != std::string::npos);
  CHECK(text.find("#SBATCH --output=petal-cluster-sweep-") != std::string::npos);
  CHECK(text.find("--trial-index \"$SLURM_ARRAY_TASK_ID\"") != std::string::npos);

  // Run anywhere, from another folder: array tasks 0 and 1 (the directives are comments to bash).
  const auto run_task = [&](int index) {
    return "cd / && SLURM_ARRAY_TASK_ID=" + std::to_string(index) + " PETAL_TRACKING=off COUNTER_FILE=" +
           shell_quote((project.dir / "counter").string()) + " bash " + shell_quote(script.string());
  };
  CHECK(test::run_command("cd / && env -u MLFLOW_TRACKING_URI -u PETAL_TRACKING bash " + shell_quote(script.string()),
                          &out) == 2);
  CHECK(out.find("SLURM_ARRAY_TASK_ID is not set: submit this job array with sbatch") != std::string::npos);
  CHECK(test::run_command("cd / && SLURM_ARRAY_TASK_ID=0 env -u MLFLOW_TRACKING_URI -u PETAL_TRACKING bash " +
                              shell_quote(script.string()), &out) == 2);
  CHECK(out.find("MLFLOW_TRACKING_URI is not set") != std::string::npos);
  for (int index : {0, 1}) {
    REQUIRE(test::run_command(run_task(index), &out) == 0);
  }
  SweepState state = project.state();
  CHECK(state.trials[0].status == TrialStatus::Finished);
  CHECK(state.trials[1].status == TrialStatus::Finished);
  CHECK(state.trials[2].status == TrialStatus::Pending);
  const std::size_t id_at = text.find("# petal sweep ") + 14;
  CHECK(project.state_file().filename() == text.substr(id_at, text.find(':', id_at) - id_at) + ".json");

  // The header's submit commands, through the stand-in sbatch: the array (0 and 1 finished before,
  // 2 runs), then the summary job with its --wrap command.
  fs::create_directories(project.dir / "bin");
  test::write_file(project.dir / "bin" / "sbatch", kFakeSbatch);
  fs::permissions(project.dir / "bin" / "sbatch", fs::perms::owner_all);
  std::string submit;
  for (std::size_t at = text.find("#   jobid="); at != std::string::npos && text.compare(at, 4, "#   ") == 0;
       at = text.find('\n', at) + 1) {
    submit += text.substr(at + 4, text.find('\n', at) - at - 4) + "\n";
  }
  INFO(submit);
  REQUIRE(submit.find("sbatch --dependency=afterany:\"$jobid\"") != std::string::npos);
  REQUIRE(test::run_command(project.in_project("export PATH=" + shell_quote((project.dir / "bin").string()) + ":$PATH; " + submit),
                            &out) == 0);
  const auto read = [&](const std::string& name) { return test::read_file(project.dir / name); };
  CHECK(read("task-0.code") == "0\n");
  CHECK(read("task-0.out").find("trial t00 was finished before; nothing to run") != std::string::npos);
  CHECK(read("task-2.code") == "0\n");
  CHECK(read("summary.code") == "0\n");
  CHECK(read("summary.out").find("summarizing 3 trials") != std::string::npos);
  CHECK(read("summary.out").find("best: t01") != std::string::npos);
  for (const auto& r : project.state().trials) CHECK(r.status == TrialStatus::Finished);
  CHECK(project.count("prep") == 1);
  CHECK(project.count("fit") == 3);
  fs::path summary;
  for (const auto& entry : fs::directory_iterator(project.dir / "state" / "sweeps")) {
    if (entry.is_directory()) summary = entry.path();
  }
  REQUIRE(!summary.empty());
  CHECK(test::read_file(summary / "comparison.csv").find("1,t01,") != std::string::npos);
  CHECK(fs::file_size(summary / "objective.png") > 1000);
}

}  // namespace
}  // namespace petal
