// The evaluate and register stages end to end against a real MLflow server: reports, the exported
// MLflow model, champion/challenger promotion through the pipeline, and agreement between
// `petal predict` (C++), mlflow.pyfunc.load_model and `mlflow models serve`.
#include <doctest/doctest.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <set>
#include <thread>
#include <nlohmann/json.hpp>

#include "tests/support/colour_images.h"
#include "tests/support/mlflow_support.h"
#include "tests/support/test_support.h"

namespace petal {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::make_colour_images;
using test::TempDir;

std::string experiment(const fs::path& data, const std::string& name, const std::string& model_name, int epochs,
                       double margin) {
  return "name = \"" + name + "\"\n[tracking]\nuri = \"" + test::mlflow_url() + "\"\n"
         "[download]\nsource = \"local\"\npath = \"" + data.string() + "\"\n"
         "[split]\nratios = [0.6, 0.2, 0.2]\nseed = 1\n"
         "[augment]\npolicy = \"light\"\nimage_size = 32\n"
         "[train]\nmodel = \"small_cnn\"\nweights = \"none\"\nfreeze_backbone = false\nthreads = 1\nbatch_size = 8\n"
         "epochs = " + std::to_string(epochs) + "\noptimizer = \"adam\"\nlr = 0.01\n"
         "[evaluate]\nneeds = [\"augment\", \"train\"]\nthreads = 1\ngradcam_images = 2\ngradcam_classes = 2\n"
         "[register]\nmodel_name = \"" + model_name + "\"\nmargin = " + std::to_string(margin) + "\n";
}

int petal(const TempDir& dir, const std::string& args, std::string* output = nullptr) {
  std::string text;
  const int code = test::run_command("cd " + dir.path().string() + " && PETAL_TRACKING=on MLFLOW_TRACKING_URI=" + test::mlflow_url() + " " +
                                         test::petal_binary() + " --state-dir state " + args + " 2>&1",
                                     &text);
  if (output) *output = text;
  if (code != 0) MESSAGE("petal " << args << " exited " << code << ":\n" << text);
  return code;
}

fs::path stage_output(const TempDir& dir, const std::string& stage) {
  const fs::path found = test::newest_stage_output(dir / "state", stage);
  REQUIRE_MESSAGE(!found.empty(), "no committed output of stage " << stage);
  return found;
}

std::vector<std::string> image_files(const fs::path& folder) {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(folder)) files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

std::string quoted_list(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + json(item).dump();
  return "[" + out + "]";
}

}  // namespace

