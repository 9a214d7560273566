#include "stages/train/weights/pickle_reader.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <unordered_map>

// The pickle virtual machine, as described in Python's Lib/pickletools.py: opcodes push values on
// a stack, MARK remembers a stack height for the opcodes that take "everything since the mark",
// the memo keeps values for later BINGETs, and STOP returns the top of the stack.

namespace petal::weights {

namespace {

struct StorageClass {
  StorageDtype dtype;
  const char* name;
  std::size_t element_size;
};

// torch's typed storage classes; "torch.<name>" (or "torch.cuda.<name>" in files saved from a GPU).
constexpr StorageClass kStorageClasses[] = {
    {StorageDtype::Float, "FloatStorage", 4},   {StorageDtype::Double, "DoubleStorage", 8},
    {StorageDtype::Half, "HalfStorage", 2},     {StorageDtype::BFloat16, "BFloat16Storage", 2},
    {StorageDtype::Long, "LongStorage", 8},     {StorageDtype::Int, "IntStorage", 4},
    {StorageDtype::Short, "ShortStorage", 2},   {StorageDtype::Char, "CharStorage", 1},
    {StorageDtype::Byte, "ByteStorage", 1},     {StorageDtype::Bool, "BoolStorage", 1},
};

const StorageClass& storage_class(StorageDtype dtype) {
  for (const StorageClass& entry : kStorageClasses)
    if (entry.dtype == dtype) return entry;
  throw std::logic_error("storage dtype without a storage class");
}

// The dtype of a storage-class global, or false if `global` is not one.
bool storage_dtype_of(const PickleGlobal& global, StorageDtype* dtype) {
  if (global.module != "torch" && global.module != "torch.cuda") return false;
  // torch >= 2 may name the untyped storage (counted in bytes) in persistent ids.
  if (global.name == "UntypedStorage") {
    *dtype = StorageDtype::Byte;
    return true;
  }
  for (const StorageClass& entry : kStorageClasses) {
    if (global.name == entry.name) {
      *dtype = entry.dtype;
      return true;
    }
  }
  return false;
}

// The callable globals petal evaluates; storage classes are allowed too but only as values.
constexpr const char* kCallables[] = {
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch.jit._pickle.restore_type_tag",  // LibTorch's pickler tags typed dicts and lists with it
};

bool is_allowed_global(const PickleGlobal& global) {
  StorageDtype unused;
  if (storage_dtype_of(global, &unused)) return true;
  const std::string name = global.qualified();
  for (const char* callable : kCallables)
    if (name == callable) return true;
  return false;
}

bool keys_equal(const PickleValue& a, const PickleValue& b) {
  if (a.is<std::string>() && b.is<std::string>()) return a.as<std::string>("key") == b.as<std::string>("key");
  if (a.is<std::int64_t>() && b.is<std::int64_t>()) return a.as<std::int64_t>("key") == b.as<std::int64_t>("key");
  return false;
}

// Python dict assignment: replaces the value of an equal key (keeping its position), else appends.
// Linear search: state dicts have at most a few thousand keys.
void dict_set(PickleDictItems& items, PickleValue key, PickleValue value) {
  for (auto& [existing, existing_value] : items) {
    if (keys_equal(existing, key)) {
      existing_value = std::move(value);
      return;
    }
  }
  items.emplace_back(std::move(key), std::move(value));
}

PickleValue make_tuple(PickleItems items) {
  return PickleValue{PickleTuple{std::make_shared<const PickleItems>(std::move(items))}};
}

std::vector<std::int64_t> int_tuple(const PickleValue& value, const char* what) {
  std::vector<std::int64_t> result;
  for (const PickleValue& item : sequence_items(value, what)) result.push_back(item.as<std::int64_t>(what));
  return result;
}

// Evaluates a call of an allow-listed global (REDUCE, NEWOBJ): the torch functions that rebuild
// tensors become TensorRefs, OrderedDict() an empty dict.
PickleValue call_global(const PickleGlobal& callable, const PickleItems& args) {
  const std::string name = callable.qualified();
  auto expect_args = [&](std::size_t low, std::size_t high) {
    if (args.size() < low || args.size() > high)
      throw PickleError(name + " called with " + std::to_string(args.size()) + " arguments, expected " +
                        (low == high ? std::to_string(low) : std::to_string(low) + " to " + std::to_string(high)));
  };
  if (name == "collections.OrderedDict") {
    expect_args(0, 1);
    PickleDict dict{std::make_shared<PickleDictItems>()};
    if (args.size() == 1) {  // OrderedDict([(key, value), ...])
      for (const PickleValue& pair : sequence_items(args[0], "OrderedDict item list")) {
        const PickleItems& kv = sequence_items(pair, "OrderedDict item");
        if (kv.size() != 2) throw PickleError("OrderedDict item is not a (key, value) pair");
        dict_set(*dict.items, kv[0], kv[1]);
      }
    }
    return PickleValue{dict};
  }
  if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
    // (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]]); the
    // hooks and metadata are Python-only and ignored.
    if (name == "torch._utils._rebuild_tensor")
      expect_args(4, 4);
    else
      expect_args(6, 7);
    TensorRef tensor;
    tensor.storage = args[0].as<StorageRef>("tensor storage");
    tensor.storage_offset = args[1].as<std::int64_t>("tensor storage offset");
    tensor.sizes = int_tuple(args[2], "tensor size");
    tensor.strides = int_tuple(args[3], "tensor stride");
    if (tensor.sizes.size() != tensor.strides.size())
      throw PickleError("tensor has " + std::to_string(tensor.sizes.size()) + " sizes but " +
                        std::to_string(tensor.strides.size()) + " strides");
    if (args.size() > 4) tensor.requires_grad = args[4].as<bool>("tensor requires_grad");
    return PickleValue{tensor};
  }
  if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") {
    // (data, requires_grad, backward_hooks[, state]): a Parameter is its data for petal.
    if (name == "torch._utils._rebuild_parameter")
      expect_args(3, 3);
    else
      expect_args(4, 4);
    TensorRef tensor = args[0].as<TensorRef>("parameter data");
    tensor.requires_grad = args[1].as<bool>("parameter requires_grad");
    return PickleValue{tensor};
  }
  if (name == "torch.jit._pickle.restore_type_tag") {  // (value, type string): the value itself
    expect_args(2, 2);
    return args[0];
  }
  throw PickleError("global " + name + " cannot be called");
}

