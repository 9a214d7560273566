#include "stages/train/train_impl.h"

#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

#include "stages/augment/normalize.h"
#include "stages/train/distributed/collective.h"
#include "stages/train/model_names.h"
#include "stages/train/models/memory_format.h"
#include "stages/train/models/model_zoo.h"
#include "stages/train/trained_model.h"
#include "stages/train/trainer.h"
#include "stages/train/weights/state_dict_load.h"

namespace petal {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kModelFormat = 1;

json read_json(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read " + file.string());
  return json::parse(in);
}

// The upstream output holding `marker` (augment.json: the image cache; model.json: a trained model).
fs::path input_with(const StageContext& ctx, const std::string& marker, const std::string& what) {
  for (const auto& [name, dir] : ctx.inputs) {
    if (fs::exists(dir / marker)) return dir;
  }
  throw std::runtime_error(ctx.stage_name + " needs " + what + " among its inputs (no upstream output has " + marker +
                           "); check its `needs`");
}

void log_line(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

torch::Device choose_device(const std::string& requested) {
  const bool cuda = torch::cuda::is_available();
  if (requested == "cuda" && !cuda) {
    throw std::runtime_error("device = \"cuda\" but this LibTorch build has no usable CUDA device; use \"auto\" or \"cpu\"");
  }
  return (requested == "cuda" || (requested == "auto" && cuda)) ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
}

models::HeadSpec head_from_params(const json& params, std::int64_t classes) {
  models::HeadSpec head;
  head.num_classes = classes;
  for (const json& size : params.at("head_hidden")) head.hidden.push_back(static_cast<std::int64_t>(size.get<double>()));
  head.batch_norm = params.at("head_batch_norm").get<bool>();
  head.dropout = params.at("head_dropout").get<double>();
  return head;
}

std::vector<std::string> read_classes(const fs::path& file) {
  std::ifstream in(file);
  std::vector<std::string> classes;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) classes.push_back(line);
  }
  if (classes.empty()) throw std::runtime_error(file.string() + " lists no classes");
  return classes;
}

train::TrainerOptions trainer_options(const json& p, int threads, torch::Device device) {
  train::TrainerOptions o;
  o.epochs = p.at("epochs");
  o.batch_size = p.at("batch_size");
  o.optimizer.kind = p.at("optimizer");
  o.optimizer.lr = p.at("lr");
  o.optimizer.momentum = p.at("momentum");
  o.optimizer.nesterov = p.at("nesterov");
  o.optimizer.beta1 = p.at("beta1");
  o.optimizer.beta2 = p.at("beta2");
  o.optimizer.eps = p.at("eps");
  o.optimizer.weight_decay = p.at("weight_decay");
  o.optimizer.decay_norm_and_bias = p.at("decay_norm_and_bias");
  o.schedule.kind = p.at("schedule");
  o.schedule.lr = p.at("lr");
  o.schedule.min_lr = p.at("min_lr");
  o.schedule.max_lr = p.at("max_lr");
  o.schedule.warmup_epochs = p.at("warmup_epochs");
  o.schedule.pct_start = p.at("pct_start");
  o.schedule.step_epochs = p.at("step_epochs");
  o.schedule.gamma = p.at("gamma");
  o.schedule.cyclic_mode = p.at("cyclic_mode");
  o.schedule.cyclic_step_size = p.at("cyclic_step_size");
  o.schedule.cycle_momentum = p.at("cycle_momentum");
  o.schedule.base_momentum = p.at("base_momentum");
  o.schedule.max_momentum = p.at("max_momentum");
  o.ema_decay = p.at("ema_decay");
  o.label_smoothing = p.at("label_smoothing");
  o.balanced_class_weights = p.at("class_weights").get<std::string>() == "balanced";
  o.mix.mixup_alpha = p.at("mixup_alpha");
  o.mix.cutmix_alpha = p.at("cutmix_alpha");
  o.mix.probability = p.at("mix_probability");
  o.grad_clip_norm = p.at("grad_clip_norm");
  o.augment = p.at("augment");
  o.cache_features = p.value("cache_features", false);
  o.early_stopping.metric = p.at("monitor");
  o.early_stopping.maximize = o.early_stopping.metric != "val_loss";
  o.early_stopping.patience = p.at("early_stopping_patience");
  o.early_stopping.min_delta = p.at("min_delta");
  o.restore_best = p.at("restore_best");
  o.seed = p.at("seed").get<std::uint64_t>();
  const long long workers = p.at("loader_workers");
  o.loader_workers = workers > 0 ? static_cast<int>(workers) : threads;
  o.device = device;
  o.mixed_precision = train::precision_on(p.at("mixed_precision").get<std::string>(), device);
  return o;
}