TEST_CASE("evaluate + register: reports, MLflow model, promotion, and petal predict = pyfunc = mlflow models serve") {
  TempDir dir;
  make_colour_images(dir / "data", 14, 7);
  const std::string name = test::unique_name("evaluate");
  const std::string model_name = test::unique_name("colours");
  test::write_file(dir / "x.toml", experiment(dir / "data", name, model_name, 4, 0.0));
  std::string output;
  REQUIRE(petal(dir, "run x.toml", &output) == 0);

  // ---- the evaluate stage's outputs ----
  const fs::path evaluated = stage_output(dir, "evaluate");
  for (const char* file : {"metrics.json", "report.json", "reports/test/confusion_matrix.csv",
                           "reports/test/confusion_matrix_normalized.csv", "reports/test/confusion_matrix.png",
                           "reports/test/confusion_matrix_normalized.png", "reports/test/misclassified.png",
                           "reports/val/confusion_matrix.png", "reports/training_curves.png", "model/MLmodel",
                           "model/code/petal_pyfunc.py", "model/data/model.pt", "model/data/model.json"}) {
    CHECK_MESSAGE(fs::exists(evaluated / file), file);
  }
  CHECK(image_files(evaluated / "reports/gradcam").size() == 2);
  const json metrics = json::parse(test::read_file(evaluated / "metrics.json"));
  for (const char* key : {"test_accuracy", "test_f1", "test_weighted_f1", "test_log_loss", "test_precision", "test_recall",
                          "test_f1_red", "val_accuracy"}) {
    CHECK_MESSAGE(metrics.contains(key), key);
  }
  CHECK_FALSE(metrics.contains("test_top5_accuracy"));  // 3 classes: top-5 says nothing
  MESSAGE("test accuracy " << metrics["test_accuracy"] << ", macro-F1 " << metrics["test_f1"]);
  // The confusion matrix in the report adds up to the test split, and accuracy is its diagonal.
  const json report = json::parse(test::read_file(evaluated / "report.json"));
  const json counts = report["test"]["confusion_matrix"]["counts"];
  double total = 0, diagonal = 0;
  for (std::size_t r = 0; r < counts.size(); ++r) {
    for (std::size_t c = 0; c < counts[r].size(); ++c) {
      total += counts[r][c].get<double>();
      if (r == c) diagonal += counts[r][c].get<double>();
    }
  }
  CHECK(total == report["test"]["samples"].get<double>());
  CHECK(metrics["test_accuracy"].get<double>() == doctest::Approx(diagonal / total));

  // ---- registered as champion; the run's artifacts hold the reports and the model ----
  const json registration = json::parse(test::read_file(stage_output(dir, "register") / "registration.json"));
  CHECK(registration["version"] == "1");
  CHECK(registration["alias"] == "champion");
  const json state = test::python_json(
      "import json, mlflow\n"
      "c = mlflow.MlflowClient()\n"
      "v = c.get_model_version_by_alias('" + model_name + "', 'champion')\n"
      "files = []\n"
      "def walk(path):\n"
      "    for f in c.list_artifacts(v.run_id, path):\n"
      "        walk(f.path) if f.is_dir else files.append(f.path)\n"
      "walk('evaluate')\n"
      "run = c.get_run(v.run_id)\n"
      "print(json.dumps({'version': v.version, 'files': sorted(files), 'tags': dict(v.tags),\n"
      "                  'metric': run.data.metrics.get('evaluate.test_f1')}))\n");
  CHECK(state["version"] == "1");
  const auto files = state["files"].get<std::vector<std::string>>();
  for (const char* file : {"evaluate/model/MLmodel", "evaluate/reports/test/confusion_matrix.png",
                           "evaluate/reports/training_curves.png", "evaluate/metrics.json"}) {
    CHECK_MESSAGE(std::find(files.begin(), files.end(), file) != files.end(), file);
  }
  CHECK(state["tags"].contains("petal.dataset_digest"));
  CHECK(state["tags"]["petal.architecture"] == "small_cnn");
  CHECK(state["metric"].get<double>() == doctest::Approx(metrics["test_f1"].get<double>()));

  // ---- petal predict (C++) and mlflow.pyfunc agree on held-out images ----
  make_colour_images(dir / "held_out", 5, 99, /*class_folders=*/false);
  const std::vector<std::string> images = image_files(dir / "held_out");
  std::string images_args;
  for (const auto& image : images) images_args += " " + image;
  REQUIRE(petal(dir, "predict --json --model models:/" + model_name + "@champion" + images_args, &output) == 0);
  const json ours = json::parse(output.substr(output.find('{')));
  const json python = test::python_json(
      "import json, mlflow, pandas as pd\n"
      "m = mlflow.pyfunc.load_model('models:/" + model_name + "@champion')\n"
      "out = m.predict(pd.DataFrame({'image': " + quoted_list(images) + "}))\n"
      "cols = [c for c in out.columns if c.startswith('p_')]\n"
      "print(json.dumps({'labels': list(out['label']), 'columns': cols, 'p': out[cols].values.tolist()}))\n");
  REQUIRE(ours["predictions"].size() == images.size());
  REQUIRE(python["labels"].size() == images.size());
  std::size_t agree = 0;
  double worst = 0;
  for (std::size_t i = 0; i < images.size(); ++i) {
    const json& prediction = ours["predictions"][i];
    if (prediction["top"][0]["class"] == python["labels"][i]) ++agree;
    for (std::size_t c = 0; c < python["columns"].size(); ++c) {
      const std::string cls = python["columns"][c].get<std::string>().substr(2);
      worst = std::max(worst, std::abs(prediction["probabilities"][cls].get<double>() - python["p"][i][c].get<double>()));
    }
  }
  MESSAGE("petal predict vs pyfunc: " << agree << "/" << images.size() << " classes agree, max |dp| = " << worst);
  CHECK(agree == images.size());
  CHECK(worst < 1e-4);

  // ---- mlflow models serve answers /invocations with the same classes ----
  const json served = test::python_json(
      "import base64, json, os, socket, subprocess, sys, time, urllib.request\n"
      "s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()\n"
      "mlflow_bin = os.path.join(os.path.dirname(sys.executable), 'mlflow')\n"
      "log = open('serve.log', 'w+')\n"
      "server = subprocess.Popen([mlflow_bin, 'models', 'serve', '-m', 'models:/" + model_name + "@champion',\n"
      "    '--env-manager', 'local', '-h', '127.0.0.1', '-p', str(port)], stdout=log, stderr=subprocess.STDOUT,\n"
      "    start_new_session=True,  # the scoring server is started as `uvicorn` from PATH: the venv's\n"
      "    env=dict(os.environ, PATH=os.path.dirname(mlflow_bin) + os.pathsep + os.environ.get('PATH', '')))\n"
      "try:\n"
      "    deadline = time.time() + 180\n"
      "    while True:\n"
      "        try:\n"
      "            urllib.request.urlopen(f'http://127.0.0.1:{port}/ping', timeout=2); break\n"
      "        except Exception:\n"
      "            if time.time() > deadline or server.poll() is not None:\n"
      "                log.seek(0); raise SystemExit('mlflow models serve did not start: ' + log.read()[-3000:])\n"
      "            time.sleep(1)\n"
      "    rows = [[base64.b64encode(open(f, 'rb').read()).decode()] for f in " + quoted_list(images) + "]\n"
      "    body = json.dumps({'dataframe_split': {'columns': ['image'], 'data': rows}}).encode()\n"
      "    req = urllib.request.Request(f'http://127.0.0.1:{port}/invocations', data=body,\n"
      "                                 headers={'Content-Type': 'application/json'})\n"
      "    answer = json.loads(urllib.request.urlopen(req, timeout=120).read())\n"
      "    print(json.dumps({'labels': [r['label'] for r in answer['predictions']]}))\n"
      "finally:\n"
      "    if server.poll() is None: os.killpg(server.pid, 15); server.wait(timeout=30)\n");
  REQUIRE(served["labels"].size() == images.size());
  std::size_t served_agree = 0;
  for (std::size_t i = 0; i < images.size(); ++i) served_agree += served["labels"][i] == python["labels"][i];
  MESSAGE("mlflow models serve vs pyfunc: " << served_agree << "/" << images.size() << " classes agree");
  CHECK(served_agree == images.size());

  // ---- a cached re-run registers nothing new; a different model that is not better is challenger ----
  REQUIRE(petal(dir, "run x.toml", &output) == 0);
  CHECK(output.find("6 stages (6 cached)") != std::string::npos);
  test::write_file(dir / "x.toml", experiment(dir / "data", name, model_name, 2, 1.0));  // margin 1: cannot win
  REQUIRE(petal(dir, "run x.toml", &output) == 0);
  const json second = json::parse(test::read_file(stage_output(dir, "register") / "registration.json"));
  CHECK(second["version"] == "2");
  CHECK(second["alias"] == "challenger");
  const json aliases = test::python_json(
      "import json, mlflow\n"
      "c = mlflow.MlflowClient()\n"
      "m = c.get_registered_model('" + model_name + "')\n"
      "print(json.dumps({'aliases': dict(m.aliases),\n"
      "                  'versions': len(c.search_model_versions(\"name='" + model_name + "'\"))}))\n");
  CHECK(aliases["versions"] == 2);
  CHECK(aliases["aliases"] == json{{"champion", "1"}, {"challenger", "2"}});
}

