#include "stages/evaluate/evaluate_impl.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "stages/augment/augment_pipeline.h"
#include "stages/augment/image_cache.h"
#include "stages/evaluate/evaluation_metrics.h"
#include "stages/evaluate/grad_cam.h"
#include "stages/evaluate/mlflow_model.h"
#include "stages/evaluate/report_charts.h"
#include "stages/evaluate/test_time_augmentation.h"
#include "stages/train/loader.h"
#include "stages/train/trained_model.h"

namespace petal {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void log_line(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

// The one upstream output holding `marker`; several (train and finetune both as inputs) would be
// ambiguous, so the user must say which with `needs`.
fs::path single_input_with(const StageContext& ctx, const std::string& marker, const std::string& what) {
  std::vector<std::string> names;
  fs::path found;
  for (const auto& [name, dir] : ctx.inputs) {
    if (fs::exists(dir / marker)) {
      names.push_back(name);
      found = dir;
    }
  }
  if (names.empty()) {
    throw std::runtime_error(ctx.stage_name + " needs " + what + " among its inputs (no upstream output has " + marker +
                             "); check its `needs`");
  }
  if (names.size() > 1) {
    throw std::runtime_error(ctx.stage_name + " has " + std::to_string(names.size()) + " inputs with " + marker + " (" +
                             names.front() + ", " + names.back() + "); list only the one to evaluate in its `needs`");
  }
  return found;
}

void write_png(const fs::path& file, const cv::Mat& bgr) {
  fs::create_directories(file.parent_path());
  if (!cv::imwrite(file.string(), bgr)) throw std::runtime_error("cannot write " + file.string());
}

cv::Mat to_bgr(const cv::Mat& rgb) {
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  return bgr;
}

std::string percent(double p) {
  char text[16];
  std::snprintf(text, sizeof text, "%.2f", p);
  return text;
}

struct SplitPredictions {
  std::vector<std::int64_t> labels;
  std::vector<std::int64_t> rows;      // image cache rows
  std::vector<float> probabilities;    // samples x classes
};

SplitPredictions predict_split(train::TrainedModel& model, const fs::path& data_dir, const std::string& split,
                               std::int64_t batch_size, int workers, torch::Device device, const std::string& tta,
                               const std::function<bool()>& cancelled) {
  LoaderOptions options = LoaderOptions::evaluation(data_dir, split, batch_size);
  options.workers = workers;
  options.normalization = model.preprocessing.normalization;
  BatchLoader loader(options);
  SplitPredictions out;
  if (loader.samples() == 0) return out;
  torch::NoGradGuard no_grad;
  loader.start_epoch(0);
  while (auto batch = loader.next()) {
    if (cancelled()) throw StageCancelled();
    const torch::Tensor p = evaluate::class_probabilities(*model.network, batch->images.to(device), tta).to(torch::kCPU).contiguous();
    out.probabilities.insert(out.probabilities.end(), p.data_ptr<float>(), p.data_ptr<float>() + p.numel());
    const std::int64_t* labels = batch->labels.data_ptr<std::int64_t>();
    const std::int64_t* rows = batch->indices.data_ptr<std::int64_t>();
    out.labels.insert(out.labels.end(), labels, labels + batch->labels.numel());
    out.rows.insert(out.rows.end(), rows, rows + batch->indices.numel());
  }
  return out;
}

cv::Mat eval_view(const augment::ImageCache& cache, std::int64_t row, const train::Preprocessing& p) {
  return augment::eval_transform(cache.image(static_cast<std::size_t>(row)), p.image_size, p.eval_resize);
}

// Sample positions sorted by the confidence of their prediction, most confident first.
std::vector<std::size_t> by_confidence(const SplitPredictions& s, std::size_t classes, bool mistakes) {
  std::vector<std::size_t> picked;
  std::vector<double> confidence(s.labels.size());
  for (std::size_t i = 0; i < s.labels.size(); ++i) {
    const float* row = &s.probabilities[i * classes];
    const std::int64_t predicted = evaluate::predicted_class(row, static_cast<std::int64_t>(classes));
    confidence[i] = row[predicted];
    if ((predicted != s.labels[i]) == mistakes) picked.push_back(i);
  }
  std::stable_sort(picked.begin(), picked.end(), [&](std::size_t a, std::size_t b) { return confidence[a] > confidence[b]; });
  return picked;
}

cv::Mat misclassified_gallery(const SplitPredictions& s, const train::TrainedModel& model,
                              const augment::ImageCache& cache, std::size_t limit, const std::string& split) {
  const std::size_t classes = model.classes.size();
  std::vector<evaluate::GalleryItem> items;
  for (std::size_t i : by_confidence(s, classes, /*mistakes=*/true)) {
    if (items.size() >= limit) break;
    const float* row = &s.probabilities[i * classes];
    const std::int64_t predicted = evaluate::predicted_class(row, static_cast<std::int64_t>(classes));
    evaluate::GalleryItem item;
    item.rgb = eval_view(cache, s.rows[i], model.preprocessing);
    item.caption_top = "true: " + model.classes[static_cast<std::size_t>(s.labels[i])];
    item.caption_bottom = "pred: " + model.classes[static_cast<std::size_t>(predicted)] + " " + percent(row[predicted]);
    items.push_back(std::move(item));
  }
  return evaluate::draw_image_gallery(items, 6, split + ": misclassified images, most confident first (" +
                                                    std::to_string(items.size()) + " shown)");
}

// Grad-CAM figures: the most confident mistakes and the most confident correct predictions, half
// each (as far as there are), every image with the maps of its most probable classes.
std::vector<std::string> write_grad_cams(const SplitPredictions& s, train::TrainedModel& model,
                                         const augment::ImageCache& cache, std::size_t images, std::size_t top,
                                         torch::Device device, const fs::path& dir) {
  const std::size_t classes = model.classes.size();
  const auto mistakes = by_confidence(s, classes, true);
  const auto correct = by_confidence(s, classes, false);
  std::vector<std::size_t> chosen;
  for (std::size_t k = 0; chosen.size() < images && (k < mistakes.size() || k < correct.size()); ++k) {
    if (k < mistakes.size()) chosen.push_back(mistakes[k]);
    if (k < correct.size() && chosen.size() < images) chosen.push_back(correct[k]);
  }
  const augment::NormalizationTable table(model.preprocessing.normalization);
  std::vector<std::string> written;
  for (std::size_t n = 0; n < chosen.size(); ++n) {
    const std::size_t i = chosen[n];
    const cv::Mat view = eval_view(cache, s.rows[i], model.preprocessing);
    torch::Tensor input = torch::empty({3, view.rows, view.cols}, torch::kFloat);
    augment::normalize_into(view, input.data_ptr<float>(), false, table);
    const float* row = &s.probabilities[i * classes];
    std::vector<std::int64_t> order(classes);
    for (std::size_t c = 0; c < classes; ++c) order[c] = static_cast<std::int64_t>(c);
    std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) { return row[a] > row[b]; });
    order.resize(std::min(top, classes));
    const std::vector<at::Tensor> maps = evaluate::grad_cam(*model.network, input.to(device), order);
    std::vector<std::pair<cv::Mat, std::string>> panels = {{to_bgr(view), "input"}};
    for (std::size_t k = 0; k < order.size(); ++k) {
      const at::Tensor map = maps[k].to(torch::kCPU).contiguous();
      const cv::Mat heat(static_cast<int>(map.size(0)), static_cast<int>(map.size(1)), CV_32F, map.data_ptr<float>());
      panels.emplace_back(evaluate::overlay_heatmap(view, heat.clone(), 0.45),
                          model.classes[static_cast<std::size_t>(order[k])] + " p=" + percent(row[order[k]]));
    }
    const std::string truth = model.classes[static_cast<std::size_t>(s.labels[i])];
    const cv::Mat figure = evaluate::stack_vertically({evaluate::draw_labelled_row(panels, 224)},
                                                      "Grad-CAM, true class: " + truth);
    const std::string name = "gradcam_" + std::to_string(n + 1) + "_" + evaluate::metric_name_part(truth) + ".png";
    write_png(dir / name, figure);
    written.push_back(name);
  }
  return written;
}

