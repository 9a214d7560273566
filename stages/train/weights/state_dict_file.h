#pragma once
// Reading and writing PyTorch state dicts (what `torch.save(model.state_dict(), f)` writes) without
// Python. LibTorch 1.13's torch::pickle_load aborts on the collections.OrderedDict that real state
// dicts are, so petal reads the formats itself:
//   zip (torch >= 1.6): an archive with <name>/data.pkl (a pickle whose tensors refer to storages by
//       persistent id) and <name>/data/<key> (raw little-endian storage bytes), read with LibTorch's
//       caffe2::serialize::PyTorchStreamReader;
//   legacy (torch < 1.6): consecutive pickles (magic number, protocol, system info, the object,
//       the storage keys) followed by each storage as an int64 element count and its raw bytes.
#include <ATen/core/Tensor.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace petal::weights {

// Entries in file order. Tensors are CPU tensors owning their memory (views keep their storage
// offset, sizes and strides as saved).
using StateDict = std::vector<std::pair<std::string, at::Tensor>>;

// A file that is not a readable state dict; what() names the file and what is wrong.
struct StateDictError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class StateDictFormat { Zip, Legacy };

// Reads a state dict saved by torch.save (either format). Nested dicts such as
// {"state_dict": {...}} or {"model": {...}} are unwrapped. Throws StateDictError.
StateDict read_state_dict(const std::filesystem::path& file);
StateDictFormat detect_format(const std::filesystem::path& file);  // throws StateDictError

// Writes `state` so that Python's torch.load reads it as a dict of tensors (LibTorch's pickle
// format, torch::pickle_save). Written to a temp file and renamed into place.
void write_state_dict(const std::filesystem::path& file, const StateDict& state);

}  // namespace petal::weights
