#include "stages/evaluate/report_charts.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace petal::evaluate {

namespace {

// ---- text: every label is measured before it is drawn, so nothing overlaps or is cut off ----

const cv::Scalar kPaper(255, 255, 255), kInk(40, 40, 40), kMuted(110, 110, 110), kFaint(175, 175, 175),
    kGrid(228, 228, 228), kAxis(120, 120, 120);
constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;
constexpr int kMargin = 16;
constexpr double kTitleScale = 0.7, kLabelScale = 0.45, kAxisTitleScale = 0.55;

// Width, and height from the top of capitals to the bottom of descenders.
cv::Size text_box(const std::string& text, double scale, int thickness = 1) {
  int baseline = 0;
  const cv::Size size = cv::getTextSize(text, kFont, scale, thickness, &baseline);
  return {size.width, size.height + baseline};
}

int line_height(double scale, int thickness = 1) { return text_box("Ag", scale, thickness).height; }

// The largest scale (at most `largest`) whose line height is at most `pixels`.
double scale_for_height(int pixels, double largest) {
  return std::min(largest, static_cast<double>(pixels) / line_height(1.0));
}

// `text` itself when it fits `width`, else its longest prefix followed by "..." that does, else "".
std::string shorten(const std::string& text, double scale, int width, int thickness = 1) {
  if (text_box(text, scale, thickness).width <= width) return text;
  for (std::size_t keep = text.size(); keep-- > 0;) {
    if ((static_cast<unsigned char>(text[keep]) & 0xC0) == 0x80) continue;  // never split a UTF-8 character
    const std::string candidate = text.substr(0, keep) + "...";
    if (text_box(candidate, scale, thickness).width <= width) return candidate;
  }
  return "";
}

// Draws `text` with its box's top-left corner at `top_left`.
void put_text(cv::Mat& image, const std::string& text, cv::Point top_left, double scale, const cv::Scalar& colour,
              int thickness = 1) {
  int baseline = 0;
  const cv::Size size = cv::getTextSize(text, kFont, scale, thickness, &baseline);
  cv::putText(image, text, {top_left.x, top_left.y + size.height}, kFont, scale, colour, thickness, cv::LINE_AA);
}

// Draws `text` centred in `box` (shortened to its width).
void put_centred(cv::Mat& image, const std::string& text, const cv::Rect& box, double scale, const cv::Scalar& colour,
                 int thickness = 1) {
  const std::string fitted = shorten(text, scale, box.width, thickness);
  const cv::Size size = text_box(fitted, scale, thickness);
  put_text(image, fitted, {box.x + (box.width - size.width) / 2, box.y + (box.height - size.height) / 2}, scale, colour,
           thickness);
}

// `text` on white, rotated to read bottom to top.
cv::Mat rotated_text(const std::string& text, double scale, const cv::Scalar& colour) {
  const cv::Size size = text_box(text, scale);
  cv::Mat flat(size.height + 2, size.width + 2, CV_8UC3, kPaper);
  put_text(flat, text, {1, 1}, scale, colour);
  cv::Mat turned;
  cv::rotate(flat, turned, cv::ROTATE_90_COUNTERCLOCKWISE);
  return turned;
}

// Copies `patch` into `image` at `top_left`, clipped to the image.
void paste(cv::Mat& image, const cv::Mat& patch, cv::Point top_left) {
  const cv::Rect target = cv::Rect(top_left, patch.size()) & cv::Rect(0, 0, image.cols, image.rows);
  if (target.empty()) return;
  patch(cv::Rect(target.tl() - top_left, target.size())).copyTo(image(target));
}

// A title band across the top: `title` left-aligned, shortened to the width.
void draw_title(cv::Mat& image, const std::string& title) {
  put_text(image, shorten(title, kTitleScale, image.cols - 2 * kMargin, 2), {kMargin, kMargin}, kTitleScale, kInk, 2);
}
int title_band() { return line_height(kTitleScale, 2) + 18; }

std::string format_number(double value, int decimals) {
  if (std::abs(value) < 0.5 * std::pow(10.0, -decimals)) value = 0;  // no "-0.0"
  char buffer[48];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
  return buffer;
}

// Enough decimals to tell ticks `step` apart: 0 for 1, 2, 5, 10..., 1 for 0.1-0.5, ...
int decimals_for_step(double step) { return std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9))); }

