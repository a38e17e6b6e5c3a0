// gguf.cpp: see gguf.h.
#include "gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace nextoken {

namespace {

constexpr int MAX_NESTING = 8;  // arrays of arrays: deeper than any real file, shallow enough for the stack

size_t scalar_size(GGUFType t) {
  switch (t) {
    case GGUFType::U8: case GGUFType::I8: case GGUFType::Bool: return 1;
    case GGUFType::U16: case GGUFType::I16: return 2;
    case GGUFType::U32: case GGUFType::I32: case GGUFType::F32: return 4;
    case GGUFType::U64: case GGUFType::I64: case GGUFType::F64: return 8;
    default: return 0;  // string, array, or not a type
  }
}

const DTypeInfo* dtype_info(uint32_t number) {
  for (const DTypeInfo& d : DTYPES)
    if (uint32_t(d.type) == number) return &d;
  return nullptr;
}

// Names of the ggml types the kernels do not take, for messages.
std::string other_type_name(uint32_t number) {
  static const char* names[] = {nullptr, nullptr, nullptr, nullptr, "Q4_2", "Q4_3", "Q5_0", "Q5_1", nullptr,
                                "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS",
                                "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32",
                                "I64", "F64", "IQ1_M"};
  if (number < sizeof(names) / sizeof(names[0]) && names[number]) return names[number];
  return "number " + std::to_string(number);
}

// Whether s is UTF-8 (names go into messages, which must be text).
bool is_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = uint8_t(s[i]);
    const size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k)
      if ((uint8_t(s[i + k]) >> 6) != 2) return false;
    i += len;
  }
  return true;
}

// Reads little-endian values from the mapping, failing cleanly past its end.
struct Cursor {
  const uint8_t* data;
  size_t size, pos = 0;

  void need(uint64_t n) const {
    if (n > size - pos)
      throw Error("the file ends at byte " + std::to_string(size) + ", inside its header (truncated or corrupted)");
  }
  void need_items(uint64_t count, uint64_t min_bytes) const {  // before reserving room for them
    if (count > (size - pos) / min_bytes) need(UINT64_MAX);
  }
  template <typename T>
  T read() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, data + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string string() {
    const uint64_t n = read<uint64_t>();
    need(n);
    std::string s(reinterpret_cast<const char*>(data + pos), size_t(n));
    pos += size_t(n);
    return s;
  }
  uint64_t scalar(GGUFType t) {  // integers sign-extended to 64 bits, floats as the bits of a double
    auto as_bits = [](double d) { uint64_t b; std::memcpy(&b, &d, 8); return b; };
    switch (t) {
      case GGUFType::U8: case GGUFType::Bool: return read<uint8_t>();
      case GGUFType::I8: return uint64_t(int64_t(read<int8_t>()));
      case GGUFType::U16: return read<uint16_t>();
      case GGUFType::I16: return uint64_t(int64_t(read<int16_t>()));
      case GGUFType::U32: return read<uint32_t>();
      case GGUFType::I32: return uint64_t(int64_t(read<int32_t>()));
      case GGUFType::U64: case GGUFType::I64: return read<uint64_t>();
      case GGUFType::F32: return as_bits(double(read<float>()));
      case GGUFType::F64: return as_bits(read<double>());
      default: throw Error("unknown GGUF value type " + std::to_string(uint32_t(t)) + " at byte " + std::to_string(pos));
    }
  }
  GGUFValue value(uint32_t type_number, int depth) {
    GGUFValue v;
    v.type = GGUFType(type_number);
    if (v.type == GGUFType::String) {
      v.text = string();
    } else if (v.type == GGUFType::Array) {
      if (depth >= MAX_NESTING) throw Error("metadata arrays nested deeper than " + std::to_string(MAX_NESTING));
      v.is_array = true;
      v.type = GGUFType(read<uint32_t>());
      v.count = read<uint64_t>();
      if (v.type == GGUFType::String) {
        need_items(v.count, 8);  // each string takes at least its length
        v.strings.reserve(size_t(v.count));
        for (uint64_t i = 0; i < v.count; ++i) v.strings.push_back(string());
      } else if (v.type == GGUFType::Array) {
        need_items(v.count, 12);  // each: a type and a count
        for (uint64_t i = 0; i < v.count; ++i) v.items.push_back(value(uint32_t(GGUFType::Array), depth + 1));
        v.type = GGUFType::Array;
      } else {
        const size_t item = scalar_size(v.type);
        if (item == 0)
          throw Error("unknown GGUF value type " + std::to_string(uint32_t(v.type)) + " at byte " + std::to_string(pos));
        need_items(v.count, item);
        v.raw.assign(data + pos, data + pos + v.count * item);
        pos += size_t(v.count * item);
      }
    } else {
      v.bits = scalar(v.type);
    }
    return v;
  }
};

}  // namespace

