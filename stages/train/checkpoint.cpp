#include "stages/train/checkpoint.h"

#include <fcntl.h>
#include <torch/serialize.h>
#include <unistd.h>

#include <fstream>
#include <regex>

#include "stages/train/weights/state_dict_load.h"

namespace petal::train {

namespace fs = std::filesystem;

namespace {

void fsync_path(const fs::path& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

std::int64_t epoch_of(const fs::path& dir) {
  static const std::regex pattern("epoch-([0-9]+)");
  std::smatch match;
  const std::string name = dir.filename().string();
  return std::regex_match(name, match, pattern) ? std::stoll(match[1]) : -1;
}

}  // namespace

void save_checkpoint(const fs::path& resume_dir, std::int64_t epoch, const torch::nn::Module& model,
                     const torch::optim::Optimizer& optimizer, const CheckpointExtras& extras,
                     const nlohmann::json& state) {
  const fs::path final_dir = resume_dir / ("epoch-" + std::to_string(epoch));
  const fs::path partial = resume_dir / ("epoch-" + std::to_string(epoch) + ".partial");
  fs::remove_all(partial);
  fs::create_directories(partial);
  weights::write_state_dict(partial / "model.pt", weights::module_state_dict(model));
  for (const auto& [name, tensors] : extras) {
    if (tensors) weights::write_state_dict(partial / (name + ".pt"), *tensors);
  }
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  archive.save_to((partial / "optimizer.pt").string());
  {
    std::ofstream out(partial / "state.json");
    out << state.dump() << "\n";
  }
  for (const char* file : {"model.pt", "optimizer.pt", "state.json"}) fsync_path(partial / file, false);
  for (const auto& [name, tensors] : extras) {
    if (tensors) fsync_path(partial / (name + ".pt"), false);
  }
  fs::remove_all(final_dir);
  fs::rename(partial, final_dir);
  fsync_path(resume_dir, true);
  for (const auto& entry : fs::directory_iterator(resume_dir)) {
    const std::int64_t other = epoch_of(entry.path());
    if (other >= 0 && other < epoch) fs::remove_all(entry.path());
  }
}

std::optional<Checkpoint> latest_checkpoint(const fs::path& resume_dir) {
  std::error_code error;
  if (resume_dir.empty() || !fs::is_directory(resume_dir, error)) return std::nullopt;
  std::optional<Checkpoint> latest;
  for (const auto& entry : fs::directory_iterator(resume_dir)) {
    if (entry.path().extension() == ".partial") {
      fs::remove_all(entry.path(), error);
      continue;
    }
    const std::int64_t epoch = epoch_of(entry.path());
    if (epoch < 0 || (latest && latest->epoch >= epoch)) continue;
    std::ifstream in(entry.path() / "state.json");
    if (!in) continue;
    Checkpoint checkpoint;
    checkpoint.epoch = epoch;
    checkpoint.dir = entry.path();
    checkpoint.state = nlohmann::json::parse(in);
    latest = std::move(checkpoint);
  }
  return latest;
}

void restore_checkpoint(const Checkpoint& checkpoint, torch::nn::Module& model, torch::optim::Optimizer& optimizer) {
  const fs::path model_file = checkpoint.dir / "model.pt";
  weights::load_state_dict(model, weights::read_state_dict(model_file), {}, model_file.string());
  torch::serialize::InputArchive archive;
  // Optimizer state goes where the parameters are (a CUDA run resumes on CUDA).
  const auto params = model.parameters();
  archive.load_from((checkpoint.dir / "optimizer.pt").string(),
                    params.empty() ? c10::optional<torch::Device>() : c10::optional<torch::Device>(params.front().device()));
  optimizer.load(archive);
}

std::optional<weights::StateDict> checkpoint_extra(const Checkpoint& checkpoint, const std::string& name) {
  const fs::path file = checkpoint.dir / (name + ".pt");
  if (!fs::exists(file)) return std::nullopt;
  return weights::read_state_dict(file);
}

}  // namespace petal::train