cv::Mat to_bgr(const cv::Mat& rgb) {
  cv::Mat bgr;
  if (rgb.channels() == 1) {
    cv::cvtColor(rgb, bgr, cv::COLOR_GRAY2BGR);
  } else if (rgb.channels() == 4) {
    cv::cvtColor(rgb, bgr, cv::COLOR_RGBA2BGR);
  } else {
    cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  }
  return bgr;
}

// `image` scaled to fit inside `box` (aspect kept), centred on a `background` of that size.
cv::Mat fit_into(const cv::Mat& image, cv::Size box, const cv::Scalar& background) {
  cv::Mat canvas(box, CV_8UC3, background);
  if (image.empty()) return canvas;
  const double scale = std::min(static_cast<double>(box.width) / image.cols, static_cast<double>(box.height) / image.rows);
  const cv::Size size(std::max(1, static_cast<int>(std::lround(image.cols * scale))),
                      std::max(1, static_cast<int>(std::lround(image.rows * scale))));
  cv::Mat resized;
  cv::resize(image, resized, size, 0, 0, scale < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
  resized.copyTo(canvas(cv::Rect((box.width - size.width) / 2, (box.height - size.height) / 2, size.width, size.height)));
  return canvas;
}

// ---- confusion matrix ----

// matplotlib's "Blues" (9 anchors, white to dark blue), as BGR, interpolated linearly.
cv::Vec3b blues(double v) {
  static const int anchors[9][3] = {{255, 251, 247}, {247, 235, 222}, {239, 219, 198}, {225, 202, 158}, {214, 174, 107},
                                    {198, 146, 66},  {181, 113, 33},  {156, 81, 8},    {107, 48, 8}};
  const double position = std::clamp(v, 0.0, 1.0) * 8;
  const int i = std::min(7, static_cast<int>(position));
  const double f = position - i;
  cv::Vec3b colour;
  for (int c = 0; c < 3; ++c) colour[c] = cv::saturate_cast<uchar>(anchors[i][c] * (1 - f) + anchors[i + 1][c] * f);
  return colour;
}

// Dark text on light cells, white on dark ones.
cv::Scalar text_colour_on(const cv::Vec3b& bgr) {
  const double luminance = 0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2];
  return luminance < 150 ? cv::Scalar(255, 255, 255) : kInk;
}

}  // namespace