// history.csv (trainer) -> loss, accuracy and macro-F1 panels, train vs val.
cv::Mat training_curves(const fs::path& history_file, const std::string& title) {
  std::ifstream in(history_file);
  std::string header;
  std::getline(in, header);
  std::vector<std::string> columns;
  {
    std::stringstream ss(header);
    for (std::string c; std::getline(ss, c, ',');) columns.push_back(c);
  }
  std::map<std::string, std::vector<double>> values;
  for (std::string line; std::getline(in, line);) {
    std::stringstream ss(line);
    std::size_t c = 0;
    for (std::string cell; std::getline(ss, cell, ',') && c < columns.size(); ++c) {
      values[columns[c]].push_back(cell.empty() ? std::nan("") : std::stod(cell));
    }
  }
  const auto& epochs = values["epoch"];
  const cv::Scalar train_colour(200, 110, 30), val_colour(40, 120, 240);
  std::vector<evaluate::CurvePanel> panels;
  for (const auto& [metric, label] : std::vector<std::pair<std::string, std::string>>{
           {"loss", "loss"}, {"accuracy", "accuracy"}, {"f1", "macro-F1"}}) {
    evaluate::CurvePanel panel;
    panel.title = label;
    panel.series.push_back({"train", epochs, values["train_" + metric], train_colour});
    panel.series.push_back({"val", epochs, values["val_" + metric], val_colour});
    if (metric != "loss") {
      panel.y_min = 0;
      panel.y_max = 1;
    }
    panels.push_back(std::move(panel));
  }
  return evaluate::draw_training_curves(panels, title);
}

}  // namespace

