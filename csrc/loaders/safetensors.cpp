// safetensors.cpp: see safetensors.h.
#include "safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <set>

namespace nextoken {

namespace {

bool is_file(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string base_name(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

struct SafetensorsType { const char* name; DType type; size_t item; };
constexpr SafetensorsType TYPES[] = {{"F32", DType::F32, 4}, {"F16", DType::F16, 2}, {"BF16", DType::BF16, 2}};

}  // namespace

SafetensorsFiles::~SafetensorsFiles() {
  for (const Mapping& m : maps_) munmap(const_cast<uint8_t*>(m.data), m.size);
}

void SafetensorsFiles::add(const std::string& path, const std::map<std::string, std::string>* index_placement) {
  const std::string file = base_name(path);
  const int fd = ::open(path.c_str(), O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (fd >= 0) ::close(fd);
    throw Error(path + ": not a readable file");
  }
  const size_t size = size_t(st.st_size);
  if (size < 8) {
    ::close(fd);
    throw Error(path + " is not a safetensors file: too short");
  }
  void* m = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) throw Error(path + ": cannot be mapped into memory");
  const auto* data = static_cast<const uint8_t*>(m);
  maps_.push_back({data, size});  // unmapped by the destructor, whatever happens below

  uint64_t n = 0;
  std::memcpy(&n, data, 8);
  if (n > size - 8)
    throw Error(path + ": header of " + std::to_string(n) + " bytes is longer than the file (truncated or not safetensors)");
  // The safetensors crate's own limit (MAX_HEADER_SIZE): a parsed JSON node takes ~50x its bytes in memory.
  if (n > 100'000'000) throw Error(path + ": header of " + std::to_string(n) + " bytes (safetensors allows 100 MB)");
  const JSON header = parse_json(reinterpret_cast<const char*>(data) + 8, size_t(n), path + " (safetensors header)");
  if (!header.is_object()) throw Error(path + ": the safetensors header is not a JSON object");
  const uint64_t data_start = 8 + n, data_size = size - data_start;
  std::set<std::string> seen;
  for (const auto& [name, info] : header.members) {
    if (name == "__metadata__") continue;
    if (!seen.insert(name).second) throw Error(path + " holds two tensors named '" + name + "'");
    // The format's types, strictly (as the safetensors crate reads them).
    const JSON* dtype = info.find("dtype");
    const JSON* shape = info.find("shape");
    const JSON* offsets = info.find("data_offsets");
    bool well_formed = info.is_object() && dtype && dtype->is_string() && shape && shape->is_array() && offsets &&
                       offsets->is_array() && offsets->items.size() == 2;
    for (const JSON* list : {shape, offsets})
      if (well_formed)
        for (const JSON& x : list->items) well_formed = well_formed && x.is_integer();
    if (!well_formed)
      throw Error(path + ": tensor '" + name + "' has a malformed header entry (it needs a dtype string, a shape of "
                  "integers and two integer data_offsets)");
    const SafetensorsType* type = nullptr;
    for (const SafetensorsType& t : TYPES)
      if (dtype->text == t.name) type = &t;
    if (!type) throw Error(path + ": tensor '" + name + "' is " + dtype->text + " (supported: F32, F16, BF16)");
    // The element count, with every factor bounded first so the product cannot wrap round.
    uint64_t count = 1;
    bool empty = false;
    std::string dims;
    for (const JSON& d : shape->items) {
      dims += (dims.empty() ? "" : ", ") + std::to_string(d.integer);
      if (d.integer < 0) throw Error(path + ": tensor '" + name + "' has a negative dimension");
      if (d.integer >= (int64_t(1) << 31))
        throw Error(path + ": tensor '" + name + "' has a dimension of 2**31 or more: [" + dims + "]");
      empty = empty || d.integer == 0;
      if (d.integer) count = count > data_size / uint64_t(d.integer) ? data_size + 1 : count * uint64_t(d.integer);
    }
    if (empty) count = 0;
    const int64_t begin = offsets->items[0].integer, end = offsets->items[1].integer;
    if (begin < 0 || begin > end || uint64_t(end) > data_size || count > data_size ||
        uint64_t(end - begin) != count * type->item)
      throw Error(path + ": tensor '" + name + "' (" + dtype->text + " [" + dims + "]) does not fit its byte range [" +
                  std::to_string(begin) + ", " + std::to_string(end) + ") (truncated or corrupted)");
    if (index_placement) {
      auto it = index_placement->find(name);
      if (it == index_placement->end() || it->second != file)
        throw Error(file + " holds '" + name + "', which model.safetensors.index.json places elsewhere");
    }
    if (tensors_.count(name)) throw Error("tensor '" + name + "' appears in two files");
    const int64_t cols = shape->items.empty() ? 1 : shape->items.back().integer;
    const int64_t rows = cols ? int64_t(count) / cols : 0;
    const uint8_t* bytes = data + data_start + uint64_t(begin);
    if ((data_start + uint64_t(begin)) % 64) {  // writers pad the header so tensors are aligned; a copy where not
      copies_.emplace_back(bytes, bytes + (end - begin));
      bytes = copies_.back().data();
    }
    tensors_[name] = TensorView{type->type, bytes, rows, cols};
  }
}

HFFolder read_hf_folder(const std::string& path) {
  HFFolder f;
  f.path = path;
  f.name = base_name(path);
  const std::string dir = path + "/";
  if (!is_file(dir + "config.json"))
    throw Error(path + " is not a Hugging Face model folder: it has no config.json");
  f.config = read_json_file(dir + "config.json");
  f.generation_config.kind = f.preprocessor_config.kind = JSON::Kind::Object;
  if (is_file(dir + "generation_config.json")) f.generation_config = read_json_file(dir + "generation_config.json");
  if (is_file(dir + "preprocessor_config.json")) f.preprocessor_config = read_json_file(dir + "preprocessor_config.json");

  auto weights = std::make_shared<SafetensorsFiles>();
  const std::string index_path = dir + "model.safetensors.index.json";
  if (is_file(index_path)) {
    const JSON index = read_json_file(index_path);
    const JSON* weight_map = index.find("weight_map");
    std::map<std::string, std::string> placement;
    std::set<std::string> files;
    bool ok = weight_map && weight_map->is_object();
    for (const auto& [name, file] : ok ? weight_map->members : std::vector<std::pair<std::string, JSON>>{}) {
      ok = ok && file.is_string();
      if (ok) placement[name] = file.text;  // a repeated name: the last, as Python's json reads it
    }
    if (!ok) throw Error(index_path + ": no 'weight_map' of tensor name -> file");
    for (const auto& [name, file] : placement) files.insert(file);
    for (const std::string& file : files) {
      if (file.find('/') != std::string::npos || file == "." || file == ".." || !is_file(dir + file))
        throw Error("model.safetensors.index.json names '" + file + "', which is not a file in " + path);
      weights->add(dir + file, &placement);
    }
    for (const auto& [name, file] : placement)
      if (!weights->tensors().count(name))
        throw Error("model.safetensors.index.json lists '" + name + "', which no shard holds");
  } else if (is_file(dir + "model.safetensors")) {
    weights->add(dir + "model.safetensors");
  } else {
    throw Error(path + " has no model.safetensors or model.safetensors.index.json (only safetensors weights are read)");
  }
  f.weights = std::move(weights);
  return f;
}

}  // namespace nextoken
