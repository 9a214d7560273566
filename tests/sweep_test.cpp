// Sweeps: the sweep file, trial expansion (grid, random, seeds), the comparison, and `petal sweep`
// end to end with shell stages (shared stages run once, parallel trials, failures, resume after a
// kill). The MLflow side (parent and child runs) is in sweep_tracking_test.cpp.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <set>
#include <thread>

#include "pipeline/config/experiment.h"
#include "pipeline/dag/stage_registry.h"
#include "pipeline/sweep/pruning.h"
#include "pipeline/sweep/sweep_definition.h"
#include "pipeline/sweep/sweep_state.h"
#include "pipeline/sweep/sweep_summary.h"
#include "pipeline/sweep/trial_expansion.h"
#include "pipeline/sweep/sweep_trials.h"
#include "pipeline/util/fs.h"
#include "tests/support/test_support.h"

namespace petal {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::TempDir;

const char* kBase =
    "name = \"base\"\n"
    "[download]\nsource = \"local\"\npath = \"data\"\n"
    "[split]\nratios = [0.6, 0.2, 0.2]\n"
    "[augment]\npolicy = \"light\"\n"
    "[train]\nmodel = \"small_cnn\"\nweights = \"none\"\nfreeze_backbone = false\n";

SweepDefinition sweep_from(const TempDir& dir, const std::string& text) {
  test::write_file(dir / "base.toml", kBase);
  fs::create_directories(dir / "data");
  test::write_file(dir / "sweep.toml", text);
  return load_sweep_definition(dir / "sweep.toml");
}

std::string error_of(const TempDir& dir, const std::string& text) {
  try {
    sweep_from(dir, text);
  } catch (const PetalError& e) {
    return dir.relative(format_error(e, false));
  }
  return "";
}

std::vector<Trial> trials_of(const SweepDefinition& sweep) {
  const Experiment base = load_experiment(sweep.experiment, builtin_registry());
  return expand_trials(sweep, sweep.seed_keys.empty() ? default_seed_keys(base) : sweep.seed_keys);
}

TEST_CASE("sweep file: grid × random × seeds expand in a fixed order, labels name the values") {
  TempDir dir;
  const SweepDefinition sweep = sweep_from(dir,
                                           "name = \"s\"\nexperiment = \"base.toml\"\n"
                                           "[set]\ntrain.epochs = 2\n"
                                           "[grid]\ntrain.model = [\"resnet18\", \"small_cnn\"]\ntrain.optimizer = [\"sgd\", \"adam\", \"radam\"]\n"
                                           "[random]\ntrials = 2\nseed = 7\ntrain.lr = { log_uniform = [1e-4, 1e-1] }\n"
                                           "[repeat]\nseeds = [1, 2]\n");
  CHECK(sweep.name == "s");
  CHECK(sweep.fixed.size() == 1);
  const auto trials = trials_of(sweep);
  REQUIRE(trials.size() == 2 * 3 * 2 * 2);
  CHECK(trials[0].id == "t00");
  CHECK(trials[23].id == "t23");
  // First axis slowest, seeds innermost; random draws shared by every grid point.
  CHECK(trials[0].values_json().at("train.model") == "resnet18");
  CHECK(trials[0].values_json().at("train.optimizer") == "sgd");
  CHECK(trials[1].values_json().at("train.seed") == 2);
  CHECK(trials[4].values_json().at("train.optimizer") == "adam");
  CHECK(trials[12].values_json().at("train.model") == "small_cnn");
  CHECK(trials[0].values_json().at("train.lr") == trials[4].values_json().at("train.lr"));
  CHECK(trials[0].values_json().at("train.lr") != trials[2].values_json().at("train.lr"));
  CHECK(trials[0].label.rfind("model=resnet18 optimizer=sgd lr=", 0) == 0);
  CHECK(trials[0].label.find("seed=1") != std::string::npos);
  // Every trial is a valid experiment with its values and the [set] value.
  const Experiment t5 = load_experiment(sweep.experiment, builtin_registry(), trials[5].load_options(sweep));
  CHECK(t5.find_stage("train")->params.at("epochs").value == 2);
  CHECK(t5.find_stage("train")->params.at("optimizer").value == trials[5].values_json().at("train.optimizer"));
  CHECK(t5.find_stage("train")->params.at("seed").value == trials[5].values_json().at("train.seed"));
  // The default seed keys leave the split alone.
  CHECK(t5.find_stage("split")->params.at("seed").value ==
        load_experiment(sweep.experiment, builtin_registry()).find_stage("split")->params.at("seed").value);
}

TEST_CASE("sweep file: random draws are reproducible, in range, and spread over a log scale") {
  Distribution log_uniform;
  log_uniform.kind = Distribution::Kind::LogUniform;
  log_uniform.low = 1e-4;
  log_uniform.high = 1e-1;
  Distribution integers;
  integers.kind = Distribution::Kind::IntUniform;
  integers.low = 2;
  integers.high = 5;
  Distribution choice;
  choice.kind = Distribution::Kind::Choice;
  choice.choices = {"a", "b", "c"};
  int below_1e3 = 0;
  std::set<std::int64_t> ints;
  std::set<std::string> picked;
  for (std::uint64_t draw = 0; draw < 400; ++draw) {
    const double lr = draw_value(log_uniform, 7, draw, 0).get<double>();
    CHECK(lr >= 1e-4);
    CHECK(lr <= 1e-1);
    below_1e3 += lr < 1e-3 ? 1 : 0;
    CHECK(draw_value(log_uniform, 7, draw, 0) == draw_value(log_uniform, 7, draw, 0));
    ints.insert(draw_value(integers, 7, draw, 1).get<std::int64_t>());
    picked.insert(draw_value(choice, 7, draw, 2).get<std::string>());
  }
  // A third of the log range lies below 1e-3: about 133 of 400 draws (a uniform scale would give 4).
  CHECK(below_1e3 > 90);
  CHECK(below_1e3 < 180);
  CHECK(ints == std::set<std::int64_t>{2, 3, 4, 5});
  CHECK(picked.size() == 3);
  CHECK(draw_value(log_uniform, 7, 0, 0) != draw_value(log_uniform, 8, 0, 0));
}

TEST_CASE("sweep file: mistakes are reported at their line with what to write") {
  TempDir dir;
  CHECK(error_of(dir, "experiment = \"base.toml\"\n[grid]\ntrain.lr = [0.1]\n") ==
        "sweep.toml:1:1: the sweep has no name; add name = \"...\" (it names the MLflow parent run)");
  CHECK(error_of(dir, "name = \"s\"\nexperiment = \"nope.toml\"\n[grid]\ntrain.lr = [0.1]\n").find(
            "sweep.toml:2:1: experiment 'nope.toml' does not exist") == 0);
  CHECK(error_of(dir, "name = \"s\"\nexperiment = \"base.toml\"\n[grid]\ntrain.lr = 0.1\n") ==
        "sweep.toml:4:7: grid.train.lr must be a non-empty list of values, e.g. [\"sgd\", \"adam\"]");
  CHECK(error_of(dir, "name = \"s\"\nexperiment = \"base.toml\"\n[gird]\ntrain.lr = [0.1]\n").find(
            "sweep.toml:3:2: unknown key 'gird' (did you mean 'grid'?)") == 0);
  CHECK(error_of(dir, "name = \"s\"\nexperiment = \"base.toml\"\n[random]\ntrials = 3\ntrain.lr = { log_uniform = [0, 1] }\n") ==
        "sweep.toml:5:14: random.train.lr.log_uniform needs low > 0 (a log scale has no zero)");
  CHECK(error_of(dir, "name = \"s\"\nexperiment = \"base.toml\"\n[random]\ntrials = 3\ntrain.lr = { normal = [0, 1] }\n").find(
            "sweep.toml:5:7: random.train.lr: unknown distribution 'normal'") == 0);
  CHECK(error_of(dir, "name = \"s\"\nexperiment = \"base.toml\"\n[grid]\ntrain.lr = [0.1]\n[set]\ntrain.lr = 0.2\n") ==
        "sweep.toml:6:7: set.train.lr is also swept at sweep.toml:4:7; remove one of them");
  CHECK(error_of(dir, "name = \"s\"\nexperiment = \"base.toml\"\n") ==
        "sweep.toml:1:1: the sweep has no axes: add a [grid], [random] or [repeat] table");
  CHECK(error_of(dir, "name = \"s\"\nexperiment = \"base.toml\"\n[grid]\ntrain.lr = [0.1]\n[objective]\nmode = \"up\"\n") ==
        "sweep.toml:6:1: objective.mode must be \"max\" or \"min\"");
}

TEST_CASE("sweep file: a value the experiment rejects points at the sweep file, naming the trial") {
  TempDir dir;
  const SweepDefinition sweep =
      sweep_from(dir, "name = \"s\"\nexperiment = \"base.toml\"\n[grid]\ntrain.epochs = [2, 0]\ntrian.lr = [0.1]\n");
  const auto trials = trials_of(sweep);
  REQUIRE(trials.size() == 2);
  try {
    load_experiment(sweep.experiment, builtin_registry(), trials[1].load_options(sweep));
    FAIL("trial t01 should not load");
  } catch (const PetalError& e) {
    const std::string text = dir.relative(format_error(e, false));
    CHECK(text.find("sweep.toml:4:7: train.epochs") != std::string::npos);
    CHECK(text.find("sweep.toml:5:7: [trian] is not a known stage kind (did you mean 'train'?)") != std::string::npos);
  }
}

TEST_CASE("sweep file: a range that reaches past what its parameter accepts fails before any trial") {
  TempDir dir;
  CHECK(error_of(dir, "name = \"s\"\nexperiment = \"base.toml\"\n[random]\ntrials = 3\n"
                      "train.threads = { int_uniform = [1, 9223372036854775807] }\n") ==
        "sweep.toml:5:19: random.train.threads.int_uniform bounds must lie within +-2147483647 (integer parameters are "
        "32-bit)");
  // Inside 32 bits but past the stage's own bound: no trial's draw may hit it, so the ends are checked.
  const SweepDefinition sweep = sweep_from(
      dir, "name = \"s\"\nexperiment = \"base.toml\"\n[random]\ntrials = 2\ntrain.threads = { int_uniform = [1, 5000] }\n");
  try {
    load_trials(sweep, builtin_registry());
    FAIL("the range should be refused");
  } catch (const PetalError& e) {
    const std::string text = dir.relative(format_error(e, false));
    INFO(text);
    CHECK(text.find("the range of train.threads ends at 5000: ") == 0);
    CHECK(text.find("sweep.toml:5:7: train.threads must be <= 1024 (got 5000)") != std::string::npos);
  }
}

TEST_CASE("sweep summary: trials ranked by the objective, failures last, CSV and Markdown agree") {
  SweepDefinition sweep;
  sweep.objective_metric = "val_accuracy";
  SweepState state;
  state.name = "s";
  const auto trial = [&](const std::string& id, TrialStatus status, json objective, double test) {
    TrialRecord r;
    r.id = id;
    r.label = "lr=" + id;
    r.values = {{"train.lr", id == "t00" ? 0.1 : 0.01}};
    r.status = status;
    r.attempts = 1;
    r.objective_key = "evaluate.val_accuracy";
    r.objective = objective;
    r.metrics = {{"evaluate.val_accuracy", objective}, {"evaluate.test_accuracy", test}};
    r.curves = json::array({{{"stage", "train"}, {"name", "val_accuracy"}, {"points", {{1, 0.3}, {2, 0.4}}}},
                            {{"stage", "finetune"}, {"name", "val_accuracy"}, {"points", {{1, 0.5}}}}});
    state.trials.push_back(r);
  };
  trial("t00", TrialStatus::Finished, 0.7, 0.69);
  trial("t01", TrialStatus::Failed, nullptr, 0);
  trial("t02", TrialStatus::Finished, 0.9, 0.88);
  const SweepSummary summary = summarize(state, sweep, {"train.lr"});
  CHECK(summary.best == 2);
  REQUIRE(summary.ranking == std::vector<std::size_t>{2, 0, 1});
  CHECK(summary.table.header ==
        std::vector<std::string>{"rank", "trial", "train.lr", "status", "evaluate.val_accuracy (max)",
                                 "evaluate.test_accuracy", "seconds", "mlflow_run"});
  CHECK(summary.table.rows[0][0] == "1");
  CHECK(summary.table.rows[0][1] == "t02");
  CHECK(summary.table.rows[0][4] == "0.9000");
  CHECK(summary.table.rows[2][0] == "-");
  CHECK(summary.table.rows[2][3] == "failed");
  CHECK(to_csv(summary.table).find("1,t02,0.01,finished,0.9000,0.8800,") != std::string::npos);
  CHECK(to_markdown(summary.table).find("| 1 | t02 | 0.01 | finished | 0.9000 | 0.8800 |") != std::string::npos);
  sweep.objective_maximize = false;
  CHECK(summarize(state, sweep, {"train.lr"}).best == 0);
  // Curves continue across stages: finetune's epoch 1 comes after train's 2 epochs.
  const json charts = chart_request(state, sweep, summary);
  CHECK(charts.at("curve_metric") == "val_accuracy");
  CHECK(charts.at("curves")[0].at("x") == json::array({1.0, 2.0, 3.0}));
  CHECK(charts.at("bars").size() == 2);
  CHECK(find_objective_key("val_accuracy", {"train", "evaluate"}, state.trials[0].metrics) == "evaluate.val_accuracy");
  CHECK(find_objective_key("evaluate.test_accuracy", {"train"}, state.trials[0].metrics) == "evaluate.test_accuracy");
  CHECK(find_objective_key("val_f1", {"train"}, state.trials[0].metrics).empty());
}

// ---- petal sweep, end to end with shell stages ----

struct SweepCli {
  TempDir dir;
  std::string out;
  int run(const std::string& args) {
    return test::run_command("cd " + dir.path().string() + " && PETAL_TEST_COUNTER=" + (dir / "counter").string() + " " +
                                 test::petal_binary() + " --state-dir state " + args + " 2>&1",
                             &out);
  }
  int count(const std::string& word) const {
    std::ifstream in(dir / "counter");
    int n = 0;
    for (std::string line; std::getline(in, line);) n += line == word ? 1 : 0;
    return n;
  }
};

// `prep` is shared by every trial; `fit` differs by the swept score (and sleeps `wait` seconds).
void write_shell_sweep(const TempDir& dir, const std::string& scores, double wait, const std::string& extra = "") {
  test::write_file(dir / "base.toml",
                   "name = \"shellsweep\"\n"
                   "[prep]\nkind = \"shell\"\ncommand = \"echo prep >> $COUNTER_FILE; echo data > $PETAL_OUT/data\"\n"
                   "[fit]\nkind = \"shell\"\nneeds = [\"prep\"]\ncommand = \"true\"\n");
  std::string commands;
  for (std::size_t at = 0, next; at < scores.size(); at = next + 1) {
    next = scores.find(',', at);
    if (next == std::string::npos) next = scores.size();
    const std::string score = scores.substr(at, next - at);
    const std::string body = score == "fail" ? "exit 3"
                                             : "sleep " + std::to_string(wait) + "; echo '{\\\"val_accuracy\\\": " + score +
                                                   "}' > $PETAL_METRICS";
    commands += std::string(commands.empty() ? "" : ", ") + "\"echo fit >> $COUNTER_FILE; " + body + "\"";
  }
  test::write_file(dir / "sweep.toml", "name = \"shell-sweep\"\nexperiment = \"base.toml\"\n[grid]\nfit.command = [" +
                                           commands + "]\n" + extra);
}

TEST_CASE("petal sweep: a shared stage runs once, trials run in parallel, the best is named") {
  SweepCli cli;
  write_shell_sweep(cli.dir, "0.5,0.9,0.7,0.6", 0.3);
  const std::string env = "COUNTER_FILE=" + (cli.dir / "counter").string() + " ";
  REQUIRE(test::run_command("cd " + cli.dir.path().string() + " && " + env + test::petal_binary() +
                                " --state-dir state sweep sweep.toml --no-tracking -j 2 2>&1",
                            &cli.out) == 0);
  INFO(cli.out);
  CHECK(cli.count("prep") == 1);
  CHECK(cli.count("fit") == 4);
  CHECK(cli.out.find("4 trials (0 finished before), 8 stage runs, 5 distinct (3 shared)") != std::string::npos);
  CHECK(cli.out.find("2 trials at once") != std::string::npos);
  CHECK(cli.out.find("best: t01") != std::string::npos);
  CHECK(cli.out.find("sharing saved 3 executions; 5 ran now") != std::string::npos);
  // The run log agrees: prep ran once over the whole sweep, in one trial's run.
  const std::string log = test::read_file(cli.dir / "state" / "runs.log");
  std::size_t prep_ran = 0;
  for (std::size_t at = 0; (at = log.find("\"stage\":\"prep\"", at)) != std::string::npos; ++at) {
    const std::size_t end = log.find('\n', at);
    prep_ran += log.substr(at, end - at).find("\"status\":\"ran\"") != std::string::npos ? 1 : 0;
  }
  CHECK(prep_ran == 1);
  // The comparison on disk.
  fs::path summary;
  for (const auto& entry : fs::directory_iterator(cli.dir / "state" / "sweeps")) {
    if (entry.is_directory()) summary = entry.path();
  }
  REQUIRE(!summary.empty());
  const std::string csv = test::read_file(summary / "comparison.csv");
  CHECK(csv.rfind("rank,trial,fit.command,status,fit.val_accuracy (max),seconds,mlflow_run\n1,t01,", 0) == 0);
  CHECK(fs::file_size(summary / "objective.png") > 1000);
  CHECK(fs::file_size(summary / "validation_curves.png") > 1000);
  // Again: nothing runs, the comparison is rebuilt.
  REQUIRE(test::run_command("cd " + cli.dir.path().string() + " && " + env + test::petal_binary() +
                                " --state-dir state sweep sweep.toml --no-tracking 2>&1",
                            &cli.out) == 0);
  CHECK(cli.out.find("every trial finished before; nothing to run") != std::string::npos);
  CHECK(cli.count("fit") == 4);
}

TEST_CASE("petal sweep: a failed trial does not stop the others, unless fail_fast, and --list shows the state") {
  SweepCli cli;
  write_shell_sweep(cli.dir, "fail,0.9,0.7", 0, "[execution]\njobs = 1\n");
  const std::string run = "cd " + cli.dir.path().string() + " && COUNTER_FILE=" + (cli.dir / "counter").string() + " " +
                          test::petal_binary() + " --state-dir state sweep sweep.toml --no-tracking";
  CHECK(test::run_command(run + " --fail-fast 2>&1", &cli.out) == 1);
  CHECK(cli.count("fit") == 1);
  CHECK(test::run_command(run + " 2>&1", &cli.out) == 1);
  INFO(cli.out);
  CHECK(cli.count("fit") == 4);  // the failed one was retried, the two others ran
  CHECK(cli.out.find("[t00] failed in") != std::string::npos);
  CHECK(cli.out.find("command failed (exit code 3)") != std::string::npos);
  CHECK(cli.out.find("best: t01") != std::string::npos);
  CHECK(test::run_command(run + " --list 2>&1", &cli.out) == 0);
  CHECK(cli.out.find("t00  failed") != std::string::npos);
  CHECK(cli.out.find("t01  finished  2/2 stages cached") != std::string::npos);
}

TEST_CASE("petal sweep: killed mid-sweep, the same command continues and finished trials are not re-run") {
  SweepCli cli;
  write_shell_sweep(cli.dir, "0.5,0.9,0.7", 1.5, "[execution]\njobs = 1\n");
  const std::string command = "cd " + cli.dir.path().string() + " && COUNTER_FILE=" + (cli.dir / "counter").string() +
                              " exec " + test::petal_binary() + " --state-dir state sweep sweep.toml --no-tracking > first.log 2>&1";
  const int pid = test::spawn_in_process_group(command);
  REQUIRE(pid > 0);
  // Wait until t00 finished and t01 is running, then kill the whole process group (petal and its stage).
  const fs::path state_file = test::wait_for_sweep_state(cli.dir / "state", [](const SweepState& state) {
    return state.trials[0].status == TrialStatus::Finished && state.trials[1].status == TrialStatus::Running;
  });
  REQUIRE(!state_file.empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  test::kill_process_group(pid);
  const SweepState before = *SweepState::load(state_file);
  CHECK(before.trials[1].status == TrialStatus::Running);  // killed: no chance to write anything else
  CHECK(cli.count("fit") == 2);

  const std::string again = "cd " + cli.dir.path().string() + " && COUNTER_FILE=" + (cli.dir / "counter").string() + " " +
                            test::petal_binary() + " --state-dir state sweep sweep.toml --no-tracking 2>&1";
  REQUIRE(test::run_command(again, &cli.out) == 0);
  INFO(cli.out);
  CHECK(cli.out.find("3 trials (1 finished before)") != std::string::npos);
  CHECK(cli.out.find("[t00]") == std::string::npos);  // not touched
  CHECK(cli.out.find("[t01] resuming") != std::string::npos);
  CHECK(cli.count("prep") == 1);
  CHECK(cli.count("fit") == 4);  // t00 once, t01 twice (killed, then again), t02 once
  const SweepState after = *SweepState::load(state_file);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(after.trials[i].status == TrialStatus::Finished);
    CHECK(after.trials[i].petal_run_id == before.trials[i].petal_run_id);  // the same runs, continued
  }
  CHECK(after.trials[1].attempts == 2);
  CHECK(after.trials[0].attempts == 1);
  CHECK(cli.out.find("best: t01") != std::string::npos);
}

}  // namespace
}  // namespace petal