// A persistent id ('storage', storage class, key, location, numel[, view_metadata]).
PickleValue persistent_load(const PickleValue& pid) {
  const PickleItems& items = sequence_items(pid, "persistent id");
  if (items.empty() || !items[0].is<std::string>() || items[0].as<std::string>("") != "storage")
    throw PickleError("unsupported persistent id (expected a ('storage', ...) tuple)");
  if (items.size() != 5 && items.size() != 6)
    throw PickleError("storage persistent id has " + std::to_string(items.size()) + " fields, expected 5 or 6");
  StorageRef storage;
  const PickleGlobal& type = items[1].as<PickleGlobal>("storage type");
  if (!storage_dtype_of(type, &storage.dtype)) throw PickleError("unsupported storage type " + type.qualified());
  storage.key = items[2].as<std::string>("storage key");
  storage.location = items[3].as<std::string>("storage location");
  storage.numel = items[4].as<std::int64_t>("storage size");
  if (storage.numel < 0) throw PickleError("storage " + storage.key + " has a negative size");
  // Views of storages (torch < 0.4) name a root storage and an offset into it; never written since.
  if (items.size() == 6 && !items[5].is<PickleNone>())
    throw PickleError("storage " + storage.key + " is a storage view (a torch < 0.4 file), which is not supported");
  return PickleValue{storage};
}

