#include "stages/evaluate/mlflow_model.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <set>
#include <stdexcept>
#include <system_error>

#include "pipeline/util/fs.h"
#include "pipeline/util/sha256.h"
#include "stages/train/model_names.h"

namespace petal::evaluate {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

namespace {

constexpr int kModelFormat = 1;  // model.json "format" (stages/train/train_impl.cpp), read by petal_pyfunc.py too
constexpr const char* kLoaderModule = "petal_pyfunc";
constexpr const char* kTrainedOutput = "it must be the output folder of a train or finetune stage (model.pt, model.json, classes.txt)";

// ---- small YAML emitter: enough for MLmodel (mappings, sequences, scalars), always valid ----
// Strings are always quoted (so "3.10" stays a string and "null" is not null); numbers keep a
// '.' so that YAML 1.1 readers (PyYAML) see floats as floats.

bool printable_ascii(const std::string& text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return c >= 0x20 && c <= 0x7E; });
}

// Decodes one UTF-8 code point at text[i], advancing i; throws on malformed input (nlohmann's
// parser already rejects it in model.json, so this only guards the invariant).
char32_t next_code_point(const std::string& text, std::size_t& i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text.at(k)); };
  const unsigned char lead = byte(i);
  const int extra = lead < 0x80 ? 0 : (lead >> 5) == 0x6 ? 1 : (lead >> 4) == 0xE ? 2 : (lead >> 3) == 0x1E ? 3 : -1;
  if (extra < 0 || i + static_cast<std::size_t>(extra) >= text.size()) throw std::invalid_argument("text is not valid UTF-8");
  char32_t code = extra == 0 ? lead : lead & (0x3F >> extra);
  for (int k = 1; k <= extra; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) throw std::invalid_argument("text is not valid UTF-8");
    code = (code << 6) | (byte(i + k) & 0x3F);
  }
  i += static_cast<std::size_t>(extra) + 1;
  return code;
}

std::string yaml_string(const std::string& text) {
  if (printable_ascii(text)) {  // single quotes need no escapes except '' for '
    std::string out = "'";
    for (const char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
    return out + "'";
  }
  // Double quotes: UTF-8 stays as it is where YAML calls it printable; the rest is escaped.
  std::string out = "\"";
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t start = i;
    const char32_t c = next_code_point(text, i);
    const bool printable = (c >= 0x20 && c <= 0x7E) || (c >= 0xA0 && c <= 0xD7FF) || (c >= 0xE000 && c <= 0xFFFD) ||
                           (c >= 0x10000 && c <= 0x10FFFF);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (printable) {
      out.append(text, start, i - start);
    } else {
      char escaped[16];
      std::snprintf(escaped, sizeof escaped, c <= 0xFFFF ? "\\u%04X" : "\\U%08X", static_cast<unsigned>(c));
      out += escaped;
    }
  }
  return out + "\"";
}

std::string yaml_key(const std::string& key) {
  static const std::set<std::string> reserved = {"null", "true", "false", "yes", "no", "on", "off", "y", "n", "~"};
  std::string lower = key;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const bool identifier = !key.empty() && (std::isalpha(static_cast<unsigned char>(key[0])) || key[0] == '_') &&
                          std::all_of(key.begin(), key.end(), [](unsigned char c) { return std::isalnum(c) || c == '_'; });
  return identifier && !reserved.count(lower) ? key : yaml_string(key);
}

std::string yaml_scalar(const ordered_json& value) {
  if (value.is_string()) return yaml_string(value.get<std::string>());
  if (value.is_number_float()) {
    const double number = value.get<double>();
    if (!std::isfinite(number)) throw std::invalid_argument("cannot write a non-finite number to MLmodel");
    std::string text = ordered_json(number).dump();
    if (text.find('.') == std::string::npos) {
      const std::size_t exponent = text.find_first_of("eE");
      text.insert(exponent == std::string::npos ? text.size() : exponent, ".0");
    }
    return text;
  }
  if (value.is_object()) return "{}";  // only empty ones reach here
  if (value.is_array()) {               // only arrays of scalars reach here
    std::string out = "[";
    for (std::size_t i = 0; i < value.size(); ++i) out += (i ? ", " : "") + yaml_scalar(value[i]);
    return out + "]";
  }
  return value.dump();  // integers, booleans, null
}