cv::Mat draw_confusion_matrix(const train::ConfusionMatrix& matrix, const std::vector<std::string>& classes,
                              bool normalized, const std::string& title) {
  const int n = static_cast<int>(matrix.classes());
  if (static_cast<int>(classes.size()) != n) {
    throw std::invalid_argument("draw_confusion_matrix: " + std::to_string(classes.size()) + " class names for a " +
                                std::to_string(n) + "-class confusion matrix; pass one name per class");
  }
  // Cells shrink with the class count so the matrix stays about 700 pixels wide, within [12, 96].
  const int cell = std::clamp(720 / n, 12, 96);
  const double label_scale = scale_for_height(cell - 2, kLabelScale);
  const int max_label_width = 180;

  // What each cell shows, and the colour scale: shares of the row, or counts relative to the largest.
  std::int64_t largest = 0;
  for (int t = 0; t < n; ++t) {
    for (int p = 0; p < n; ++p) largest = std::max(largest, matrix.count(t, p));
  }
  auto value = [&](int t, int p) {
    if (normalized) {
      const std::int64_t support = matrix.support(t);
      return support == 0 ? 0.0 : static_cast<double>(matrix.count(t, p)) / static_cast<double>(support);
    }
    return static_cast<double>(matrix.count(t, p));
  };
  const double colour_top = normalized ? 1.0 : static_cast<double>(std::max<std::int64_t>(largest, 1));
  auto cell_text = [&](int t, int p) {
    return normalized ? format_number(value(t, p), 2) : std::to_string(matrix.count(t, p));
  };
  // Numbers get the largest scale (up to 0.6) at which the widest one fits; none below 0.3.
  const std::string widest = normalized ? "0.00" : std::to_string(largest);
  double number_scale = std::min(0.6, scale_for_height(cell / 2, 0.6));
  while (number_scale >= 0.3 && text_box(widest, number_scale).width > cell - 8) number_scale -= 0.05;
  const bool with_numbers = number_scale >= 0.3;

  // Labels: row names shortened to max_label_width; column names horizontal when all fit a cell.
  std::vector<std::string> labels;
  int row_label_width = 0;
  bool columns_fit = true;
  for (const std::string& name : classes) {
    labels.push_back(shorten(name, label_scale, max_label_width));
    row_label_width = std::max(row_label_width, text_box(labels.back(), label_scale).width);
    columns_fit = columns_fit && text_box(name, label_scale).width <= cell - 4;
  }
  const int column_label_height = columns_fit ? line_height(label_scale) : row_label_width + 2;  // rotated_text pads by 2
  const int axis_title_height = line_height(kAxisTitleScale);

  // Colour-bar ticks: round values within the scale (the bar's top is the largest count itself).
  std::vector<double> ticks = nice_ticks(0, colour_top, 6, !normalized);
  ticks.erase(std::remove_if(ticks.begin(), ticks.end(), [&](double tick) { return tick > colour_top + 1e-9; }), ticks.end());
  const int tick_decimals = ticks.size() > 1 ? decimals_for_step(ticks[1] - ticks[0]) : 0;
  int tick_label_width = 0;
  for (double tick : ticks) tick_label_width = std::max(tick_label_width, text_box(format_number(tick, tick_decimals), kLabelScale).width);

  const int matrix_size = n * cell;
  const int x0 = kMargin + axis_title_height + 10 + row_label_width + 8;
  const int y0 = kMargin + title_band();
  const int bar_x = x0 + matrix_size + 24, bar_width = 16;
  int width = bar_x + bar_width + 9 + tick_label_width + kMargin;
  width = std::max(width, std::min(text_box(title, kTitleScale, 2).width + 2 * kMargin, 1600));
  const int height = y0 + matrix_size + 6 + column_label_height + 10 + axis_title_height + kMargin;
  cv::Mat image(height, width, CV_8UC3, kPaper);
  draw_title(image, title);

  for (int t = 0; t < n; ++t) {
    for (int p = 0; p < n; ++p) {
      const cv::Rect box(x0 + p * cell, y0 + t * cell, cell, cell);
      const cv::Vec3b colour = blues(value(t, p) / colour_top);
      cv::rectangle(image, box, cv::Scalar(colour[0], colour[1], colour[2]), cv::FILLED);
      if (with_numbers) {
        // Zeros in grey, so the eye finds the non-empty cells.
        const cv::Scalar ink = matrix.count(t, p) == 0 ? kFaint : text_colour_on(colour);
        put_centred(image, cell_text(t, p), box, number_scale, ink);
      }
    }
  }
  cv::rectangle(image, cv::Rect(x0 - 1, y0 - 1, matrix_size + 2, matrix_size + 2), kAxis, 1);

  // Row labels, right-aligned against the matrix; column labels below it.
  for (int i = 0; i < n; ++i) {
    const cv::Size size = text_box(labels[static_cast<std::size_t>(i)], label_scale);
    put_text(image, labels[static_cast<std::size_t>(i)], {x0 - 8 - size.width, y0 + i * cell + (cell - size.height) / 2},
             label_scale, kInk);
    const int column_x = x0 + i * cell;
    if (columns_fit) {
      put_centred(image, classes[static_cast<std::size_t>(i)], cv::Rect(column_x, y0 + matrix_size + 6, cell, size.height),
                  label_scale, kInk);
    } else {
      const cv::Mat turned = rotated_text(labels[static_cast<std::size_t>(i)], label_scale, kInk);
      paste(image, turned, {column_x + (cell - turned.cols) / 2, y0 + matrix_size + 6});
    }
  }
  // Axis titles: "predicted" centred under the column labels, "true" rotated left of the row labels.
  put_centred(image, "predicted", cv::Rect(x0, y0 + matrix_size + 6 + column_label_height + 10, matrix_size, axis_title_height),
              kAxisTitleScale, kMuted);
  const cv::Mat true_title = rotated_text("true", kAxisTitleScale, kMuted);
  paste(image, true_title, {kMargin, y0 + (matrix_size - true_title.rows) / 2});

  // Colour bar: the scale from 0 (bottom) to colour_top (top), with its ticks.
  for (int y = 0; y < matrix_size; ++y) {
    const cv::Vec3b colour = blues(1.0 - static_cast<double>(y) / std::max(1, matrix_size - 1));
    cv::line(image, {bar_x, y0 + y}, {bar_x + bar_width - 1, y0 + y}, cv::Scalar(colour[0], colour[1], colour[2]));
  }
  cv::rectangle(image, cv::Rect(bar_x - 1, y0 - 1, bar_width + 2, matrix_size + 2), kAxis, 1);
  for (double tick : ticks) {
    const int y = y0 + static_cast<int>(std::lround((1.0 - tick / colour_top) * (matrix_size - 1)));
    cv::line(image, {bar_x + bar_width, y}, {bar_x + bar_width + 3, y}, kAxis);
    // A gap after the tick mark, so "-" and "0.8" do not read as "-0.8".
    const std::string label = format_number(tick, tick_decimals);
    const int label_height = text_box(label, kLabelScale).height;
    const int top = std::clamp(y - label_height / 2, y0 - 2, y0 + matrix_size - label_height + 2);
    put_text(image, label, {bar_x + bar_width + 9, top}, kLabelScale, kInk);
  }
  return image;
}