class Unpickler {
 public:
  Unpickler(std::string_view data, std::size_t pos) : data_(data), pos_(pos) {}

  PickleValue run() {
    for (;;) {
      opcode_at_ = pos_;
      const std::uint8_t op = read_u8();
      try {
        if (op == '.') {  // STOP
          if (stack_.empty()) throw PickleError("STOP with an empty stack");
          return pop();
        }
        execute(op);
      } catch (const PickleError& e) {
        // Name the opcode's offset once (errors from nested helpers do not know it).
        if (std::strncmp(e.what(), "at byte ", 8) == 0) throw;
        throw PickleError("at byte " + std::to_string(opcode_at_) + ": " + e.what());
      }
    }
  }

  std::size_t pos() const { return pos_; }

 private:
  void execute(std::uint8_t op) {
    switch (op) {
      // ---- framing and protocol ----
      case 0x80: {  // PROTO
        const int protocol = read_u8();
        if (protocol > 5) throw PickleError("pickle protocol " + std::to_string(protocol) + " is not supported");
        break;
      }
      case 0x95:  // FRAME: a length hint, the opcodes follow inline
        read_bytes(8);
        break;

      // ---- stack and marks ----
      case '(':  // MARK
        marks_.push_back(stack_.size());
        break;
      case '0':  // POP
        pop();
        break;
      case '1':  // POP_MARK
        pop_mark();
        break;
      case '2':  // DUP
        stack_.push_back(top());
        break;

      // ---- scalars ----
      case 'N':
        push(PickleValue{PickleNone{}});
        break;
      case 0x88:  // NEWTRUE
        push(PickleValue{true});
        break;
      case 0x89:  // NEWFALSE
        push(PickleValue{false});
        break;
      case 'J':  // BININT: int32
        push(PickleValue{static_cast<std::int64_t>(static_cast<std::int32_t>(read_le(4)))});
        break;
      case 'K':  // BININT1: uint8
        push(PickleValue{static_cast<std::int64_t>(read_u8())});
        break;
      case 'M':  // BININT2: uint16
        push(PickleValue{static_cast<std::int64_t>(read_le(2))});
        break;
      case 0x8a:  // LONG1
        push(read_long(read_u8()));
        break;
      case 0x8b: {  // LONG4
        const auto size = static_cast<std::int32_t>(read_le(4));
        if (size < 0) throw PickleError("LONG4 with a negative size");
        push(read_long(static_cast<std::size_t>(size)));
        break;
      }
      case 'I':  // INT: decimal text; "01"/"00" are protocol 0's True/False
        push(read_text_int(/*allow_bool=*/true));
        break;
      case 'L':  // LONG: decimal text with an optional trailing 'L'
        push(read_text_int(/*allow_bool=*/false));
        break;
      case 'G': {  // BINFLOAT: big-endian IEEE double
        std::uint64_t bits = 0;
        for (const char c : read_bytes(8)) bits = bits << 8 | static_cast<std::uint8_t>(c);
        double value;
        std::memcpy(&value, &bits, sizeof value);
        push(PickleValue{value});
        break;
      }
      case 'F': {  // FLOAT: text
        const std::string text(read_line());
        char* end = nullptr;
        const double value = std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size()) throw PickleError("bad FLOAT \"" + text + "\"");
        push(PickleValue{value});
        break;
      }

      // ---- strings and bytes (str is UTF-8 in the pickle and stays UTF-8 here) ----
      case 'X':  // BINUNICODE
        push(PickleValue{std::string(read_bytes(read_le(4)))});
        break;
      case 0x8c:  // SHORT_BINUNICODE
        push(PickleValue{std::string(read_bytes(read_u8()))});
        break;
      case 0x8d:  // BINUNICODE8
        push(PickleValue{std::string(read_bytes(read_le(8)))});
        break;
      case 'T': {  // BINSTRING (Python 2 str, read as text as Python 3 does)
        const auto size = static_cast<std::int32_t>(read_le(4));
        if (size < 0) throw PickleError("BINSTRING with a negative size");
        push(PickleValue{std::string(read_bytes(static_cast<std::size_t>(size)))});
        break;
      }
      case 'U':  // SHORT_BINSTRING
        push(PickleValue{std::string(read_bytes(read_u8()))});
        break;
      case 'C':  // SHORT_BINBYTES
        push(PickleValue{PickleBytes{std::string(read_bytes(read_u8()))}});
        break;
      case 'B':  // BINBYTES
        push(PickleValue{PickleBytes{std::string(read_bytes(read_le(4)))}});
        break;
      case 0x8e:  // BINBYTES8
      case 0x96:  // BYTEARRAY8
        push(PickleValue{PickleBytes{std::string(read_bytes(read_le(8)))}});
        break;

      // ---- tuples ----
      case ')':  // EMPTY_TUPLE
        push(make_tuple({}));
        break;
      case 't':  // TUPLE: everything since the mark
        push(make_tuple(pop_mark()));
        break;
      case 0x85:  // TUPLE1
      case 0x86:  // TUPLE2
      case 0x87: {  // TUPLE3
        const std::size_t count = op - 0x85 + 1;
        if (stack_.size() < count + floor()) throw PickleError("stack underflow");
        PickleItems items(std::make_move_iterator(stack_.end() - count), std::make_move_iterator(stack_.end()));
        stack_.resize(stack_.size() - count);
        push(make_tuple(std::move(items)));
        break;
      }

      // ---- lists ----
      case ']':  // EMPTY_LIST
        push(PickleValue{PickleList{std::make_shared<PickleItems>()}});
        break;
      case 'l':  // LIST
        push(PickleValue{PickleList{std::make_shared<PickleItems>(pop_mark())}});
        break;
      case 'a': {  // APPEND
        PickleValue item = pop();
        top().as<PickleList>("APPEND target").items->push_back(std::move(item));
        break;
      }
      case 'e': {  // APPENDS
        PickleItems items = pop_mark();
        PickleItems& list = *top().as<PickleList>("APPENDS target").items;
        for (PickleValue& item : items) list.push_back(std::move(item));
        break;
      }

      // ---- dicts ----
      case '}':  // EMPTY_DICT
        push(PickleValue{PickleDict{std::make_shared<PickleDictItems>()}});
        break;
      case 'd': {  // DICT: key, value pairs since the mark
        PickleDict dict{std::make_shared<PickleDictItems>()};
        set_items(*dict.items, pop_mark());
        push(PickleValue{dict});
        break;
      }
      case 's': {  // SETITEM
        PickleValue value = pop();
        PickleValue key = pop();
        dict_set(*top().as<PickleDict>("SETITEM target").items, std::move(key), std::move(value));
        break;
      }
      case 'u': {  // SETITEMS
        PickleItems items = pop_mark();
        set_items(*top().as<PickleDict>("SETITEMS target").items, std::move(items));
        break;
      }

      // ---- memo ----
      case 'q':  // BINPUT
        memo_[read_u8()] = top();
        break;
      case 'r':  // LONG_BINPUT
        memo_[read_le(4)] = top();
        break;
      case 'p':  // PUT: decimal text index
        memo_[read_text_index()] = top();
        break;
      case 0x94:  // MEMOIZE: the next free index
        memo_[memo_.size()] = top();
        break;
      case 'h':  // BINGET
        push(memo_get(read_u8()));
        break;
      case 'j':  // LONG_BINGET
        push(memo_get(read_le(4)));
        break;
      case 'g':  // GET
        push(memo_get(read_text_index()));
        break;

      // ---- globals, calls and objects ----
      case 'c': {  // GLOBAL: "module\nname\n"
        PickleGlobal global;
        global.module = std::string(read_line());
        global.name = std::string(read_line());
        push(resolve_global(std::move(global)));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        PickleGlobal global;
        global.name = pop().as<std::string>("STACK_GLOBAL name");
        global.module = pop().as<std::string>("STACK_GLOBAL module");
        push(resolve_global(std::move(global)));
        break;
      }
      case 'R':     // REDUCE: callable(*args)
      case 0x81: {  // NEWOBJ: cls.__new__(cls, *args); the same for the allow-listed globals
        PickleValue args = pop();
        PickleValue callable = pop();
        push(call_global(callable.as<PickleGlobal>("called object"), sequence_items(args, "call arguments")));
        break;
      }
      case 0x92: {  // NEWOBJ_EX: cls, args, kwargs
        PickleValue kwargs = pop();
        PickleValue args = pop();
        PickleValue callable = pop();
        if (!kwargs.as<PickleDict>("NEWOBJ_EX keyword arguments").items->empty())
          throw PickleError("keyword arguments to " + callable.as<PickleGlobal>("called object").qualified() +
                            " are not supported");
        push(call_global(callable.as<PickleGlobal>("called object"), sequence_items(args, "call arguments")));
        break;
      }
      case 'b': {  // BUILD: obj.__setstate__(state)
        // State on a dict is an OrderedDict's instance attributes (a state dict's _metadata), on a
        // tensor Python-only attributes; neither matters for the values petal reads.
        pop();  // the state
        const PickleValue& object = top();
        if (!object.is<PickleDict>() && !object.is<TensorRef>())
          throw PickleError(std::string("BUILD on a ") + object.type_name() + " is not supported");
        break;
      }
      case 'Q':  // BINPERSID
        push(persistent_load(pop()));
        break;

      default:
        throw PickleError("unsupported pickle opcode 0x" + hex(op) +
                          (op >= 0x20 && op < 0x7f ? " '" + std::string(1, static_cast<char>(op)) + "'" : ""));
    }
  }

  // ---- input ----
  std::uint8_t read_u8() { return static_cast<std::uint8_t>(read_bytes(1)[0]); }

  std::string_view read_bytes(std::uint64_t size) {
    if (size > data_.size() - pos_)
      throw PickleError("at byte " + std::to_string(pos_) + ": unexpected end of data (" + std::to_string(size) +
                        " bytes needed, " + std::to_string(data_.size() - pos_) + " left)");
    const std::string_view bytes = data_.substr(pos_, size);
    pos_ += size;
    return bytes;
  }

  std::uint64_t read_le(int size) {
    const std::string_view bytes = read_bytes(size);
    std::uint64_t value = 0;
    for (int i = size - 1; i >= 0; --i) value = value << 8 | static_cast<std::uint8_t>(bytes[i]);
    return value;
  }

  std::string_view read_line() {
    const std::size_t end = data_.find('\n', pos_);
    if (end == std::string_view::npos) throw PickleError("unexpected end of data (unterminated line)");
    const std::string_view line = data_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return line;
  }

  // Little-endian two's complement integer of `size` bytes.
  PickleValue read_long(std::size_t size) {
    const std::string_view bytes = read_bytes(size);
    if (size > 8) return PickleValue{PickleBigInt{std::string(bytes)}};
    std::uint64_t value = 0;
    for (std::size_t i = size; i-- > 0;) value = value << 8 | static_cast<std::uint8_t>(bytes[i]);
    if (size > 0 && size < 8 && (static_cast<std::uint8_t>(bytes[size - 1]) & 0x80) != 0)
      value |= ~std::uint64_t{0} << (8 * size);  // sign-extend
    return PickleValue{static_cast<std::int64_t>(value)};
  }

  PickleValue read_text_int(bool allow_bool) {
    std::string text(read_line());
    if (allow_bool && text == "01") return PickleValue{true};
    if (allow_bool && text == "00") return PickleValue{false};
    if (!text.empty() && text.back() == 'L') text.pop_back();
    char* end = nullptr;
    errno = 0;
    const long long value = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE)
      throw PickleError("bad or too large integer \"" + text + "\"");
    return PickleValue{static_cast<std::int64_t>(value)};
  }

  std::uint64_t read_text_index() {
    const PickleValue index = read_text_int(false);
    if (index.as<std::int64_t>("memo index") < 0) throw PickleError("negative memo index");
    return static_cast<std::uint64_t>(index.as<std::int64_t>("memo index"));
  }

  // ---- stack ----
  // Values below the innermost mark belong to an enclosing opcode and may not be popped singly.
  std::size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }

  void push(PickleValue value) { stack_.push_back(std::move(value)); }

  PickleValue pop() {
    if (stack_.size() <= floor()) throw PickleError("stack underflow");
    PickleValue value = std::move(stack_.back());
    stack_.pop_back();
    return value;
  }

  PickleValue& top() {
    if (stack_.size() <= floor()) throw PickleError("stack underflow");
    return stack_.back();
  }

  PickleItems pop_mark() {
    if (marks_.empty()) throw PickleError("no MARK on the stack");
    const std::size_t mark = marks_.back();
    marks_.pop_back();
    PickleItems items(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(mark)),
                      std::make_move_iterator(stack_.end()));
    stack_.resize(mark);
    return items;
  }

  static void set_items(PickleDictItems& dict, PickleItems items) {
    if (items.size() % 2 != 0) throw PickleError("odd number of items for a dict");
    for (std::size_t i = 0; i < items.size(); i += 2) dict_set(dict, std::move(items[i]), std::move(items[i + 1]));
  }

  const PickleValue& memo_get(std::uint64_t index) const {
    const auto found = memo_.find(index);
    if (found == memo_.end()) throw PickleError("memo index " + std::to_string(index) + " was never stored");
    return found->second;
  }

  static PickleValue resolve_global(PickleGlobal global) {
    if (!is_allowed_global(global)) throw PickleError("unsupported global \"" + global.qualified() + "\"");
    return PickleValue{std::move(global)};
  }

  static std::string hex(std::uint8_t byte) {
    const char digits[] = "0123456789abcdef";
    return {digits[byte >> 4], digits[byte & 15]};
  }

  std::string_view data_;
  std::size_t pos_;
  std::size_t opcode_at_ = 0;
  std::vector<PickleValue> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, PickleValue> memo_;
};

}  // namespace

