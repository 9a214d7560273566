#pragma once
// A reader for the subset of Python's pickle format (protocols 2 to 5) that torch.save writes.
// It builds plain values, never Python objects: dicts, lists, tuples, scalars and strings, plus
// the few torch globals a state dict needs, turned into descriptions (StorageRef, TensorRef) that
// state_dict_file.cpp makes into tensors. It does not include LibTorch, so it compiles quickly.
//
// Only an allow-list of globals is resolved (collections.OrderedDict, torch's tensor and parameter
// rebuild functions, storage classes); any other global is an error naming it, so an untrusted
// file can never make the reader do more than build values.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace petal::weights {

// A malformed or unsupported pickle; what() says what and at which byte offset.
struct PickleError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The element types of torch's storage classes (torch.FloatStorage, ...).
enum class StorageDtype { Float, Double, Half, BFloat16, Long, Int, Short, Char, Byte, Bool };
std::size_t element_size(StorageDtype dtype);
const char* storage_class_name(StorageDtype dtype);  // "FloatStorage", ...

struct PickleValue;
using PickleItems = std::vector<PickleValue>;
using PickleDictItems = std::vector<std::pair<PickleValue, PickleValue>>;

struct PickleNone {};
struct PickleBytes {
  std::string data;
};
// An integer too large for int64 (LONG1/LONG4), as little-endian two's complement bytes; torch's
// legacy format starts with one (its magic number).
struct PickleBigInt {
  std::string le_bytes;
};
// Tuples are immutable; lists and dicts are shared because APPEND/SETITEM mutate the object that
// may also be in the memo.
struct PickleTuple {
  std::shared_ptr<const PickleItems> items;
};
struct PickleList {
  std::shared_ptr<PickleItems> items;
};
// Keeps insertion order (Python dicts and OrderedDicts both do); setting an existing key replaces
// its value in place.
struct PickleDict {
  std::shared_ptr<PickleDictItems> items;
};
// A resolved, allow-listed global such as collections.OrderedDict, before it is called.
struct PickleGlobal {
  std::string module, name;
  std::string qualified() const { return module + "." + name; }
};
// A storage named by a persistent id ('storage', <storage class>, key, location, numel): the raw
// data lives outside the pickle (zip record data/<key>, or after the pickles in legacy files).
struct StorageRef {
  StorageDtype dtype = StorageDtype::Float;
  std::string key;
  std::string location;  // "cpu", "cuda:0", ...; petal loads everything to the CPU
  std::int64_t numel = 0;
};
// torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, ...): a view of a storage.
struct TensorRef {
  StorageRef storage;
  std::int64_t storage_offset = 0;
  std::vector<std::int64_t> sizes, strides;
  bool requires_grad = false;
};

struct PickleValue {
  std::variant<PickleNone, bool, std::int64_t, double, std::string, PickleBytes, PickleBigInt, PickleTuple, PickleList,
               PickleDict, PickleGlobal, StorageRef, TensorRef>
      v;

  template <typename T>
  bool is() const {
    return std::holds_alternative<T>(v);
  }
  // The value as T; throws PickleError "expected <what> to be <T>, got <actual>" otherwise.
  template <typename T>
  const T& as(const char* what) const;
  const char* type_name() const;  // Python-like: "None", "int", "str", "dict", "tensor", ...
};

[[noreturn]] void throw_pickle_type_error(const char* what, const char* expected, const char* actual);

template <typename T>
const T& PickleValue::as(const char* what) const {
  if (const T* value = std::get_if<T>(&v)) return *value;
  throw_pickle_type_error(what, PickleValue{T{}}.type_name(), type_name());
}

// The items of a tuple or a list (both are sequences where a pickle needs one).
const PickleItems& sequence_items(const PickleValue& value, const char* what);
// The value of `key` in a dict with string keys, or nullptr.
const PickleValue* dict_find(const PickleDict& dict, std::string_view key);

// Reads one pickle starting at data[*pos] up to and including its STOP opcode, and advances *pos
// past it. Throws PickleError.
PickleValue read_pickle(std::string_view data, std::size_t* pos);

}  // namespace petal::weights
