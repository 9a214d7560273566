#pragma once
// Class probabilities for image files, with the exact preprocessing of the evaluation view
// (stages/train/trained_model.h Preprocessing). Used by `petal predict` (through petal-worker).
#include <ATen/core/Tensor.h>

#include <filesystem>
#include <string>
#include <vector>

#include "stages/train/trained_model.h"

namespace petal::evaluate {

// The network input for one encoded image: [3, S, S] float32, normalised by `table` (built once
// from preprocessing.normalization by the caller). Throws std::runtime_error when the
// bytes are not an image OpenCV can decode.
at::Tensor preprocess_image(const std::vector<unsigned char>& bytes, const train::Preprocessing& preprocessing,
                            const augment::NormalizationTable& table);

struct FilePrediction {
  std::vector<float> probabilities;  // softmax over the model's classes; empty when `error` is set
  std::string error;                 // why the file could not be read or decoded
};

// One prediction per file, in order; the readable files are run in batches of `batch_size`, and a
// file that cannot be read or decoded gets its error instead of stopping the others. `tta`: see
// test_time_augmentation.h.
std::vector<FilePrediction> predict_files(train::TrainedModel& model, const std::vector<std::filesystem::path>& files,
                                          int batch_size = 32, const std::string& tta = "none");

}  // namespace petal::evaluate
