#include "pipeline/sweep/sweep_charts.h"

#include <opencv2/imgcodecs.hpp>

#include <cmath>
#include <stdexcept>

#include "stages/evaluate/report_charts.h"

namespace petal {

using nlohmann::json;

namespace {

// Ten distinguishable colours (BGR), repeated with dashes... of colour only: trials beyond ten
// share colours, the key below the chart tells them apart by id.
const cv::Scalar kPalette[] = {{180, 119, 31}, {14, 127, 255}, {44, 160, 44},  {40, 39, 214},   {189, 103, 148},
                               {75, 86, 140},  {194, 119, 227}, {127, 127, 127}, {34, 189, 188}, {207, 190, 23}};

void write_png(const std::filesystem::path& file, const cv::Mat& image) {
  if (!cv::imwrite(file.string(), image)) throw std::runtime_error("cannot write " + file.string());
}

}  // namespace

void draw_sweep_charts(const json& request, const std::filesystem::path& out_dir) {
  const std::string objective = request.at("objective").get<std::string>();
  std::vector<evaluate::Bar> bars;
  for (const auto& bar : request.at("bars")) {
    bars.push_back({bar.at("label").get<std::string>(), bar.at("value").is_number() ? bar.at("value").get<double>() : NAN});
  }
  write_png(out_dir / "objective.png",
            evaluate::draw_bar_chart(bars, request.value("title", "sweep") + ": " + objective + " per trial (" +
                                               (request.value("maximize", true) ? "higher" : "lower") + " is better)",
                                     objective, bars.empty() ? -1 : 0));

  evaluate::CurvePanel panel;
  const std::string metric = request.at("curve_metric").get<std::string>();
  panel.title = metric + " per epoch";
  std::vector<cv::Mat> key;
  std::size_t colour = 0;
  for (const auto& s : request.at("curves")) {
    const std::string name = s.at("name").get<std::string>();
    evaluate::CurveSeries series;
    series.name = name.substr(0, name.find(' '));  // the trial id; the key below has the values
    series.x = s.at("x").get<std::vector<double>>();
    series.y = s.at("y").get<std::vector<double>>();
    series.bgr = kPalette[colour++ % (sizeof kPalette / sizeof kPalette[0])];
    panel.series.push_back(std::move(series));
    key.push_back(evaluate::caption_strip(name, 860, 0.45));
  }
  if (metric.find("accuracy") != std::string::npos || metric.find("f1") != std::string::npos) {
    panel.y_min = std::nan("");
    panel.y_max = 1.0;
  }
  cv::Mat curves = evaluate::draw_training_curves({panel}, request.value("title", "sweep") + ": validation curves");
  key.insert(key.begin(), curves);
  write_png(out_dir / "validation_curves.png", evaluate::stack_vertically(key));
}

}  // namespace petal
