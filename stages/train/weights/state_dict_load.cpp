#include "stages/train/weights/state_dict_load.h"

#include <ATen/core/grad_mode.h>

#include <regex>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

namespace petal::weights {

namespace {

constexpr std::size_t kListedPerProblem = 10;  // describe() lists at most this many names per problem

bool has_prefix(const std::string& key, const std::vector<std::string>& prefixes) {
  for (const std::string& prefix : prefixes) {
    // "fc" matches "fc" and "fc.weight", not "fc2.weight".
    if (key == prefix || (key.size() > prefix.size() && key.compare(0, prefix.size(), prefix) == 0 &&
                          key[prefix.size()] == '.'))
      return true;
  }
  return false;
}

std::string shape_text(at::IntArrayRef sizes) {
  std::string text = "[";
  for (std::size_t i = 0; i < sizes.size(); ++i) text += (i > 0 ? ", " : "") + std::to_string(sizes[i]);
  return text + "]";
}

void describe_list(std::ostringstream& out, const std::string& title, const std::vector<std::string>& names) {
  if (names.empty()) return;
  out << names.size() << " " << title << ":\n";
  for (std::size_t i = 0; i < names.size() && i < kListedPerProblem; ++i) out << "  " << names[i] << "\n";
  if (names.size() > kListedPerProblem) out << "  ... and " << names.size() - kListedPerProblem << " more\n";
}

}  // namespace

std::string LoadReport::describe() const {
  std::ostringstream out;
  describe_list(out, "missing (in the model, not in the file)", missing);
  describe_list(out, "unexpected (in the file, not in the model)", unexpected);
  describe_list(out, "with mismatched shapes", mismatched);
  std::string text = out.str();
  if (!text.empty()) text.pop_back();  // no trailing newline
  return text;
}

StateDict rename_keys(StateDict state, const std::string& key_format) {
  if (key_format == "torchvision") return state;
  if (key_format == "torchvision-densenet-legacy") {
    // torchvision's densenet loader: "denselayer1.norm.1.weight" -> "denselayer1.norm1.weight".
    static const std::regex pattern(
        R"(^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$)");
    for (auto& [name, tensor] : state) {
      std::smatch match;
      if (std::regex_match(name, match, pattern)) name = match.str(1) + match.str(2);
    }
    return state;
  }
  if (key_format == "torchvision-vit-legacy") {
    static const std::regex pattern(R"(^(.*\.mlp)\.linear_([12])\.(weight|bias)$)");
    for (auto& [name, tensor] : state) {
      std::smatch match;
      if (std::regex_match(name, match, pattern)) name = match.str(1) + (match.str(2) == "1" ? ".0." : ".3.") + match.str(3);
    }
    return state;
  }
  throw StateDictError("unknown state dict key format \"" + key_format +
                       "\" (known: torchvision, torchvision-densenet-legacy, torchvision-vit-legacy)");
}

StateDict module_state_dict(const torch::nn::Module& module) {
  // Module by module (pre-order), each one's parameters then its buffers: torch's state_dict() order.
  StateDict state;
  auto add_own = [&state](const torch::nn::Module& owner, const std::string& prefix) {
    for (const auto& item : owner.named_parameters(/*recurse=*/false))
      if (item.value().defined()) state.emplace_back(prefix + item.key(), item.value());
    for (const auto& item : owner.named_buffers(/*recurse=*/false))
      if (item.value().defined()) state.emplace_back(prefix + item.key(), item.value());
  };
  add_own(module, "");
  for (const auto& child : module.named_modules(/*name_prefix=*/"", /*include_self=*/false))
    add_own(*child.value(), child.key() + ".");
  return state;
}

LoadReport load_state_dict(torch::nn::Module& module, const StateDict& state, const LoadOptions& options,
                           const std::string& source) {
  // The module's tensors share storage with its parameters and buffers: copying into them loads.
  const StateDict targets = module_state_dict(module);
  std::unordered_map<std::string, const at::Tensor*> target_by_name;
  for (const auto& [name, tensor] : targets) target_by_name.emplace(name, &tensor);

  LoadReport report;
  std::vector<std::pair<const at::Tensor*, const at::Tensor*>> copies;  // (target, source)
  std::unordered_set<std::string> in_file;
  for (const auto& [name, tensor] : state) {
    in_file.insert(name);
    if (has_prefix(name, options.skip_prefixes)) {
      report.skipped.push_back(name);
      continue;
    }
    const auto target = target_by_name.find(name);
    if (target == target_by_name.end()) {
      report.unexpected.push_back(name);
    } else if (target->second->sizes() != tensor.sizes()) {
      report.mismatched.push_back(name + ": file " + shape_text(tensor.sizes()) + " vs model " +
                                  shape_text(target->second->sizes()));
    } else {
      report.loaded.push_back(name);
      copies.emplace_back(target->second, &tensor);
    }
  }
  for (const auto& [name, tensor] : targets)
    if (in_file.count(name) == 0 && !has_prefix(name, options.skip_prefixes)) report.missing.push_back(name);

  if (options.strict && !report.ok())
    throw StateDictError(source + ": does not match the model:\n" + report.describe());

  at::NoGradGuard no_grad;  // parameters require grad; an in-place copy must not be recorded
  for (const auto& [target, from] : copies) target->copy_(*from);
  return report;
}

}  // namespace petal::weights