std::size_t element_size(StorageDtype dtype) { return storage_class(dtype).element_size; }

const char* storage_class_name(StorageDtype dtype) { return storage_class(dtype).name; }

const char* PickleValue::type_name() const {
  static constexpr const char* kNames[] = {"None", "bool",  "int",  "float",  "str",     "bytes",  "int",
                                           "tuple", "list", "dict", "global", "storage", "tensor"};
  static_assert(std::size(kNames) == std::variant_size_v<decltype(v)>);
  return kNames[v.index()];
}

void throw_pickle_type_error(const char* what, const char* expected, const char* actual) {
  throw PickleError(std::string("expected ") + what + " to be a " + expected + ", got a " + actual);
}

const PickleItems& sequence_items(const PickleValue& value, const char* what) {
  if (const auto* tuple = std::get_if<PickleTuple>(&value.v)) return *tuple->items;
  if (const auto* list = std::get_if<PickleList>(&value.v)) return *list->items;
  throw_pickle_type_error(what, "tuple or list", value.type_name());
}

const PickleValue* dict_find(const PickleDict& dict, std::string_view key) {
  for (const auto& [name, value] : *dict.items)
    if (const auto* text = std::get_if<std::string>(&name.v); text != nullptr && *text == key) return &value;
  return nullptr;
}

PickleValue read_pickle(std::string_view data, std::size_t* pos) {
  if (*pos > data.size()) throw PickleError("start offset past the end of the data");
  Unpickler unpickler(data, *pos);
  PickleValue value = unpickler.run();
  *pos = unpickler.pos();
  return value;
}

}  // namespace petal::weights