// x.toml (the tiny-image experiment of dir/data, not registered) and a sweep.toml over it with `axes`.
void write_tiny_sweep(const TempDir& dir, const std::string& name, int epochs, const std::string& axes) {
  test::write_file(dir / "x.toml", experiment(dir / "data", name, test::unique_name("unused"), epochs, 0.0));
  test::write_file(dir / "sweep.toml", "name = \"" + name + "-sweep\"\nexperiment = \"x.toml\"\n"
                                       "[set]\nregister.enabled = false\nevaluate.gradcam_images = 0\n" + axes);
}

TEST_CASE("sweep on real stages: tiny images, 2 optimizers × 2 heads, shared data stages, nested runs") {
  TempDir dir;
  make_colour_images(dir / "data", 8, 11);
  const std::string name = test::unique_name("sweepreal");
  write_tiny_sweep(dir, name, 1,
                   "[grid]\ntrain.optimizer = [\"sgd\", \"adam\"]\ntrain.head_dropout = [0.0, 0.3]\n[execution]\njobs = 2\n");
  std::string output;
  REQUIRE(petal(dir, "sweep sweep.toml", &output) == 0);
  INFO(output);
  CHECK(output.find("4 trials (0 finished before), 20 stage runs, 11 distinct (9 shared)") != std::string::npos);
  CHECK(output.find("2 trials at once, 1 thread each") != std::string::npos);
  // download, split and augment ran once over the whole sweep (the run log has every stage event).
  const std::string log = test::read_file(dir / "state" / "runs.log");
  for (const std::string stage : {"download", "split", "augment", "train", "evaluate"}) {
    std::size_t ran = 0;
    for (std::size_t at = 0; (at = log.find("\"stage\":\"" + stage + "\"", at)) != std::string::npos; ++at) {
      const std::size_t end = log.find('\n', at);
      ran += log.substr(at, end - at).find("\"status\":\"ran\"") != std::string::npos ? 1 : 0;
    }
    CHECK_MESSAGE(ran == (stage == "train" || stage == "evaluate" ? 4u : 1u), stage);
  }
  const json runs = test::python_json(
      "import json, mlflow\n"
      "c = mlflow.tracking.MlflowClient()\n"
      "e = c.get_experiment_by_name('" + name + "')\n"
      "print(json.dumps([{'id': r.info.run_id, 'tags': r.data.tags, 'params': r.data.params, 'metrics': r.data.metrics}\n"
      "                  for r in c.search_runs([e.experiment_id])]))\n");
  REQUIRE(runs.size() == 5);
  std::string parent;
  for (const auto& r : runs) {
    if (r["tags"].value("petal.role", "") == "sweep") parent = r["id"];
  }
  REQUIRE(!parent.empty());
  std::set<std::string> combinations;
  for (const auto& r : runs) {
    if (r["id"] == parent) {
      CHECK(r["metrics"].contains("best.evaluate.val_accuracy"));
      continue;
    }
    CHECK(r["tags"]["mlflow.parentRunId"] == parent);
    CHECK(r["metrics"].contains("evaluate.val_accuracy"));
    CHECK(r["metrics"].contains("train.val_loss"));
    combinations.insert(r["params"]["train.optimizer"].get<std::string>() + "/" + r["params"]["train.head_dropout"].get<std::string>());
  }
  CHECK(combinations == std::set<std::string>{"sgd/0.0", "sgd/0.3", "adam/0.0", "adam/0.3"});
}