std::vector<double> nice_ticks(double lo, double hi, int max_ticks, bool integers) {
  if (!(hi > lo)) {  // one value (or nonsense): a unit-wide range around it
    const double half = lo == 0 ? 0.5 : std::abs(lo) * 0.1;
    lo -= half;
    hi = lo + 2 * half;
  }
  const double raw = (hi - lo) / std::max(1, max_ticks - 1);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double fraction = raw / magnitude;
  double step = (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * magnitude;
  if (integers) step = std::max(1.0, std::round(step));
  const double first = std::floor(lo / step + 1e-9), last = std::ceil(hi / step - 1e-9);
  std::vector<double> ticks;
  for (double k = first; k <= last + 0.5; ++k) ticks.push_back(k * step);  // k * step: no drift from summing
  if (ticks.size() == 1) ticks.push_back(ticks[0] + step);
  return ticks;
}

cv::Mat draw_image_gallery(const std::vector<GalleryItem>& items, int columns, const std::string& title,
                           const std::string& empty_text) {
  if (columns < 1) throw std::invalid_argument("draw_image_gallery: columns must be at least 1 (got " + std::to_string(columns) + ")");
  const int thumb = 160, frame = 4, gap = 12;
  const int caption_height = line_height(kLabelScale) + 8;
  const int tile_width = thumb + 2 * frame, tile_height = 2 * caption_height + thumb + 2 * frame;
  const int top = kMargin + title_band();
  if (items.empty()) {
    const int width = std::max(360, std::min(text_box(title, kTitleScale, 2).width + 2 * kMargin, 1200));
    cv::Mat image(top + line_height(kAxisTitleScale) + 2 * kMargin, width, CV_8UC3, kPaper);
    draw_title(image, title);
    put_text(image, shorten(empty_text, kAxisTitleScale, width - 2 * kMargin), {kMargin, top + kMargin / 2},
             kAxisTitleScale, kMuted);
    return image;
  }
  const int used_columns = std::min(columns, static_cast<int>(items.size()));
  const int rows = (static_cast<int>(items.size()) + used_columns - 1) / used_columns;
  int width = 2 * kMargin + used_columns * tile_width + (used_columns - 1) * gap;
  width = std::max(width, std::min(text_box(title, kTitleScale, 2).width + 2 * kMargin, 1600));
  cv::Mat image(top + rows * tile_height + (rows - 1) * gap + kMargin, width, CV_8UC3, kPaper);
  draw_title(image, title);
  for (std::size_t i = 0; i < items.size(); ++i) {
    const GalleryItem& item = items[i];
    const int x = kMargin + static_cast<int>(i % used_columns) * (tile_width + gap);
    const int y = top + static_cast<int>(i / used_columns) * (tile_height + gap);
    put_centred(image, item.caption_top, cv::Rect(x, y, tile_width, caption_height), kLabelScale, kInk);
    cv::rectangle(image, cv::Rect(x, y + caption_height, tile_width, thumb + 2 * frame), item.frame_bgr, cv::FILLED);
    const cv::Mat picture = item.rgb.empty() ? cv::Mat() : to_bgr(item.rgb);
    fit_into(picture, {thumb, thumb}, cv::Scalar(235, 235, 235))
        .copyTo(image(cv::Rect(x + frame, y + caption_height + frame, thumb, thumb)));
    put_centred(image, item.caption_bottom, cv::Rect(x, y + caption_height + thumb + 2 * frame, tile_width, caption_height),
                kLabelScale, kInk);
  }
  return image;
}

namespace {

// ---- training curves ----

bool finite_point(const CurveSeries& s, std::size_t i) { return std::isfinite(s.x[i]) && std::isfinite(s.y[i]); }

// Draws one panel into `area` (a view of the whole image).
void draw_curve_panel(cv::Mat area, const CurvePanel& panel) {
  const int plot_left = 60, plot_right = area.cols - 14, plot_top = line_height(kAxisTitleScale) + 14;
  const int legend_height = line_height(kLabelScale) + 10;
  const int plot_bottom = area.rows - (line_height(kLabelScale) + 6) - (line_height(kLabelScale) + 10) - legend_height;
  put_centred(area, panel.title, cv::Rect(0, 0, area.cols, plot_top - 6), kAxisTitleScale, kInk);

  // Data bounds over finite points, widened by fixed bounds.
  double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
  bool integer_x = true;
  for (const CurveSeries& s : panel.series) {
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!finite_point(s, i)) continue;
      x_lo = std::min(x_lo, s.x[i]);
      x_hi = std::max(x_hi, s.x[i]);
      y_lo = std::min(y_lo, s.y[i]);
      y_hi = std::max(y_hi, s.y[i]);
      integer_x = integer_x && s.x[i] == std::round(s.x[i]);
    }
  }
  const bool empty = !(x_lo <= x_hi);
  if (empty) x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;
  // A 5% margin on the fitted sides, so no point sits on the frame; a fixed bound is kept exactly,
  // and non-negative data (a loss) never gets a negative axis.
  const double margin = empty ? 0 : 0.05 * (y_hi - y_lo);
  if (std::isnan(panel.y_min)) {
    y_lo = (y_lo >= 0 && y_lo - margin < 0) ? 0 : y_lo - margin;
  } else {
    y_lo = std::min(y_lo, panel.y_min);
  }
  y_hi = std::isnan(panel.y_max) ? y_hi + margin : std::max(y_hi, panel.y_max);
  if (x_lo == x_hi) x_lo -= 1, x_hi += 1;  // one epoch: the point in the middle
  const double x_pad = 0.03 * (x_hi - x_lo);  // first and last points clear of the frame
  x_lo -= x_pad;
  x_hi += x_pad;
  const std::vector<double> x_ticks = nice_ticks(x_lo, x_hi, 7, integer_x);
  const std::vector<double> y_ticks = nice_ticks(y_lo, y_hi, 6);
  // Without fixed bounds the axis runs from tick to tick; x keeps the data range (epochs start at 1).
  if (!integer_x) x_lo = x_ticks.front(), x_hi = x_ticks.back();
  y_lo = y_ticks.front();
  y_hi = y_ticks.back();
  auto px = [&](double x) { return plot_left + static_cast<int>(std::lround((x - x_lo) / (x_hi - x_lo) * (plot_right - plot_left))); };
  auto py = [&](double y) { return plot_bottom - static_cast<int>(std::lround((y - y_lo) / (y_hi - y_lo) * (plot_bottom - plot_top))); };

  // Grid and tick labels.
  const int y_decimals = decimals_for_step(y_ticks[1] - y_ticks[0]);
  for (double tick : y_ticks) {
    const int y = py(tick);
    cv::line(area, {plot_left, y}, {plot_right, y}, kGrid);
    const std::string label = format_number(tick, y_decimals);
    const cv::Size size = text_box(label, kLabelScale);
    put_text(area, label, {plot_left - 6 - size.width, y - size.height / 2}, kLabelScale, kMuted);
  }
  const int x_decimals = decimals_for_step(x_ticks[1] - x_ticks[0]);
  int last_label_right = -1;
  for (double tick : x_ticks) {
    if (tick < x_lo - 1e-9 || tick > x_hi + 1e-9) continue;
    const int x = px(tick);
    cv::line(area, {x, plot_bottom}, {x, plot_bottom + 4}, kAxis);
    const std::string label = format_number(tick, x_decimals);
    const cv::Size size = text_box(label, kLabelScale);
    const int left = x - size.width / 2;
    if (left <= last_label_right + 4) continue;  // labels never touch
    put_text(area, label, {left, plot_bottom + 7}, kLabelScale, kMuted);
    last_label_right = left + size.width;
  }
  cv::line(area, {plot_left, plot_top}, {plot_left, plot_bottom}, kAxis);
  cv::line(area, {plot_left, plot_bottom}, {plot_right, plot_bottom}, kAxis);
  const int x_label_top = plot_bottom + 7 + line_height(kLabelScale) + 4;
  put_centred(area, panel.x_label, cv::Rect(plot_left, x_label_top, plot_right - plot_left, line_height(kLabelScale)),
              kLabelScale, kMuted);
  if (empty) put_centred(area, "no data", cv::Rect(plot_left, plot_top, plot_right - plot_left, plot_bottom - plot_top), kLabelScale, kMuted);

  // Lines, broken where a point is skipped; markers on every point when there are few.
  for (const CurveSeries& s : panel.series) {
    const bool markers = s.x.size() <= 40;
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!finite_point(s, i)) continue;
      const cv::Point here(px(s.x[i]), py(s.y[i]));
      if (i > 0 && finite_point(s, i - 1)) cv::line(area, {px(s.x[i - 1]), py(s.y[i - 1])}, here, s.bgr, 2, cv::LINE_AA);
      if (markers || i == 0 || !finite_point(s, i - 1)) cv::circle(area, here, 3, s.bgr, cv::FILLED, cv::LINE_AA);
    }
  }

  // Legend below the plot: a line sample and the name per series, left to right.
  int x = plot_left;
  const int legend_top = x_label_top + line_height(kLabelScale) + 8;
  for (const CurveSeries& s : panel.series) {
    const std::string name = shorten(s.name, kLabelScale, std::max(0, plot_right - x - 28));
    if (name.empty()) break;
    const int middle = legend_top + line_height(kLabelScale) / 2;
    cv::line(area, {x, middle}, {x + 20, middle}, s.bgr, 2, cv::LINE_AA);
    cv::circle(area, {x + 10, middle}, 3, s.bgr, cv::FILLED, cv::LINE_AA);
    put_text(area, name, {x + 26, legend_top}, kLabelScale, kInk);
    x += 26 + text_box(name, kLabelScale).width + 18;
  }
}

}  // namespace

