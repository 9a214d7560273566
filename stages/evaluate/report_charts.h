#pragma once
// The evaluate stage's report images, drawn with OpenCV: confusion-matrix heatmaps, a gallery of
// (misclassified) images, training curves and Grad-CAM overlays. Every function returns a BGR
// 8-bit image that the caller writes with cv::imwrite; inputs named `rgb` are uint8 RGB (as the
// image cache holds them). Text is sized for the space it gets and never overlaps or is cut off:
// what does not fit is shortened with "...". No LibTorch: compiled into petal-worker and the
// OpenCV tests.
#include <opencv2/core.hpp>

#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "stages/train/classification_metrics.h"

namespace petal::evaluate {

// A heatmap of `matrix` (rows true, columns predicted) on a white-to-blue scale, with a colour
// bar, class names on both axes (column names rotated when they do not fit a cell, long names
// shortened), axis titles "true" and "predicted" and `title`. Cells show counts, or with
// `normalized` the row-normalised share (2 decimals; a class without samples is a row of 0), as
// long as the numbers fit the cell (cells shrink with many classes: 102 classes draw 12-pixel
// cells without numbers). Throws std::invalid_argument when `classes` does not match the matrix.
cv::Mat draw_confusion_matrix(const train::ConfusionMatrix& matrix, const std::vector<std::string>& classes,
                              bool normalized, const std::string& title);

struct GalleryItem {
  cv::Mat rgb;  // uint8 RGB (3 channels), grey (1) or RGBA (4), any size; empty draws a grey box
  std::string caption_top;     // e.g. "true: rose"
  std::string caption_bottom;  // e.g. "pred: tulip 0.87"
  cv::Scalar frame_bgr{60, 60, 200};
};

// Thumbnails (fitted into 160x160, aspect kept) in a grid of `columns` (fewer when there are fewer
// items), each framed in its colour with its two captions, under `title`. An empty list gives a
// small image saying `empty_text`. Throws std::invalid_argument when columns < 1.
cv::Mat draw_image_gallery(const std::vector<GalleryItem>& items, int columns, const std::string& title,
                           const std::string& empty_text = "no misclassified images");

struct CurveSeries {
  std::string name;  // in the legend, e.g. "train"
  std::vector<double> x, y;  // same length; points where either is NaN or infinite are skipped
  cv::Scalar bgr;
};

struct CurvePanel {
  std::string title;  // e.g. "loss"
  std::vector<CurveSeries> series;
  std::string x_label = "epoch";
  // Fixed y-axis bounds (e.g. 0 and 1 for accuracy); NaN = fitted to the data.
  double y_min = std::numeric_limits<double>::quiet_NaN();
  double y_max = std::numeric_limits<double>::quiet_NaN();
};

// Line charts side by side, one per panel (e.g. loss, accuracy, macro-F1 per epoch), under
// `title`. Axes carry round tick values (integers on x when every x is an integer); each panel has
// its legend below the plot. Lines break at skipped points; points are marked, so a one-epoch
// history shows a dot. Throws std::invalid_argument when panels is empty or a series' x and y
// differ in length.
cv::Mat draw_training_curves(const std::vector<CurvePanel>& panels, const std::string& title);

struct Bar {
  std::string label;  // left of the bar, shortened to fit
  double value = 0;   // non-finite values draw no bar and print "n/a"
};

// Horizontal bars, one row per item in the order given (e.g. best first), under `title`; the value
// is printed at the end of each bar. The axis starts at 0 (or at the smallest value when one is
// negative) and ends at a round tick above the largest. Bar `highlight` (e.g. the best) is drawn
// in a stronger colour; -1 for none. An empty list gives a small image saying so.
cv::Mat draw_bar_chart(const std::vector<Bar>& bars, const std::string& title, const std::string& value_label,
                       int highlight = 0);

// Tick values for an axis covering [lo, hi]: at most about `max_ticks` multiples of a round step
// (1, 2 or 5 times a power of ten; at least 1 with `integers`), the first <= lo and the last >= hi.
// lo == hi gives ticks around that value.
std::vector<double> nice_ticks(double lo, double hi, int max_ticks, bool integers = false);

// `heat` (CV_32F, one channel, any size, values in [0, 1]; outside is clamped, NaN counts as 0)
// resized onto `rgb` (CV_8UC3), coloured with COLORMAP_JET and blended: (1 - alpha) * image +
// alpha * colours. alpha 0 gives the image itself (as BGR). Throws std::invalid_argument for
// empty or wrongly typed inputs and alpha outside [0, 1].
cv::Mat overlay_heatmap(const cv::Mat& rgb, const cv::Mat& heat, double alpha);

// One row of BGR images (e.g. the original and its Grad-CAM overlays), each scaled to `height`
// pixels (aspect kept) with its caption below (e.g. "rose p=0.91"), shortened to the image width.
cv::Mat draw_labelled_row(const std::vector<std::pair<cv::Mat, std::string>>& images, int height = 224);

// A white strip `width` pixels wide with `text` on one line, left-aligned (shortened to fit).
cv::Mat caption_strip(const std::string& text, int width, double font_scale = 0.6);

// `parts` (BGR) one below the other, left-aligned on white, under `title` when it is not empty;
// e.g. a Grad-CAM figure from rows made by draw_labelled_row.
cv::Mat stack_vertically(const std::vector<cv::Mat>& parts, const std::string& title = "");

}  // namespace petal::evaluate