TEST_CASE("sweep pruning on real stages: a trial that does not learn is stopped early, the other finishes") {
  TempDir dir;
  make_colour_images(dir / "data", 30, 5);
  const std::string name = test::unique_name("sweepprune");
  // lr 1e-9 leaves the network as initialised: chance accuracy, pruned at the first rung it loses.
  write_tiny_sweep(dir, name, 12,
                   "[grid]\ntrain.lr = [0.01, 1e-9]\n[pruning]\ngrace_epochs = 1\nreduction_factor = 2\n[execution]\njobs = 1\n");
  std::string output;
  REQUIRE(petal(dir, "sweep sweep.toml", &output) == 0);
  INFO(output);
  CHECK(output.find("pruning train.val_accuracy (max) at epochs 1 2 4 8") != std::string::npos);
  CHECK(output.find("[t01] pruned at epoch") != std::string::npos);
  CHECK(output.find("[t00] finished") != std::string::npos);
  CHECK(output.find("| pruned |") != std::string::npos);
  const json runs = test::python_json(
      "import json, mlflow\n"
      "c = mlflow.tracking.MlflowClient()\n"
      "e = c.get_experiment_by_name('" + name + "')\n"
      "print(json.dumps([{'status': r.info.status, 'tags': r.data.tags,\n"
      "                   'history': [m.step for m in c.get_metric_history(r.info.run_id, 'train.val_accuracy')]}\n"
      "                  for r in c.search_runs([e.experiment_id])]))\n");
  REQUIRE(runs.size() == 3);
  for (const auto& r : runs) {
    const std::string trial = r["tags"].value("petal.trial", "");
    if (trial == "t01") {
      CHECK(r["status"] == "KILLED");
      CHECK(r["tags"]["petal.pruned"].get<std::string>().rfind("pruned at epoch", 0) == 0);
      CHECK(!r["history"].empty());
      CHECK(r["history"].size() < 12);
    } else if (trial == "t00") {
      CHECK(r["status"] == "FINISHED");
      CHECK(r["history"].size() == 12);
    } else {
      CHECK(r["status"] == "FINISHED");  // the parent: pruning is not a failure
    }
  }
}