cv::Mat draw_training_curves(const std::vector<CurvePanel>& panels, const std::string& title) {
  if (panels.empty()) throw std::invalid_argument("draw_training_curves: no panels given; pass at least one CurvePanel");
  for (const CurvePanel& panel : panels) {
    for (const CurveSeries& s : panel.series) {
      if (s.x.size() != s.y.size()) {
        throw std::invalid_argument("draw_training_curves: series '" + s.name + "' of panel '" + panel.title + "' has " +
                                    std::to_string(s.x.size()) + " x values but " + std::to_string(s.y.size()) +
                                    " y values; give one y per x");
      }
    }
  }
  const int panel_width = 400, panel_height = 320, gap = 16;
  const int top = kMargin + title_band();
  const int count = static_cast<int>(panels.size());
  int width = 2 * kMargin + count * panel_width + (count - 1) * gap;
  width = std::max(width, std::min(text_box(title, kTitleScale, 2).width + 2 * kMargin, 1600));
  cv::Mat image(top + panel_height + kMargin, width, CV_8UC3, kPaper);
  draw_title(image, title);
  for (int i = 0; i < count; ++i) {
    draw_curve_panel(image(cv::Rect(kMargin + i * (panel_width + gap), top, panel_width, panel_height)),
                     panels[static_cast<std::size_t>(i)]);
  }
  return image;
}