bool GGUFValue::is_integer() const {
  return !is_array && type != GGUFType::Bool && type != GGUFType::F32 && type != GGUFType::F64 &&
         scalar_size(type) != 0;
}

bool GGUFValue::is_number() const {
  return is_integer() || (!is_array && (type == GGUFType::F32 || type == GGUFType::F64));
}

int64_t GGUFValue::as_int() const {
  if (type == GGUFType::U64 && bits > uint64_t(INT64_MAX)) return INT64_MAX;
  return int64_t(bits);
}

double GGUFValue::as_double() const {
  if (type == GGUFType::F32 || type == GGUFType::F64) {
    double d;
    std::memcpy(&d, &bits, 8);
    return d;
  }
  return type == GGUFType::U64 ? double(bits) : double(int64_t(bits));
}

GGUFFile::GGUFFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error("cannot open " + path + ": " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + " is not a regular file");
  }
  size_ = size_t(st.st_size);
  if (size_ == 0) {
    ::close(fd);
    throw Error(path + " is not a readable GGUF file: it is empty");
  }
  void* m = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) throw Error("cannot map " + path + ": " + std::strerror(errno));
  map_ = static_cast<const uint8_t*>(m);
  {
    uint64_t hash = 14695981039346656037ull;  // FNV-1a
    for (size_t i = 0; i < std::min<size_t>(size_, 1 << 20); ++i) hash = (hash ^ map_[i]) * 1099511628211ull;
    char* real = realpath(path.c_str(), nullptr);
    identity_ = "gguf " + std::string(real ? real : path.c_str()) + " size " + std::to_string(size_) + " mtime " +
                std::to_string(int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec) + " fnv " +
                std::to_string(hash);
    std::free(real);
  }
  try {
    Cursor cur{map_, size_};
    if (size_ < 24 || std::memcmp(map_, "GGUF", 4) != 0)
      throw Error(path + " is not a readable GGUF file: it does not start with the GGUF magic");
    cur.pos = 4;
    const uint32_t version = cur.read<uint32_t>();
    if (version != 2 && version != 3)
      throw Error(path + ": GGUF version " + std::to_string(version) + " is not supported (2 and 3 are)");
    const uint64_t n_tensors = cur.read<uint64_t>(), n_kv = cur.read<uint64_t>();
    if (n_tensors > size_ / 24 || n_kv > size_ / 12)  // each entry takes at least that many bytes
      throw Error(path + ": header claims " + std::to_string(n_tensors) + " tensors and " + std::to_string(n_kv) +
                  " metadata entries, too many for the file");
    for (uint64_t i = 0; i < n_kv; ++i) {
      std::string key = cur.string();
      if (!is_utf8(key)) throw Error(path + ": metadata key " + std::to_string(i) + " is not UTF-8 text");
      GGUFValue v = cur.value(cur.read<uint32_t>(), 0);
      if (!metadata_.emplace(key, std::move(v)).second) throw Error(name() + " holds two metadata keys '" + key + "'");
    }
    struct Info { std::string name; std::vector<uint64_t> dims; uint32_t type; uint64_t offset; };
    std::vector<Info> infos;
    for (uint64_t i = 0; i < n_tensors; ++i) {
      Info t;
      t.name = cur.string();
      if (!is_utf8(t.name)) throw Error(path + ": the name of tensor " + std::to_string(i) + " is not UTF-8 text");
      const uint32_t n_dims = cur.read<uint32_t>();
      if (n_dims > 4)
        throw Error("tensor '" + t.name + "' has " + std::to_string(n_dims) + " dimensions (GGUF allows 4)");
      for (uint32_t d = 0; d < n_dims; ++d) t.dims.push_back(cur.read<uint64_t>());
      t.type = cur.read<uint32_t>();
      t.offset = cur.read<uint64_t>();
      infos.push_back(std::move(t));
    }
    uint64_t alignment = 32;
    if (const GGUFValue* a = find("general.alignment")) {
      if (!a->is_integer() || a->as_int() < 8 || a->as_int() > (1 << 30) || (a->as_int() & (a->as_int() - 1)))
        throw Error(path + ": general.alignment is not a power of two of at least 8");
      alignment = uint64_t(a->as_int());
    }
    const uint64_t data_start = (cur.pos + alignment - 1) / alignment * alignment;

    for (const Info& t : infos) {
      const DTypeInfo* info = dtype_info(t.type);
      if (!info) {
        std::string names;
        for (const DTypeInfo& d : DTYPES) names += std::string(names.empty() ? "" : ", ") + d.name;
        throw Error("tensor '" + t.name + "' has type " + other_type_name(t.type) +
                    ", which nextoken does not support (supported: " + names + ")");
      }
      if (tensors_.count(t.name)) throw Error(name() + " holds two tensors named '" + t.name + "'");
      // GGUF order: dims[0] is the row length. Sizes are bounded by the file before any product is formed.
      const uint64_t cols = t.dims.empty() ? 1 : t.dims[0];
      uint64_t rows = 1;
      for (size_t d = 1; d < t.dims.size(); ++d) {
        if (t.dims[d] != 0 && rows > size_ / t.dims[d]) rows = UINT64_MAX;
        else rows *= t.dims[d];
      }
      if (cols == 0 || rows == 0)
        throw Error("tensor '" + t.name + "' has an empty shape (a dimension of 0)");
      if (cols % uint64_t(info->block))
        throw Error("tensor '" + t.name + "' has rows of " + std::to_string(cols) + " weights, not whole " +
                    info->name + " blocks");
      // A row larger than the file is outside it: checked before the product, which could wrap to 0.
      const uint64_t row_blocks = cols / uint64_t(info->block);
      const uint64_t row_bytes = row_blocks <= size_ / uint64_t(info->block_bytes) ? row_blocks * uint64_t(info->block_bytes) : 0;
      const bool fits = t.offset % alignment == 0 && data_start <= size_ && t.offset <= size_ - data_start &&
                        row_bytes > 0 && rows <= (size_ - data_start - t.offset) / row_bytes;
      if (!fits)
        throw Error("tensor '" + t.name + "' lies outside the file (offset " + std::to_string(t.offset) +
                    "; the file has " + std::to_string(size_) + " bytes): truncated or corrupted");
      tensors_[t.name] = TensorView{info->type, map_ + data_start + t.offset, int64_t(rows), int64_t(cols)};
    }
  } catch (...) {
    munmap(const_cast<uint8_t*>(map_), size_);
    throw;
  }
}

GGUFFile::~GGUFFile() { munmap(const_cast<uint8_t*>(map_), size_); }

std::string GGUFFile::name() const {
  const size_t slash = path_.find_last_of('/');
  return slash == std::string::npos ? path_ : path_.substr(slash + 1);
}

const GGUFValue* GGUFFile::find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

}  // namespace nextoken