TEST_CASE("sweep resume on real stages: a trial killed mid-training continues from its last epoch checkpoint") {
  TempDir dir;
  make_colour_images(dir / "data", 30, 9);
  const std::string name = test::unique_name("sweepkill");
  write_tiny_sweep(dir, name, 40, "[grid]\ntrain.optimizer = [\"adam\"]\n");
  const std::string command = "cd " + dir.path().string() + " && PETAL_TRACKING=on MLFLOW_TRACKING_URI=" + test::mlflow_url() +
                              " exec " + test::petal_binary() + " --state-dir state sweep sweep.toml > first.log 2>&1";
  const int pid = test::spawn_in_process_group(command);
  REQUIRE(pid > 0);
  // Kill once an epoch checkpoint of the trial's train stage is committed.
  bool checkpointed = false;
  for (int i = 0; i < 1200 && !checkpointed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::error_code ec;
    for (const auto& entry : fs::recursive_directory_iterator(dir / "state" / "cache" / "resume", ec)) {
      const std::string folder = entry.path().filename().string();
      checkpointed = checkpointed || (folder.rfind("epoch-", 0) == 0 && folder.find('.') == std::string::npos && folder != "epoch-1");
    }
  }
  REQUIRE(checkpointed);
  test::kill_process_group(pid);
  std::string output;
  REQUIRE(petal(dir, "sweep sweep.toml", &output) == 0);
  INFO(output);
  CHECK(output.find("[t00] resuming") != std::string::npos);
  const std::string log = test::read_file(stage_output(dir, "train").parent_path() / "stage.log");
  CHECK(log.find("resumed from the checkpoint of epoch") != std::string::npos);
}