cv::Mat draw_bar_chart(const std::vector<Bar>& bars, const std::string& title, const std::string& value_label,
                       int highlight) {
  const int label_width = 300, plot_width = 420, value_width = 80, row = 24;
  const int top = kMargin + title_band() + line_height(kLabelScale) + 10;
  const int width = 2 * kMargin + label_width + plot_width + value_width;
  const int rows = std::max<int>(1, static_cast<int>(bars.size()));
  const int axis_height = line_height(kLabelScale) + 14 + line_height(kLabelScale) + 8;
  cv::Mat image(top + rows * row + axis_height + kMargin, width, CV_8UC3, kPaper);
  draw_title(image, title);
  if (bars.empty()) {
    put_text(image, "no trial reported a value", {kMargin, top}, kLabelScale, kMuted);
    return image;
  }
  double lo = 0, hi = 0;
  bool any = false;
  for (const Bar& bar : bars) {
    if (!std::isfinite(bar.value)) continue;
    lo = any ? std::min(lo, bar.value) : std::min(0.0, bar.value);
    hi = any ? std::max(hi, bar.value) : std::max(0.0, bar.value);
    any = true;
  }
  if (hi == lo) hi = lo + 1;
  const std::vector<double> ticks = nice_ticks(lo, hi, 6);
  lo = ticks.front();
  hi = ticks.back();
  const int plot_left = kMargin + label_width;
  auto px = [&](double v) { return plot_left + static_cast<int>(std::lround((v - lo) / (hi - lo) * plot_width)); };
  const int plot_top = top, plot_bottom = top + rows * row;
  const int decimals = decimals_for_step(ticks[1] - ticks[0]);
  for (double tick : ticks) {
    const int x = px(tick);
    cv::line(image, {x, plot_top}, {x, plot_bottom}, kGrid);
    const std::string label = format_number(tick, decimals);
    const cv::Size size = text_box(label, kLabelScale);
    put_text(image, label, {x - size.width / 2, plot_bottom + 6}, kLabelScale, kMuted);
  }
  put_centred(image, value_label, cv::Rect(plot_left, plot_bottom + 10 + line_height(kLabelScale), plot_width, line_height(kLabelScale)),
              kLabelScale, kMuted);
  const cv::Scalar normal(214, 170, 120), strong(180, 110, 30);
  const int zero = px(std::max(lo, 0.0));
  for (std::size_t i = 0; i < bars.size(); ++i) {
    const int y = plot_top + static_cast<int>(i) * row;
    const std::string label = shorten(bars[i].label, kLabelScale, label_width - 10);
    const cv::Size size = text_box(label, kLabelScale);
    put_text(image, label, {plot_left - 10 - size.width, y + (row - size.height) / 2}, kLabelScale, kInk);
    if (!std::isfinite(bars[i].value)) {
      put_text(image, "n/a", {plot_left + 4, y + (row - size.height) / 2}, kLabelScale, kMuted);
      continue;
    }
    const int end = px(bars[i].value);
    cv::rectangle(image, cv::Rect(std::min(zero, end), y + 4, std::max(1, std::abs(end - zero)), row - 8),
                  static_cast<int>(i) == highlight ? strong : normal, cv::FILLED);
    put_text(image, format_number(bars[i].value, 4), {std::max(zero, end) + 6, y + (row - size.height) / 2}, kLabelScale, kInk);
  }
  cv::line(image, {zero, plot_top}, {zero, plot_bottom}, kAxis);
  return image;
}