namespace petal {
namespace {

TEST_CASE("pruning: successive halving stops trials below the rung's quantile, never before the grace period") {
  CHECK(quantile({1, 2, 3, 4}, 0.5) == doctest::Approx(2.5));
  CHECK(quantile({0.2, 0.9}, 2.0 / 3.0) == doctest::Approx(0.2 + 0.7 * 2.0 / 3.0));
  PruningConfig config;
  config.enabled = true;
  config.grace_epochs = 2;
  config.reduction_factor = 3;
  SuccessiveHalving halving(config);
  CHECK(halving.rungs_up_to(20) == std::vector<int>{2, 6, 18});
  CHECK(halving.observe("a", {{1, 0.1}}).empty());                   // before the first rung
  CHECK(halving.observe("a", {{1, 0.1}, {2, 0.8}}).empty());         // the first at rung 2: its own cutoff
  CHECK(halving.observe("b", {{1, 0.1}, {2, 0.9}}).empty());         // better than a
  const std::string reason = halving.observe("c", {{1, 0.1}, {2, 0.5}});  // worst of three
  CHECK(reason == "pruned at epoch 2: val_accuracy 0.5000 < the rung's cutoff 0.8333 (3 trials there)");
  CHECK(halving.observe("a", {{1, 0.1}, {2, 0.8}, {3, 0.1}}).empty());  // a rung is judged once
  // Lower is better for a loss.
  config.maximize = false;
  config.metric = "val_loss";
  SuccessiveHalving losses(config);
  CHECK(losses.observe("a", {{2, 0.3}}).empty());
  CHECK(!losses.observe("b", {{2, 0.9}}).empty());
  config.enabled = false;
  CHECK(SuccessiveHalving(config).observe("x", {{2, 0.0}}).empty());
}

TEST_CASE("sweep file: a [pruning] table enables pruning with the objective's direction") {
  TempDir dir;
  const SweepDefinition sweep = sweep_from(dir,
                                           "name = \"s\"\nexperiment = \"base.toml\"\n[grid]\ntrain.lr = [0.1, 0.01]\n"
                                           "[objective]\nmetric = \"val_loss\"\nmode = \"min\"\n"
                                           "[pruning]\nmetric = \"val_loss\"\ngrace_epochs = 2\n");
  CHECK(sweep.pruning.enabled);
  CHECK(!sweep.pruning.maximize);
  CHECK(sweep.pruning.stage == "train");
  CHECK(sweep.pruning.grace_epochs == 2);
  CHECK(sweep.pruning.reduction_factor == 3);
  CHECK(error_of(dir, "name = \"s\"\nexperiment = \"base.toml\"\n[grid]\ntrain.lr = [0.1]\n[pruning]\nreduction_factor = 1\n") ==
        "sweep.toml:6:1: pruning.reduction_factor must be an integer from 2 to 1000");
}

}  // namespace
}  // namespace petal