bool is_block(const ordered_json& value) {
  if (value.is_object()) return !value.empty();
  if (value.is_array()) return std::any_of(value.begin(), value.end(), [](const auto& v) { return v.is_structured(); });
  return false;
}

void emit_block(std::string& out, const ordered_json& value, int indent);

// A sequence item: "- " takes the place of the item's own indentation on its first line.
void emit_item(std::string& out, const ordered_json& item, int indent) {
  const std::string pad(static_cast<std::size_t>(indent), ' ');
  if (!is_block(item)) {
    out += pad + "- " + yaml_scalar(item) + "\n";
    return;
  }
  std::string nested;
  emit_block(nested, item, indent + 2);
  nested.replace(static_cast<std::size_t>(indent), 2, "- ");
  out += nested;
}

void emit_block(std::string& out, const ordered_json& value, int indent) {
  const std::string pad(static_cast<std::size_t>(indent), ' ');
  if (value.is_array()) {
    for (const auto& item : value) emit_item(out, item, indent);
    return;
  }
  for (const auto& [key, item] : value.items()) {
    if (is_block(item)) {
      out += pad + yaml_key(key) + ":\n";
      // Sequences under a key sit at the key's indentation, as MLflow's (PyYAML's) output does.
      emit_block(out, item, item.is_array() ? indent : indent + 2);
    } else {
      out += pad + yaml_key(key) + ": " + yaml_scalar(item) + "\n";
    }
  }
}

std::string to_yaml(const ordered_json& document) {
  std::string out;
  emit_block(out, document, 0);
  return out;
}

// ---- the trained model ----

struct TrainedModel {
  json spec;  // model.json
  std::string architecture;
  std::vector<std::string> classes;
  fs::path weights;  // model.pt, symlinks resolved
};

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + file.string());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TrainedModel read_trained_model(const fs::path& trained_dir) {
  if (!fs::is_directory(trained_dir)) {
    throw std::runtime_error(trained_dir.string() + " is not a folder: " + kTrainedOutput);
  }
  const fs::path spec_file = trained_dir / "model.json";
  const fs::path weights_file = trained_dir / "model.pt";
  for (const fs::path& file : {spec_file, weights_file}) {
    if (!fs::is_regular_file(file)) throw std::runtime_error(file.string() + " is missing: " + kTrainedOutput);
  }
  TrainedModel model;
  const auto invalid = [&](const std::string& what) {
    return std::runtime_error(spec_file.string() + ": " + what + "; " + kTrainedOutput +
                              ", written by this version of petal (re-run the stage if it is older)");
  };
  try {
    model.spec = json::parse(read_text(spec_file));
  } catch (const json::parse_error& e) {
    throw invalid(std::string("not valid JSON (") + e.what() + ")");
  }
  try {
    if (model.spec.value("format", 0) != kModelFormat) throw invalid("format is not " + std::to_string(kModelFormat));
    model.architecture = model.spec.at("architecture").get<std::string>();
    model.classes = model.spec.at("classes").get<std::vector<std::string>>();
    const json& head = model.spec.at("head");
    const json& pre = model.spec.at("preprocessing");
    for (const char* key : {"num_classes", "hidden", "batch_norm", "dropout"}) {
      if (!head.contains(key)) throw invalid(std::string("head.") + key + " is missing");
    }
    for (const char* key : {"image_size", "eval_resize", "cache_short_side", "upscale", "mean", "std"}) {
      if (!pre.contains(key)) throw invalid(std::string("preprocessing.") + key + " is missing");
    }
    if (pre.at("mean").size() != 3 || pre.at("std").size() != 3) throw invalid("preprocessing mean and std need 3 values");
    if (pre.value("colour_order", std::string("RGB")) != "RGB") throw invalid("colour_order must be \"RGB\"");
    if (model.classes.empty()) throw invalid("classes is empty");
    if (head.at("num_classes").get<std::int64_t>() != static_cast<std::int64_t>(model.classes.size())) {
      throw invalid("head.num_classes differs from the number of classes");
    }
  } catch (const json::exception& e) {
    throw invalid(std::string("unexpected content (") + e.what() + ")");
  }
  const auto& known = architecture_names();
  if (std::find(known.begin(), known.end(), model.architecture) == known.end()) {
    throw invalid("unknown architecture '" + model.architecture + "' (known: " + architecture_list() + ")");
  }
  if (std::set<std::string>(model.classes.begin(), model.classes.end()).size() != model.classes.size()) {
    throw invalid("class names repeat, so the prediction columns would too");
  }
  model.weights = fs::canonical(weights_file);
  return model;
}