cv::Mat overlay_heatmap(const cv::Mat& rgb, const cv::Mat& heat, double alpha) {
  if (rgb.empty() || rgb.type() != CV_8UC3) {
    throw std::invalid_argument("overlay_heatmap: the image must be non-empty uint8 RGB (CV_8UC3), got type " +
                                std::to_string(rgb.type()) + " and " + std::to_string(rgb.cols) + "x" + std::to_string(rgb.rows));
  }
  if (heat.empty() || heat.type() != CV_32FC1) {
    throw std::invalid_argument("overlay_heatmap: the heat map must be non-empty float32 with one channel (CV_32FC1), got type " +
                                std::to_string(heat.type()));
  }
  if (!(alpha >= 0 && alpha <= 1)) {
    throw std::invalid_argument("overlay_heatmap: alpha must be in [0, 1] (got " + std::to_string(alpha) + ")");
  }
  cv::Mat clean = heat.clone();
  cv::patchNaNs(clean, 0);
  cv::Mat resized, levels, colours;
  cv::resize(clean, resized, rgb.size(), 0, 0, cv::INTER_CUBIC);  // smooth; overshoot is clamped next
  resized = cv::min(cv::max(resized, 0.0), 1.0);
  resized.convertTo(levels, CV_8U, 255.0);
  cv::applyColorMap(levels, colours, cv::COLORMAP_JET);
  cv::Mat blended;
  cv::addWeighted(to_bgr(rgb), 1.0 - alpha, colours, alpha, 0.0, blended);
  return blended;
}

