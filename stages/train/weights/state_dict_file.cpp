#include "stages/train/weights/state_dict_file.h"

#include <ATen/core/Dict.h>
#include <ATen/core/ivalue.h>
#include <ATen/ops/empty.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "stages/train/weights/pickle_reader.h"

namespace petal::weights {

namespace fs = std::filesystem;

namespace {

// torch.save's legacy format starts with this integer pickled (LONG1, little-endian bytes).
constexpr std::string_view kLegacyMagic{"\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10};
constexpr std::int64_t kLegacyProtocolVersion = 1001;
// Wrapper keys of training checkpoints whose value is the state dict itself.
constexpr const char* kWrapperKeys[] = {"state_dict", "model_state_dict", "model"};

at::ScalarType scalar_type(StorageDtype dtype) {
  switch (dtype) {
    case StorageDtype::Float: return at::kFloat;
    case StorageDtype::Double: return at::kDouble;
    case StorageDtype::Half: return at::kHalf;
    case StorageDtype::BFloat16: return at::kBFloat16;
    case StorageDtype::Long: return at::kLong;
    case StorageDtype::Int: return at::kInt;
    case StorageDtype::Short: return at::kShort;
    case StorageDtype::Char: return at::kChar;
    case StorageDtype::Byte: return at::kByte;
    case StorageDtype::Bool: return at::kBool;
  }
  throw std::logic_error("unknown storage dtype");
}

std::string read_whole_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw StateDictError(file.string() + ": cannot open: " + std::strerror(errno));
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) throw StateDictError(file.string() + ": read error");
  return std::move(content).str();
}

// Reads one file. Invariant: every error leaves as a StateDictError whose message starts with
// the file name.
class StateDictReader {
 public:
  explicit StateDictReader(fs::path file) : file_(std::move(file)) {}

  StateDict read() {
    try {
      const PickleValue object = detect_format(file_) == StateDictFormat::Zip ? read_zip() : read_legacy();
      return to_state_dict(object);
    } catch (const PickleError& e) {  // a value of the wrong type in an otherwise well-formed pickle
      fail(e.what());
    } catch (const c10::Error& e) {  // LibTorch's zip reader, or a tensor view out of its storage's bounds
      fail(e.what_without_backtrace());
    }
  }

 private:
  [[noreturn]] void fail(const std::string& message) const { throw StateDictError(file_.string() + ": " + message); }

  PickleValue parse(std::string_view data, std::size_t* pos, const std::string& what) const {
    try {
      return read_pickle(data, pos);
    } catch (const PickleError& e) {
      fail(what + ": " + e.what());
    }
  }

  // ---- zip: <archive>/data.pkl plus one record <archive>/data/<key> per storage ----
  PickleValue read_zip() {
    std::unique_ptr<caffe2::serialize::PyTorchStreamReader> archive;
    try {
      archive = std::make_unique<caffe2::serialize::PyTorchStreamReader>(file_.string());
    } catch (const c10::Error& e) {
      fail(std::string("not a readable PyTorch zip archive (") + e.what_without_backtrace() + ")");
    }
    if (archive->hasRecord("byteorder")) {  // written by torch >= 2.1; absent means little-endian
      const std::string order = record_text(*archive, "byteorder");
      if (order != "little") fail("byte order \"" + order + "\" is not supported (only little-endian)");
    }
    if (!archive->hasRecord("data.pkl")) fail("zip archive without data.pkl (not saved by torch.save?)");
    const std::string pickle = record_text(*archive, "data.pkl");
    std::size_t pos = 0;
    PickleValue object = parse(pickle, &pos, "data.pkl");
    collect_storage_refs(object);
    for (const auto& [key, ref] : refs_) {
      const std::string record = "data/" + key;
      if (!archive->hasRecord(record)) fail("storage record " + record + " is missing");
      const auto [data, size] = archive->getRecord(record);
      storages_[key] = make_storage(ref, static_cast<const char*>(data.get()), size, record);
    }
    return object;
  }

  static std::string record_text(caffe2::serialize::PyTorchStreamReader& archive, const std::string& name) {
    const auto [data, size] = archive.getRecord(name);
    return std::string(static_cast<const char*>(data.get()), size);
  }

