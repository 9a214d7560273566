#include "stages/evaluate/image_predictor.h"

#include <torch/torch.h>

#include <stdexcept>

#include "stages/augment/augment_pipeline.h"
#include "stages/augment/image_decode.h"
#include "stages/evaluate/test_time_augmentation.h"

namespace petal::evaluate {

at::Tensor preprocess_image(const std::vector<unsigned char>& bytes, const train::Preprocessing& p,
                            const augment::NormalizationTable& table) {
  const cv::Mat decoded = augment::decode_image(bytes, p.cache_short_side, p.upscale);
  const cv::Mat view = augment::eval_transform(decoded, p.image_size, p.eval_resize);
  at::Tensor input = torch::empty({3, p.image_size, p.image_size}, torch::kFloat);
  augment::normalize_into(view, input.data_ptr<float>(), false, table);
  return input;
}

std::vector<FilePrediction> predict_files(train::TrainedModel& model, const std::vector<std::filesystem::path>& files,
                                          int batch_size, const std::string& tta) {
  torch::NoGradGuard no_grad;
  model.network->eval();
  std::vector<FilePrediction> out(files.size());
  const augment::NormalizationTable table(model.preprocessing.normalization);
  std::vector<at::Tensor> inputs;
  std::vector<std::size_t> rows;  // which files the pending inputs are
  const auto run_batch = [&] {
    if (inputs.empty()) return;
    const at::Tensor probabilities = class_probabilities(*model.network, torch::stack(inputs), tta).contiguous();
    for (std::size_t j = 0; j < rows.size(); ++j) {
      const float* p = probabilities[static_cast<std::int64_t>(j)].data_ptr<float>();
      out[rows[j]].probabilities.assign(p, p + probabilities.size(1));
    }
    inputs.clear();
    rows.clear();
  };
  for (std::size_t i = 0; i < files.size(); ++i) {
    try {
      inputs.push_back(preprocess_image(augment::read_file_bytes(files[i]), model.preprocessing, table));
      rows.push_back(i);
    } catch (const std::exception& e) {
      out[i].error = e.what();
    }
    if (static_cast<int>(inputs.size()) >= batch_size) run_batch();
  }
  run_batch();
  return out;
}

}  // namespace petal::evaluate