cv::Mat draw_labelled_row(const std::vector<std::pair<cv::Mat, std::string>>& images, int height) {
  if (height < 16) throw std::invalid_argument("draw_labelled_row: height must be at least 16 pixels (got " + std::to_string(height) + ")");
  // Outer margin as the titles' (kMargin), so a stacked figure lines up under its title.
  const int gap = 8, caption_height = line_height(kLabelScale) + 10;
  std::vector<cv::Mat> scaled;
  int width = 2 * kMargin - gap;
  for (const auto& [picture, caption] : images) {
    cv::Mat bgr = picture.empty() ? cv::Mat(height, height, CV_8UC3, cv::Scalar(235, 235, 235)) : picture;
    if (bgr.channels() == 1) cv::cvtColor(bgr, bgr, cv::COLOR_GRAY2BGR);
    const int scaled_width = std::max(1, static_cast<int>(std::lround(static_cast<double>(bgr.cols) * height / bgr.rows)));
    cv::Mat resized;
    cv::resize(bgr, resized, {scaled_width, height}, 0, 0, bgr.rows > height ? cv::INTER_AREA : cv::INTER_LINEAR);
    scaled.push_back(resized);
    width += scaled_width + gap;
  }
  cv::Mat row(gap + height + caption_height, std::max(width, 1), CV_8UC3, kPaper);
  int x = kMargin;
  for (std::size_t i = 0; i < scaled.size(); ++i) {
    scaled[i].copyTo(row(cv::Rect(x, gap, scaled[i].cols, height)));
    put_centred(row, images[i].second, cv::Rect(x, gap + height, scaled[i].cols, caption_height), kLabelScale, kInk);
    x += scaled[i].cols + gap;
  }
  return row;
}

cv::Mat caption_strip(const std::string& text, int width, double font_scale) {
  const int pad = 8;
  cv::Mat strip(line_height(font_scale) + 2 * pad, std::max(width, 1), CV_8UC3, kPaper);
  put_text(strip, shorten(text, font_scale, strip.cols - 2 * pad), {pad, pad}, font_scale, kInk);
  return strip;
}

cv::Mat stack_vertically(const std::vector<cv::Mat>& parts, const std::string& title) {
  int width = 1, height = 0;
  for (const cv::Mat& part : parts) {
    width = std::max(width, part.cols);
    height += part.rows;
  }
  cv::Mat heading;
  if (!title.empty()) {
    width = std::max(width, std::min(text_box(title, kTitleScale, 2).width + 2 * kMargin, 1600));
    heading = cv::Mat(title_band() + kMargin / 2, width, CV_8UC3, kPaper);
    draw_title(heading, title);
    height += heading.rows;
  }
  cv::Mat image(std::max(height, 1), width, CV_8UC3, kPaper);
  int y = 0;
  if (!heading.empty()) {
    heading.copyTo(image(cv::Rect(0, 0, width, heading.rows)));
    y = heading.rows;
  }
  for (const cv::Mat& part : parts) {
    if (part.empty()) continue;
    cv::Mat bgr = part;
    if (bgr.channels() == 1) cv::cvtColor(bgr, bgr, cv::COLOR_GRAY2BGR);
    bgr.copyTo(image(cv::Rect(0, y, bgr.cols, bgr.rows)));
    y += bgr.rows;
  }
  return image;
}

}  // namespace petal::evaluate
