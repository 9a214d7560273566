#include "stages/split/oxford_labels.h"

#include <matio.h>

#include <memory>
#include <vector>

#include "pipeline/util/error.h"

namespace petal {

namespace {

std::vector<int> read_numbers(const std::filesystem::path& file, const char* variable) {
  std::unique_ptr<mat_t, decltype(&Mat_Close)> mat(Mat_Open(file.c_str(), MAT_ACC_RDONLY), Mat_Close);
  if (!mat) throw PetalError("cannot open MATLAB file " + file.string());
  std::unique_ptr<matvar_t, decltype(&Mat_VarFree)> var(Mat_VarRead(mat.get(), variable), Mat_VarFree);
  if (!var) throw PetalError(file.string() + " has no variable '" + variable + "'");
  if (var->class_type != MAT_C_DOUBLE && var->class_type != MAT_C_UINT16 && var->class_type != MAT_C_UINT8 &&
      var->class_type != MAT_C_INT32) {
    throw PetalError(file.string() + ": variable '" + variable + "' is not numeric");
  }
  std::size_t count = 1;
  for (int i = 0; i < var->rank; ++i) count *= var->dims[i];
  std::vector<int> out;
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    switch (var->class_type) {
      case MAT_C_DOUBLE: out.push_back(static_cast<int>(static_cast<const double*>(var->data)[i])); break;
      case MAT_C_UINT16: out.push_back(static_cast<const uint16_t*>(var->data)[i]); break;
      case MAT_C_UINT8: out.push_back(static_cast<const uint8_t*>(var->data)[i]); break;
      default: out.push_back(static_cast<const int32_t*>(var->data)[i]); break;
    }
  }
  return out;
}

}  // namespace

OxfordSplit read_oxford_split(const std::filesystem::path& labels_mat, const std::filesystem::path& setid_mat) {
  OxfordSplit out;
  const std::vector<int> labels = read_numbers(labels_mat, "labels");
  for (std::size_t i = 0; i < labels.size(); ++i) out.label_of[static_cast<int>(i + 1)] = labels[i];
  const std::pair<const char*, const char*> splits[] = {{"trnid", "train"}, {"valid", "val"}, {"tstid", "test"}};
  for (const auto& [variable, name] : splits) {
    for (int id : read_numbers(setid_mat, variable)) out.split_of[id] = name;
  }
  return out;
}

}  // namespace petal