  // ---- legacy: magic, protocol version, sys_info, object, storage keys; then the storages ----
  PickleValue read_legacy() {
    const std::string data = read_whole_file(file_);
    std::size_t pos = 0;
    const PickleValue magic = parse(data, &pos, "magic number pickle");
    if (!magic.is<PickleBigInt>() || magic.as<PickleBigInt>("magic").le_bytes != kLegacyMagic)
      fail("a pickle without torch's magic number (not saved by torch.save)");
    const PickleValue protocol = parse(data, &pos, "protocol version pickle");
    if (!protocol.is<std::int64_t>() || protocol.as<std::int64_t>("protocol") != kLegacyProtocolVersion)
      fail("unsupported legacy protocol version (expected " + std::to_string(kLegacyProtocolVersion) + ")");
    const PickleValue sys_info = parse(data, &pos, "sys_info pickle");
    if (sys_info.is<PickleDict>()) {
      const PickleValue* little = dict_find(sys_info.as<PickleDict>("sys_info"), "little_endian");
      if (little != nullptr && little->is<bool>() && !little->as<bool>("little_endian"))
        fail("saved on a big-endian machine, which is not supported");
    }
    PickleValue object = parse(data, &pos, "object pickle");
    const PickleValue keys = parse(data, &pos, "storage key pickle");
    collect_storage_refs(object);

    // Each storage in key order: its element count (int64, little-endian) and its raw bytes.
    for (const PickleValue& key_value : sequence_items(keys, "storage key list")) {
      const std::string& key = key_value.as<std::string>("storage key");
      const auto ref = refs_.find(key);
      if (ref == refs_.end()) fail("storage " + key + " is listed but no tensor uses it");
      if (data.size() - pos < 8)
        fail("truncated: the size of storage " + key + " is missing at byte " + std::to_string(pos));
      std::uint64_t count_bits = 0;
      for (int i = 7; i >= 0; --i) count_bits = count_bits << 8 | static_cast<std::uint8_t>(data[pos + i]);
      const auto count = static_cast<std::int64_t>(count_bits);
      pos += 8;
      if (count != ref->second.numel)
        fail("storage " + key + " holds " + std::to_string(count) + " elements but its tensors say " +
             std::to_string(ref->second.numel));
      const std::size_t bytes = static_cast<std::size_t>(count) * element_size(ref->second.dtype);
      if (data.size() - pos < bytes)
        fail("truncated: storage " + key + " needs " + std::to_string(bytes) + " bytes at byte " + std::to_string(pos) +
             ", only " + std::to_string(data.size() - pos) + " left");
      storages_[key] = make_storage(ref->second, data.data() + pos, bytes, "storage " + key);
      pos += bytes;
    }
    for (const auto& [key, ref] : refs_)
      if (storages_.count(key) == 0) fail("storage " + key + " is used but not in the file's storage list");
    return object;
  }

  // ---- storages and tensors ----
  // Finds every storage the object refers to (tensors sharing a storage name the same key).
  void collect_storage_refs(const PickleValue& value) {
    if (const auto* tensor = std::get_if<TensorRef>(&value.v)) {
      add_ref(tensor->storage);
    } else if (const auto* storage = std::get_if<StorageRef>(&value.v)) {
      add_ref(*storage);
    } else if (const auto* tuple = std::get_if<PickleTuple>(&value.v)) {
      for (const PickleValue& item : *tuple->items) collect_storage_refs(item);
    } else if (const auto* list = std::get_if<PickleList>(&value.v)) {
      for (const PickleValue& item : *list->items) collect_storage_refs(item);
    } else if (const auto* dict = std::get_if<PickleDict>(&value.v)) {
      for (const auto& [key, item] : *dict->items) collect_storage_refs(item);
    }
  }

  void add_ref(const StorageRef& ref) {
    // Bounds every later size computation (no overflow of numel * element size).
    if (ref.numel > (std::int64_t{1} << 48)) fail("storage " + ref.key + " has an implausible size " + std::to_string(ref.numel));
    const auto [existing, inserted] = refs_.emplace(ref.key, ref);
    if (!inserted && (existing->second.dtype != ref.dtype || existing->second.numel != ref.numel))
      fail("storage " + ref.key + " is described inconsistently (dtype or size differ between tensors)");
  }

  // A flat tensor owning a copy of the storage's bytes.
  at::Tensor make_storage(const StorageRef& ref, const char* bytes, std::size_t size, const std::string& what) const {
    const std::size_t expected = static_cast<std::size_t>(ref.numel) * element_size(ref.dtype);
    if (size != expected)
      fail(what + " has " + std::to_string(size) + " bytes, expected " + std::to_string(expected) + " (" +
           std::to_string(ref.numel) + " x " + storage_class_name(ref.dtype) + ")");
    at::Tensor storage = at::empty({ref.numel}, at::TensorOptions().dtype(scalar_type(ref.dtype)));
    if (size > 0) std::memcpy(storage.data_ptr(), bytes, size);
    return storage;
  }

