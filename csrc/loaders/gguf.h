// gguf.h: a GGUF file read in place: its metadata parsed, its tensors left in a read-only memory map.
//
// The format (llama.cpp's docs/gguf.md): "GGUF", version, tensor count, key/value count, the key/values,
// the tensor infos (name, dims, ggml type, offset), then the tensor data at the next multiple of
// general.alignment. The file is untrusted: every count and size is checked against the bytes left in
// the file before anything is allocated, and whatever is wrong is a nextoken::Error naming it.
// This is the container only; what an architecture's keys and tensors mean is in gguf_models.h.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../model/weights.h"

namespace nextoken {

// GGUF metadata value types.
enum class GGUFType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7, String = 8, Array = 9,
  U64 = 10, I64 = 11, F64 = 12
};

// One metadata value: a scalar, a string, or an array (of scalars, kept as their little-endian bytes;
// of strings; or of arrays).
struct GGUFValue {
  GGUFType type = GGUFType::U8;       // the scalar's type, or the elements' type of an array
  bool is_array = false;
  uint64_t bits = 0;                  // a scalar's value: integers sign-extended, floats as double bits
  std::string text;                   // a string scalar
  uint64_t count = 0;                 // arrays: number of elements
  std::vector<uint8_t> raw;           // arrays of scalars: the elements as stored
  std::vector<std::string> strings;   // arrays of strings
  std::vector<GGUFValue> items;       // arrays of arrays

  bool is_integer() const;            // an integer scalar (not bool, not float)
  bool is_number() const;             // an integer or float scalar
  int64_t as_int() const;             // integer scalars (a u64 above INT64_MAX reads as INT64_MAX)
  double as_double() const;           // number scalars
};

class GGUFFile {
 public:
  // Maps and parses `path`; throws nextoken::Error (the message names the file) if it is not a
  // readable GGUF file of version 2 or 3 whose tensors are all of supported types and inside the file.
  explicit GGUFFile(const std::string& path);
  ~GGUFFile();
  GGUFFile(const GGUFFile&) = delete;
  GGUFFile& operator=(const GGUFFile&) = delete;

  const std::string& path() const { return path_; }
  // What names this file's content for caches made from it: its real path, size, modification time and
  // a hash of its first MiB (the header).
  const std::string& identity() const { return identity_; }
  std::string name() const;  // the file name without its folders, for messages
  const std::map<std::string, GGUFValue>& metadata() const { return metadata_; }
  const GGUFValue* find(const std::string& key) const;
  // Tensors by their name in the file, as views of the mapping (alive as long as this object).
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }

 private:
  std::string path_, identity_;
  const uint8_t* map_ = nullptr;
  size_t size_ = 0;
  std::map<std::string, GGUFValue> metadata_;
  std::map<std::string, TensorView> tensors_;
};

}  // namespace nextoken