// ---- the MLflow model ----

void write_text(const fs::path& file, const std::string& content) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (!out) throw std::runtime_error("cannot write " + file.string() + " (check free space and permissions)");
}

void prepare_output(const fs::path& out_dir) {
  std::error_code error;
  if (fs::exists(out_dir) && (!fs::is_directory(out_dir) || !fs::is_empty(out_dir))) {
    throw std::runtime_error(out_dir.string() + " already exists and is not an empty folder; the MLflow model needs a "
                             "new or empty one");
  }
  for (const fs::path& dir : {out_dir / "code", out_dir / "data"}) {
    fs::create_directories(dir, error);
    if (error) throw std::runtime_error("cannot create " + dir.string() + ": " + error.message());
  }
}

std::string now_utc() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[64];
  std::snprintf(text, sizeof text, "%04d-%02d-%02d %02d:%02d:%02d.%06lld", utc.tm_year + 1900, utc.tm_mon + 1,
                utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, static_cast<long long>(micros));
  return text;
}

// MLflow's column-spec JSON, as its signature strings hold it: [{"type": ..., "name": ..., "required": true}].
std::string column_specs(const std::vector<std::pair<std::string, std::string>>& columns) {
  std::string out = "[";
  for (std::size_t i = 0; i < columns.size(); ++i) {
    // ensure_ascii: the string then survives any YAML quoting unchanged.
    out += (i ? ", " : "") + std::string("{\"type\": ") + json(columns[i].second).dump(-1, ' ', true) +
           ", \"name\": " + json(columns[i].first).dump(-1, ' ', true) + ", \"required\": true}";
  }
  return out + "]";
}

ordered_json signature(const std::vector<std::string>& classes) {
  std::vector<std::pair<std::string, std::string>> outputs = {{"label", "string"}, {"probability", "float"}};
  for (const std::string& name : classes) outputs.emplace_back(class_column(name), "float");
  ordered_json sig;
  sig["inputs"] = column_specs({{"image", "binary"}});
  sig["outputs"] = column_specs(outputs);
  sig["params"] = nullptr;
  return sig;
}

std::uint64_t tree_size(const fs::path& root) {
  std::uint64_t total = 0;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.is_regular_file()) total += entry.file_size();
  }
  return total;
}

std::string requirements_text(const std::vector<std::string>& requirements) {
  std::string out;
  for (const std::string& line : requirements) out += line + "\n";
  return out;
}

std::string python_env_yaml(const std::string& python_version) {
  return "python: " + yaml_string(python_version) +
         "\n"
         "build_dependencies:\n"
         "- pip\n"
         "- setuptools\n"
         "- wheel\n"
         "dependencies:\n"
         "- -r requirements.txt\n";
}

std::string conda_yaml(const std::string& python_version, const std::vector<std::string>& requirements) {
  std::string out = "name: mlflow-env\nchannels:\n- conda-forge\ndependencies:\n- python=" + python_version + "\n- pip\n- pip:\n";
  for (const std::string& line : requirements) out += "  - " + yaml_string(line) + "\n";
  return out;
}

}  // namespace

std::string class_column(const std::string& class_name) { return "p_" + class_name; }

std::vector<std::string> prediction_columns(const std::vector<std::string>& classes) {
  std::vector<std::string> columns = {"label", "probability"};
  for (const std::string& name : classes) columns.push_back(class_column(name));
  return columns;
}