void write_history(const fs::path& file, const std::vector<train::EpochStats>& history) {
  std::ofstream out(file);
  out << "epoch,train_loss,train_accuracy,train_f1,val_loss,val_accuracy,val_f1,lr,epoch_seconds,images_per_second\n";
  for (const auto& s : history) {
    char row[400];
    std::snprintf(row, sizeof row, "%lld,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6g,%.3f,%.2f\n", static_cast<long long>(s.epoch),
                  s.train_loss, s.train_accuracy, s.train_f1, s.val_loss, s.val_accuracy, s.val_f1, s.lr, s.seconds,
                  s.images_per_second);
    out << row;
  }
}

void run_phase(StageContext& ctx, bool finetune) {
  const json& p = ctx.params;
  const int threads = p.at("threads").get<long long>() > 0 ? static_cast<int>(p.at("threads").get<long long>()) : ctx.threads;
  torch::set_num_threads(threads);
  if (p.at("deterministic").get<bool>()) {
    // cuBLAS is deterministic only with a fixed workspace, chosen before its first handle exists.
    ::setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
    at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/true);
  }
  // Data parallelism: `petal run --nproc/--nnodes` (or any launcher) sets the rendezvous variables.
  const train::RendezvousSpec rendezvous = train::RendezvousSpec::from_environment();
  torch::Device device = choose_device(p.at("device"));
  if (device.is_cuda() && rendezvous.active()) {
    // One GPU per local rank.
    device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(rendezvous.local_rank % torch::cuda::device_count()));
  }

  const fs::path data_dir = input_with(ctx, "augment.json", "an augment stage's image cache");
  const json augment = read_json(data_dir / "augment.json");
  const std::vector<std::string> classes = read_classes(data_dir / "classes.txt");
  const std::int64_t seed = p.at("seed");

  models::ModelSpec spec;
  json origin;
  fs::path initial_file;
  std::string key_format = "torchvision";
  std::size_t first_trained = 0;
  double lr_multiplier = 1.0;
  augment::Normalization normalization;
  if (!finetune) {
    spec.architecture = p.at("model");
    spec.head = head_from_params(p, static_cast<std::int64_t>(classes.size()));
    const json& weights = p.at("resolved").at("weights");
    initial_file = weights.at("file").get<std::string>();
    key_format = weights.at("key_format");
    origin = {{"weights", p.at("weights")}, {"file", initial_file.string()}};
    const std::string named = p.at("normalization");
    normalization = augment::Normalization::named(named == "auto" ? default_normalization(spec.architecture) : named);
  } else {
    const fs::path model_dir = input_with(ctx, "model.json", "a trained model (the train stage)");
    const json trained = read_json(model_dir / "model.json");
    spec.architecture = trained.at("architecture");
    spec.head = train::head_from_json(trained.at("head"));
    if (trained.at("classes").get<std::vector<std::string>>() != classes) {
      throw std::runtime_error("the trained model's classes differ from the image cache's classes.txt; fine-tune on the "
                               "data the model was trained on");
    }
    initial_file = model_dir / "model.pt";
    origin = trained.value("origin", json::object());
    const json& preprocessing = trained.at("preprocessing");
    normalization.mean = preprocessing.at("mean");
    normalization.std = preprocessing.at("std");
    lr_multiplier = p.at("lr_multiplier");
  }

  torch::manual_seed(static_cast<std::uint64_t>(seed));
  models::Classifier model = models::make_classifier(spec);
  if (!initial_file.empty()) {
    weights::StateDict state = weights::rename_keys(weights::read_state_dict(initial_file), key_format);
    weights::LoadOptions load;
    if (!finetune) load.skip_prefixes = model->replaced_prefixes();  // the new head replaces the published one
    const auto loaded = weights::load_state_dict(*model, state, load, initial_file.string());
    log_line("loaded " + std::to_string(loaded.loaded.size()) + " tensors from " + initial_file.string() +
             (loaded.skipped.empty() ? "" : " (" + std::to_string(loaded.skipped.size()) + " of the original head replaced)"));
  }
  if (finetune) {
    const std::string from = p.at("unfreeze_from");
    try {
      first_trained = from.empty() ? 0 : train::block_index(*model, from);
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error("[" + ctx.stage_name + "] unfreeze_from = \"" + from + "\": " + e.what());
    }
  } else {
    first_trained = p.at("freeze_backbone").get<bool>() ? model->blocks().size() : 0;
  }
  {
    // inception_v3's auxiliary classifier trains whenever its block does.
    const std::vector<std::string> blocks = model->blocks();
    const auto auxiliary = std::find(blocks.begin(), blocks.end(), "AuxLogits");
    const bool auxiliary_trains =
        auxiliary != blocks.end() && first_trained <= static_cast<std::size_t>(auxiliary - blocks.begin());
    const std::string size_problem =
        image_size_problem(spec.architecture, augment.at("image_size").get<int>(), auxiliary_trains);
    if (!size_problem.empty()) throw std::runtime_error("[" + ctx.stage_name + "] " + size_problem);
  }
  model->to(device);
  const bool channels_last =
      models::use_channels_last_for(p.at("channels_last").get<std::string>(), spec.architecture, device.is_cuda());
  if (channels_last) models::use_channels_last(*model);

  std::unique_ptr<train::Collective> collective;
  if (rendezvous.active()) collective = train::connect_collective(rendezvous, device.is_cuda());

  train::TrainerOptions options = trainer_options(p, threads, device);
  options.channels_last = channels_last;
  options.collective = collective.get();
  options.writes_checkpoints = rendezvous.local_rank == 0;
  options.normalization = normalization;
  options.trainable.first_trained_block = first_trained;
  options.trainable.lr_multiplier = lr_multiplier;
  log_line(ctx.stage_name + ": " + spec.architecture + " on " + device.str() + ", " + std::to_string(threads) +
           " intra-op threads, " + std::to_string(options.loader_workers) + " loader workers, " +
           (channels_last ? "channels-last" : "contiguous") + " memory format, " +
           train::describe(options.mixed_precision) + "; training " +
           (first_trained >= model->blocks().size() ? std::string("the head only")
                                                    : "from block " + model->blocks()[first_trained]));
  const auto started = std::chrono::steady_clock::now();
  const train::TrainResult result =
      train::train_model(*model, data_dir, options, ctx.resume_dir, ctx.report, ctx.cancelled, log_line);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  // The held-out test split, scored once with the final weights; nothing in training looks at it.
  const train::SplitScore test = train::evaluate_split(*model, data_dir, "test", options, ctx.cancelled);
  if (test.samples > 0) {
    char line[200];
    std::snprintf(line, sizeof line, "test (%lld images): loss %.4f, accuracy %.4f, macro-F1 %.4f",
                  static_cast<long long>(test.samples), test.loss, test.accuracy, test.macro_f1);
    log_line(line);
    ctx.report.metric("test_loss", test.loss);
    ctx.report.metric("test_accuracy", test.accuracy);
    ctx.report.metric("test_f1", test.macro_f1);
    ctx.report.metric("test_weighted_f1", test.weighted_f1);
  }

  // ---- outputs ----
  model->to(torch::kCPU);
  weights::StateDict state = weights::module_state_dict(*model);
  for (auto& entry : state) entry.second = entry.second.contiguous();
  weights::write_state_dict(ctx.output_dir / "model.pt", state);
  const json model_json = {
      {"format", kModelFormat},
      {"architecture", spec.architecture},
      {"head", train::head_to_json(spec.head)},
      {"classes", classes},
      {"preprocessing",
       {{"image_size", augment.at("image_size")},
        {"eval_resize", augment.at("eval_resize")},
        {"cache_short_side", augment.at("cache_short_side")},
        {"upscale", augment.at("upscale")},
        {"mean", normalization.mean},
        {"std", normalization.std},
        {"colour_order", augment.value("colour_order", "RGB")}}},
      {"weights", "model.pt"},
      {"origin", origin},
      {"stage", ctx.stage_name}};
  std::ofstream(ctx.output_dir / "model.json") << model_json.dump(2) << "\n";
  {
    std::ofstream out(ctx.output_dir / "classes.txt");
    for (const auto& name : classes) out << name << "\n";
  }
  write_history(ctx.output_dir / "history.csv", result.history);

  json groups = json::array();
  for (const auto& g : result.groups) {
    groups.push_back({{"block", g.block}, {"depth", g.depth}, {"decay", g.decay}, {"lr_multiplier", g.lr_multiplier},
                      {"parameters", g.parameters}});
  }
  const train::EpochStats* best = nullptr;
  for (const auto& s : result.history) {
    if (s.epoch == result.best_epoch) best = &s;
  }
  double images_per_second = 0;
  for (const auto& s : result.history) images_per_second += s.images_per_second / static_cast<double>(result.history.size());
  const json summary = {{"epochs_run", result.history.size()},
                        {"best_epoch", result.best_epoch},
                        {"stopped_early", result.stopped_early},
                        {"resumed_from_epoch", result.resumed_from_epoch},
                        {"feature_cache", result.used_feature_cache},
                        {"seconds", seconds},
                        {"device", device.str()},
                        {"threads", threads},
                        {"channels_last", channels_last},
                        {"data_parallel", {{"world_size", rendezvous.world_size},
                                           {"backend", collective ? collective->backend() : "none"}}},
                        {"param_groups", groups},
                        {"test", {{"samples", test.samples},
                                  {"loss", test.loss},
                                  {"accuracy", test.accuracy},
                                  {"macro_f1", test.macro_f1},
                                  {"weighted_f1", test.weighted_f1}}}};
  std::ofstream(ctx.output_dir / "training.json") << summary.dump(2) << "\n";

  ctx.report.metric("best_epoch", static_cast<double>(result.best_epoch));
  ctx.report.metric("epochs_run", static_cast<double>(result.history.size()));
  ctx.report.metric("train_seconds", seconds);
  ctx.report.metric("mean_images_per_second", images_per_second);
  if (best) {
    ctx.report.metric("best_val_accuracy", best->val_accuracy);
    ctx.report.metric("best_val_f1", best->val_f1);
    ctx.report.metric("best_val_loss", best->val_loss);
  }
  if (result.stopped_early) ctx.report.note("stopped early after epoch " + std::to_string(result.history.size()));
  if (result.resumed_from_epoch > 0) ctx.report.note("resumed from epoch " + std::to_string(result.resumed_from_epoch));
  for (const char* artifact : {"model.json", "history.csv", "training.json"}) ctx.report.artifact(artifact);
}

}  // namespace

void run_train_stage(StageContext& ctx) { run_phase(ctx, false); }
void run_finetune_stage(StageContext& ctx) { run_phase(ctx, true); }

}  // namespace petal