  // The tensor a TensorRef describes: a strided view of its storage (views of one storage share it).
  at::Tensor make_tensor(const std::string& name, const TensorRef& ref) const {
    const at::Tensor& storage = storages_.at(ref.storage.key);
    // The highest element index the view touches must lie inside the storage.
    bool empty = false;
    std::int64_t last = ref.storage_offset;
    for (std::size_t d = 0; d < ref.sizes.size(); ++d) {
      if (ref.sizes[d] < 0 || ref.strides[d] < 0) fail("tensor \"" + name + "\" has a negative size or stride");
      if (ref.sizes[d] == 0) empty = true;
      else last += (ref.sizes[d] - 1) * ref.strides[d];
    }
    if (ref.storage_offset < 0 || (!empty && last >= ref.storage.numel))
      fail("tensor \"" + name + "\" reaches element " + std::to_string(last) + " of storage " + ref.storage.key +
           ", which has " + std::to_string(ref.storage.numel));
    return storage.as_strided(ref.sizes, ref.strides, ref.storage_offset);
  }

  StateDict to_state_dict(const PickleValue& object) const {
    if (!object.is<PickleDict>()) fail(std::string("holds a ") + object.type_name() + ", not a dict of tensors");
    const PickleDict* dict = &object.as<PickleDict>("state dict");
    for (bool unwrapped = true; unwrapped;) {  // {"state_dict": {...}} and the like, possibly nested
      unwrapped = false;
      for (const char* key : kWrapperKeys) {
        const PickleValue* inner = dict_find(*dict, key);
        if (inner != nullptr && inner->is<PickleDict>()) {
          dict = &inner->as<PickleDict>(key);
          unwrapped = true;
          break;
        }
      }
    }
    StateDict state;
    state.reserve(dict->items->size());
    for (const auto& [key, value] : *dict->items) {
      if (!key.is<std::string>()) fail(std::string("has a ") + key.type_name() + " key; state dict keys are strings");
      const std::string& name = key.as<std::string>("key");
      if (!value.is<TensorRef>()) fail("entry \"" + name + "\" is a " + value.type_name() + ", not a tensor");
      state.emplace_back(name, make_tensor(name, value.as<TensorRef>("entry")));
    }
    return state;
  }

  fs::path file_;
  std::map<std::string, StorageRef> refs_;
  std::map<std::string, at::Tensor> storages_;
};

void write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t written = ::write(fd, data, size);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) throw std::runtime_error(std::strerror(errno));
    data += written;
    size -= static_cast<std::size_t>(written);
  }
}

}  // namespace

StateDictFormat detect_format(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw StateDictError(file.string() + ": cannot open: " + std::strerror(errno));
  char head[4] = {};
  in.read(head, sizeof head);
  const std::streamsize got = in.gcount();
  if (got == 4 && std::memcmp(head, "PK\x03\x04", 4) == 0) return StateDictFormat::Zip;
  if (got >= 1 && static_cast<unsigned char>(head[0]) == 0x80) return StateDictFormat::Legacy;  // PROTO opcode
  throw StateDictError(file.string() + (got == 0 ? ": empty file, " : ": ") +
                       "not a PyTorch state dict (neither a zip archive nor a pickle)");
}

StateDict read_state_dict(const fs::path& file) { return StateDictReader(file).read(); }

void write_state_dict(const fs::path& file, const StateDict& state) {
  // A plain (ordered) dict of CPU tensors without autograd history: what Python's state_dict() holds.
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, tensor] : state) {
    if (!tensor.defined()) throw StateDictError(file.string() + ": cannot write undefined tensor \"" + name + "\"");
    if (dict.contains(name)) throw StateDictError(file.string() + ": cannot write duplicate key \"" + name + "\"");
    dict.insert(name, tensor.detach().cpu());
  }
  const std::vector<char> bytes = torch::jit::pickle_save(c10::IValue(dict));

  // Written beside the target and renamed over it, so readers never see a partial file.
  const fs::path temp = file.string() + ".tmp-" + std::to_string(::getpid());
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw StateDictError(file.string() + ": cannot create " + temp.string() + ": " + std::strerror(errno));
  bool open = true;
  try {
    write_all(fd, bytes.data(), bytes.size());
    if (::fsync(fd) != 0) throw std::runtime_error(std::strerror(errno));
    open = false;
    if (::close(fd) != 0) throw std::runtime_error(std::strerror(errno));
  } catch (const std::runtime_error& e) {
    if (open) ::close(fd);
    ::unlink(temp.c_str());
    throw StateDictError(file.string() + ": cannot write: " + e.what());
  }
  if (::rename(temp.c_str(), file.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    ::unlink(temp.c_str());
    throw StateDictError(file.string() + ": cannot rename " + temp.string() + " into place: " + reason);
  }
  // Make the rename itself durable (best effort: some file systems refuse fsync on folders).
  const fs::path folder = file.has_parent_path() ? file.parent_path() : fs::path(".");
  if (const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

}  // namespace petal::weights