void run_evaluate_stage(StageContext& ctx) {
  const json& p = ctx.params;
  const int threads = p.at("threads").get<long long>() > 0 ? static_cast<int>(p.at("threads").get<long long>()) : ctx.threads;
  torch::set_num_threads(threads);
  const std::string requested = p.at("device");
  if (requested == "cuda" && !torch::cuda::is_available()) {
    throw std::runtime_error("device = \"cuda\" but this LibTorch build has no usable CUDA device; use \"auto\" or \"cpu\"");
  }
  const torch::Device device = (requested == "cuda" || (requested == "auto" && torch::cuda::is_available()))
                                   ? torch::Device(torch::kCUDA)
                                   : torch::Device(torch::kCPU);

  const fs::path data_dir = single_input_with(ctx, "augment.json", "an augment stage's image cache");
  const fs::path model_dir = single_input_with(ctx, "model.json", "a trained model (a train or finetune stage)");
  train::TrainedModel model = train::load_trained_model(model_dir);
  const augment::ImageCache cache(data_dir);
  if (cache.classes() != model.classes) {
    throw std::runtime_error("the model's classes differ from the image cache's classes.txt; evaluate on the data the "
                             "model was trained on");
  }
  model.network->to(device);
  log_line(ctx.stage_name + ": " + model.spec.architecture + " from " + model_dir.filename().string() + " on " +
           device.str() + ", " + std::to_string(threads) + " threads");

  const fs::path reports = ctx.output_dir / "reports";
  json metrics = json::object(), report = json::object();
  bool explained = false;
  for (const std::string& split : p.at("splits").get<std::vector<std::string>>()) {
    const SplitPredictions s = predict_split(model, data_dir, split, p.at("batch_size"), threads, device,
                                               p.value("tta", std::string("none")), ctx.cancelled);
    if (s.labels.empty()) {
      ctx.report.note("split " + split + " has no images: not evaluated");
      continue;
    }
    const evaluate::EvaluationResult result =
        evaluate::evaluate_predictions(s.labels, s.probabilities, model.classes, static_cast<int>(p.at("top_k").get<long long>()));
    report[split] = result.to_json();
    for (const auto& [name, value] : result.metrics(split)) {
      metrics[name] = value;
      ctx.report.metric(name, value);
    }
    char line[200];
    std::snprintf(line, sizeof line, "%s (%lld images): accuracy %.4f, macro-F1 %.4f, log loss %.4f", split.c_str(),
                  static_cast<long long>(result.samples), result.accuracy, result.macro_f1, result.log_loss);
    log_line(line);

    const fs::path dir = reports / split;
    fs::create_directories(dir);
    evaluate::write_confusion_csv(result.confusion, model.classes, dir / "confusion_matrix.csv", false);
    evaluate::write_confusion_csv(result.confusion, model.classes, dir / "confusion_matrix_normalized.csv", true);
    write_png(dir / "confusion_matrix.png",
              evaluate::draw_confusion_matrix(result.confusion, model.classes, false, split + ": confusion matrix (counts)"));
    write_png(dir / "confusion_matrix_normalized.png",
              evaluate::draw_confusion_matrix(result.confusion, model.classes, true,
                                              split + ": confusion matrix (share of each true class)"));
    const auto gallery = static_cast<std::size_t>(p.at("gallery_images").get<long long>());
    if (gallery > 0) write_png(dir / "misclassified.png", misclassified_gallery(s, model, cache, gallery, split));
    if (!explained && p.at("gradcam_images").get<long long>() > 0) {
      write_grad_cams(s, model, cache, static_cast<std::size_t>(p.at("gradcam_images").get<long long>()),
                      static_cast<std::size_t>(p.at("gradcam_classes").get<long long>()), device, reports / "gradcam");
      explained = true;
    }
  }
  if (metrics.empty()) throw std::runtime_error("none of the splits " + p.at("splits").dump() + " has images to evaluate");
  if (fs::exists(model_dir / "history.csv")) {
    write_png(reports / "training_curves.png",
              training_curves(model_dir / "history.csv", model.spec.architecture + ": training history (" +
                                                             model.description.value("stage", std::string("train")) + ")"));
  }

  model.network->to(torch::kCPU);
  evaluate::write_mlflow_model(model_dir, ctx.output_dir / "model", {});
  std::ofstream(ctx.output_dir / "metrics.json") << metrics.dump(2) << "\n";
  std::ofstream(ctx.output_dir / "report.json") << report.dump(2) << "\n";

  ctx.report.artifact("metrics.json");
  ctx.report.artifact("report.json");
  std::vector<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(reports)) {
    if (entry.is_regular_file()) files.push_back(entry.path().lexically_relative(ctx.output_dir).generic_string());
  }
  std::sort(files.begin(), files.end());
  for (const std::string& file : files) ctx.report.artifact(file);
  ctx.report.artifact("model");
}

}  // namespace petal