std::vector<std::string> pyfunc_requirements(const std::string& architecture, const std::string& mlflow_version) {
  // Release series rather than exact versions where Debian's build and PyPI's differ in name:
  // Debian 12's python3-torch is "1.13.0a0", PyPI's is 1.13.1; both satisfy "==1.13.*".
  std::vector<std::string> requirements = {"mlflow==" + mlflow_version, "torch==1.13.*"};
  if (architecture != "small_cnn" && !is_efficientnet_lite(architecture)) requirements.push_back("torchvision==0.14.*");
  if (is_efficientnet_lite(architecture)) requirements.push_back("efficientnet_lite_pytorch==0.1.0");
  requirements.push_back("numpy==1.26.4");
  requirements.push_back("pandas==3.0.6");
  requirements.push_back("opencv-python-headless==4.6.0.*");  // petal's decoding: OpenCV 4.6
  return requirements;
}

std::string model_uuid_from_sha256(const std::string& weights_sha256) {
  if (weights_sha256.size() < 32) throw std::invalid_argument("model_uuid_from_sha256: expected a SHA-256 in hex");
  return weights_sha256.substr(0, 32);
}

void write_mlflow_model(const fs::path& trained_dir, const fs::path& out_dir, const MlflowModelOptions& options) {
  const TrainedModel model = read_trained_model(trained_dir);
  prepare_output(out_dir);

  write_text(out_dir / "code" / (std::string(kLoaderModule) + ".py"), std::string(pyfunc_loader_source()));
  // A copy of its own (a reflink where the file system has them): the model must not share an
  // inode with the trained entry, or damage to one would reach both unseen.
  copy_file_cow(model.weights, out_dir / "data" / "model.pt");
  const std::string weights_sha256 = sha256_file(out_dir / "data" / "model.pt");
  write_text(out_dir / "data" / "model.json", model.spec.dump(2) + "\n");
  std::string classes_text;
  for (const std::string& name : model.classes) classes_text += name + "\n";
  write_text(out_dir / "data" / "classes.txt", classes_text);  // model.json's list: the one the loader uses

  const std::vector<std::string> requirements = pyfunc_requirements(model.architecture, options.mlflow_version);
  write_text(out_dir / "requirements.txt", requirements_text(requirements));
  write_text(out_dir / "python_env.yaml", python_env_yaml(options.python_version));
  write_text(out_dir / "conda.yaml", conda_yaml(options.python_version, requirements));

  ordered_json flavor;
  flavor["loader_module"] = kLoaderModule;
  flavor["code"] = "code";
  flavor["data"] = "data";
  flavor["env"] = {{"conda", "conda.yaml"}, {"virtualenv", "python_env.yaml"}};
  flavor["python_version"] = options.python_version;
  flavor["streamable"] = false;

  ordered_json petal;
  petal["format"] = kModelFormat;
  petal["architecture"] = model.architecture;
  petal["classes"] = model.classes;
  petal["head"] = model.spec.at("head");
  petal["preprocessing"] = model.spec.at("preprocessing");
  petal["model_sha256"] = weights_sha256;
  petal["prediction_columns"] = prediction_columns(model.classes);
  if (model.spec.contains("stage")) petal["stage"] = model.spec.at("stage");

  ordered_json mlmodel;
  if (!options.artifact_path.empty()) mlmodel["artifact_path"] = options.artifact_path;
  mlmodel["flavors"]["python_function"] = flavor;
  mlmodel["mlflow_version"] = options.mlflow_version;
  mlmodel["model_uuid"] = model_uuid_from_sha256(weights_sha256);
  mlmodel["utc_time_created"] = options.utc_time_created.empty() ? now_utc() : options.utc_time_created;
  mlmodel["model_size_bytes"] = tree_size(out_dir);  // as MLflow counts it: everything but MLmodel
  mlmodel["signature"] = signature(model.classes);
  mlmodel["metadata"]["petal"] = petal;
  // Written last: a folder with an MLmodel is a complete model.
  write_text(out_dir / "MLmodel", to_yaml(mlmodel));
}

}  // namespace petal::evaluate