// Scheduled retraining through the register stage: only new data causes a run, every run goes
// through the champion/challenger gate, and a failing run is retried and FAILED in MLflow.
TEST_CASE("petal schedule on real stages: new photos -> one retraining run through the gate, no change -> no run") {
  TempDir dir;
  make_colour_images(dir / "data", 10, 21);
  const std::string name = test::unique_name("scheduled");
  const std::string model_name = test::unique_name("scheduled-colours");
  test::write_file(dir / "x.toml", experiment(dir / "data", name, model_name, 2, 0.0));
  const auto runs = [&](const std::string& status) {
    return test::python_json("import json, mlflow\n"
                             "e = mlflow.get_experiment_by_name('" + name + "')\n"
                             "r = mlflow.search_runs([e.experiment_id], filter_string=\"attributes.status = '" + status +
                             "'\", output_format='list')\n"
                             "print(json.dumps(len(r)))\n")
        .get<int>();
  };
  std::string output;
  REQUIRE(petal(dir, "schedule x.toml --once", &output) == 0);
  CHECK(output.find("retraining finished") != std::string::npos);
  CHECK(runs("FINISHED") == 1);

  REQUIRE(petal(dir, "schedule x.toml --once", &output) == 0);
  const auto no_change = output.find("no change (checked in");
  REQUIRE(no_change != std::string::npos);
  MESSAGE("no-change trigger: " << output.substr(no_change, output.find('\n', no_change) - no_change));
  CHECK(runs("FINISHED") == 1);

  make_colour_images(dir / "new", 4, 22);
  for (const char* colour : {"red", "green", "blue"}) {
    for (const auto& entry : fs::directory_iterator(dir / "new" / colour)) {
      fs::copy_file(entry.path(), dir / "data" / colour / ("new_" + entry.path().filename().string()));
    }
  }
  REQUIRE(petal(dir, "schedule x.toml --once", &output) == 0);
  CHECK(output.find("download: external input download.path content changed") != std::string::npos);
  CHECK(runs("FINISHED") == 2);
  const json registration = json::parse(test::read_file(stage_output(dir, "register") / "registration.json"));
  CHECK(registration["version"] == "2");
  const json aliases = test::python_json("import json, mlflow\n"
                                         "m = mlflow.MlflowClient().get_registered_model('" + model_name + "')\n"
                                         "print(json.dumps(dict(m.aliases)))\n");
  // Promoted only if better: the gate's decision and the registry agree.
  if (registration["alias"] == "champion") {
    CHECK(aliases["champion"] == "2");
  } else {
    CHECK(registration["alias"] == "challenger");
    CHECK(aliases == json{{"champion", "1"}, {"challenger", "2"}});
  }

  // A run that fails (training diverges) is retried after the backoff, and each attempt is a FAILED MLflow run.
  CHECK(petal(dir, "schedule x.toml --once --retries 1 --backoff 10ms --set train.optimizer=sgd --set train.lr=1e12",
              &output) == 1);
  CHECK(output.find("retraining failed (exit code 1, attempt 1 of 2); retrying in 10ms") != std::string::npos);
  CHECK(output.find("FAILED: retraining failed 2 times") != std::string::npos);
  CHECK(runs("FAILED") == 2);
}

TEST_CASE("register: a run without tracking fails with what to do, and commits nothing") {
  TempDir dir;
  make_colour_images(dir / "data", 6, 3);
  std::string text = experiment(dir / "data", "untracked", "colours", 1, 0.0);
  text.replace(text.find("[tracking]\n"), std::string("[tracking]\n").size(), "[tracking]\nenabled = false\n");
  text.replace(text.find("uri = "), text.find('\n', text.find("uri = ")) - text.find("uri = ") + 1, "");
  test::write_file(dir / "x.toml", text);
  std::string output;
  CHECK(petal(dir, "run x.toml", &output) == 1);
  CHECK(output.find("register needs MLflow tracking, and this run is not tracked") != std::string::npos);
  CHECK(output.find("set enabled = false in [register]") != std::string::npos);
}

}  // namespace petal
