#include "stages/split/split_charts.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>

#include "pipeline/util/error.h"

namespace petal {

namespace {
const cv::Scalar kInk(40, 40, 40), kPaper(255, 255, 255);
const std::pair<const char*, cv::Scalar> kSplits[] = {
    {"train", cv::Scalar(180, 119, 31)}, {"val", cv::Scalar(14, 127, 255)}, {"test", cv::Scalar(44, 160, 44)}};

void save(const cv::Mat& image, const std::filesystem::path& png) {
  if (!cv::imwrite(png.string(), image)) throw PetalError("cannot write " + png.string());
}
}  // namespace

void write_class_distribution(const std::map<std::string, std::map<std::string, int>>& counts,
                              const std::filesystem::path& png) {
  const int row = 22, left = 170, width = 520, top = 40;
  const int height = top + static_cast<int>(counts.size()) * row + 30;
  cv::Mat image(height, left + width + 90, CV_8UC3, kPaper);
  int largest = 1;
  for (const auto& [label, per_split] : counts) {
    int total = 0;
    for (const auto& [split, n] : per_split) total += n;
    largest = std::max(largest, total);
  }
  cv::putText(image, "images per class and split", {10, 22}, cv::FONT_HERSHEY_SIMPLEX, 0.6, kInk, 1, cv::LINE_AA);
  int legend_x = left + width - 200;
  for (const auto& [name, colour] : kSplits) {
    cv::rectangle(image, {legend_x, 10}, {legend_x + 12, 22}, colour, cv::FILLED);
    cv::putText(image, name, {legend_x + 16, 21}, cv::FONT_HERSHEY_SIMPLEX, 0.45, kInk, 1, cv::LINE_AA);
    legend_x += 70;
  }
  int y = top;
  for (const auto& [label, per_split] : counts) {
    const std::string name = label.size() > 22 ? label.substr(0, 21) + "~" : label;
    cv::putText(image, name, {10, y + 15}, cv::FONT_HERSHEY_SIMPLEX, 0.45, kInk, 1, cv::LINE_AA);
    int x = left, total = 0;
    for (const auto& [split, colour] : kSplits) {
      const auto it = per_split.find(split);
      const int n = it == per_split.end() ? 0 : it->second;
      const int w = static_cast<int>(static_cast<long>(n) * width / largest);
      if (w > 0) cv::rectangle(image, {x, y + 3}, {x + w, y + row - 3}, colour, cv::FILLED);
      x += w;
      total += n;
    }
    cv::putText(image, std::to_string(total), {x + 6, y + 15}, cv::FONT_HERSHEY_SIMPLEX, 0.45, kInk, 1, cv::LINE_AA);
    y += row;
  }
  save(image, png);
}

void write_sample_grid(const std::map<std::string, std::vector<std::filesystem::path>>& samples, int per_class,
                       const std::filesystem::path& png) {
  const int thumb = 96, label_width = 170, gap = 4;
  const int rows = static_cast<int>(samples.size());
  cv::Mat image(std::max(1, rows) * (thumb + gap) + gap, label_width + per_class * (thumb + gap) + gap, CV_8UC3, kPaper);
  int y = gap;
  for (const auto& [label, files] : samples) {
    const std::string name = label.size() > 22 ? label.substr(0, 21) + "~" : label;
    cv::putText(image, name, {8, y + thumb / 2 + 5}, cv::FONT_HERSHEY_SIMPLEX, 0.5, kInk, 1, cv::LINE_AA);
    int x = label_width;
    for (int i = 0; i < per_class && i < static_cast<int>(files.size()); ++i) {
      const cv::Mat picture = cv::imread(files[static_cast<std::size_t>(i)].string(), cv::IMREAD_COLOR);
      if (!picture.empty()) {
        // Fit inside a square thumbnail, keeping the aspect ratio.
        const double scale = static_cast<double>(thumb) / std::max(picture.cols, picture.rows);
        cv::Mat small;
        cv::resize(picture, small, {}, scale, scale, cv::INTER_AREA);
        small.copyTo(image(cv::Rect(x + (thumb - small.cols) / 2, y + (thumb - small.rows) / 2, small.cols, small.rows)));
      }
      x += thumb + gap;
    }
    y += thumb + gap;
  }
  save(image, png);
}

}  // namespace petal
