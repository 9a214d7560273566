#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "pipeline/cli/commands.h"
#include "pipeline/exec/project.h"
#include "pipeline/exec/worker_client.h"
#include "pipeline/util/cancel.h"
#include "pipeline/util/error.h"
#include "pipeline/util/subprocess.h"
#include "stages/download/http_fetch.h"
#include "stages/evaluate/tta_modes.h"
#include "tracking/local_server.h"
#include "tracking/model_uri.h"

namespace petal::cli {

namespace fs = std::filesystem;
using nlohmann::json;

CLI::App* setup_predict(CLI::App& app, PredictOptions& options) {
  CLI::App* command = app.add_subcommand("predict", "classify images with a trained model (local, from a run, or from the registry)");
  command
      ->add_option("-m,--model", options.model,
                   "a model folder (evaluate's model/ or a train stage's output), runs:/<run id>/<path>, "
                   "models:/<name>/<version> or models:/<name>@<alias>")
      ->required();
  command->add_option("images", options.images, "image files")->required()->check(CLI::ExistingFile);
  command->add_option("-k,--top-k", options.top_k, "classes shown per image")->check(CLI::Range(1, 1000));
  command->add_flag("--json", options.json, "print JSON: every class's probability per image");
  command->add_option("--tracking-uri", options.tracking_uri,
                      "MLflow server for runs:/ and models:/ (default: $MLFLOW_TRACKING_URI, else petal's local server)");
  command->add_option("--threads", options.threads, "LibTorch threads (default: $PETAL_THREADS or the cores)")
      ->check(CLI::Range(1, 1024));
  command->add_option("--tta", options.tta, std::string(evaluate::tta_help()) + " (as the evaluate stage's tta)")
      ->check(CLI::IsMember(evaluate::tta_modes()));
  return command;
}

namespace {

fs::path model_cache_root() {
  if (const char* dir = std::getenv("PETAL_MODEL_CACHE"); dir && *dir) return dir;
  return download_cache_dir().parent_path() / "models";
}

mlflow::ModelLocation locate_model(const GlobalOptions& global, const PredictOptions& options) {
  std::unique_ptr<mlflow::Client> client;
  const auto connect = [&]() -> mlflow::Client& {
    std::string uri = options.tracking_uri;
    if (uri.empty()) {
      if (const char* env = std::getenv("MLFLOW_TRACKING_URI"); env && *env) uri = env;
    }
    if (uri.empty()) {
      const Project project =
          Project::locate(global.state_dir.empty() ? std::nullopt : std::optional<fs::path>(global.state_dir));
      uri = LocalMlflowServer(project.state_dir / "mlflow").ensure_running();
    }
    client = std::make_unique<mlflow::Client>(uri);
    return *client;
  };
  return mlflow::resolve_model_uri(options.model, connect, model_cache_root());
}

json run_worker(const fs::path& model_dir, const PredictOptions& options) {
  const fs::path output = fs::temp_directory_path() / ("petal-predict-" + std::to_string(::getpid()) + ".json");
  SubprocessSpec spec;
  spec.argv = {worker_executable("petal-worker").string(), "predict", "--model", model_dir.string(), "--threads",
               std::to_string(options.threads > 0 ? options.threads : worker_thread_budget()), "--tta", options.tta};
  for (const auto& image : options.images) spec.argv.push_back(image);
  spec.output_file = output;
  const SubprocessResult result = run_subprocess(spec, [] { return Interrupt::requested(); });
  std::ifstream in(output);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::error_code ec;
  fs::remove(output, ec);
  if (result.cancelled) throw PetalError("interrupted", {}, kExitInterrupted);
  if (result.signal != 0 || result.exit_code != 0) {
    throw PetalError("cannot load the model in " + model_dir.string() + " (petal-worker: " + result.describe() + "): " + text,
                     {}, kExitStageFailed);
  }
  // The worker prints LibTorch warnings before its one JSON line, which is last.
  const auto start = text.rfind("\n{");
  return json::parse(start == std::string::npos ? text : text.substr(start + 1));
}

}  // namespace

int run_predict(const GlobalOptions& global, const PredictOptions& options) {
  Interrupt::install_handlers();
  const mlflow::ModelLocation location = locate_model(global, options);
  const json answer = run_worker(location.dir, options);
  const auto classes = answer.at("classes").get<std::vector<std::string>>();
  const std::size_t k = std::min<std::size_t>(static_cast<std::size_t>(options.top_k), classes.size());
  int failed = 0;
  json out = {{"model", location.resolved}, {"architecture", answer.at("architecture")}, {"predictions", json::array()}};
  if (!options.json) std::printf("model: %s (%s)\n", location.resolved.c_str(), answer.at("architecture").get<std::string>().c_str());
  for (const json& row : answer.at("predictions")) {
    const std::string file = row.at("file");
    if (row.contains("error")) {
      ++failed;
      out["predictions"].push_back({{"file", file}, {"error", row.at("error")}});
      if (!options.json) std::printf("%s\n  error: %s\n", file.c_str(), row.at("error").get<std::string>().c_str());
      continue;
    }
    const auto probabilities = row.at("probabilities").get<std::vector<double>>();
    std::vector<std::size_t> order(classes.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return probabilities[a] > probabilities[b]; });
    json top = json::array(), all = json::object();
    for (std::size_t i = 0; i < classes.size(); ++i) all[classes[i]] = probabilities[i];
    for (std::size_t r = 0; r < k; ++r) top.push_back({{"class", classes[order[r]]}, {"probability", probabilities[order[r]]}});
    out["predictions"].push_back({{"file", file}, {"top", top}, {"probabilities", all}});
    if (!options.json) {
      std::printf("%s\n", file.c_str());
      for (std::size_t r = 0; r < k; ++r) {
        std::printf("  %-24s %7.4f\n", classes[order[r]].c_str(), probabilities[order[r]]);
      }
    }
  }
  if (options.json) std::printf("%s\n", out.dump(2).c_str());
  if (failed > 0) {
    // Bad input, like a bad experiment file: the images named above need replacing, not a re-run.
    std::fflush(stdout);  // the per-image errors first, also when stdout is a pipe
    std::fprintf(stderr, "petal predict: %d of %zu images could not be classified (see above); replace or remove them\n",
                 failed, answer.at("predictions").size());
    return kExitUsage;
  }
  return kExitOk;
}

}  // namespace petal::cli
