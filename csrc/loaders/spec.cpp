// spec.cpp: see spec.h.
#include "spec.h"

#include <cmath>
#include <cstring>

namespace nextoken {

const TensorView* WeightCollector::take(const std::string& name, bool required) {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    if (required) throw Error(source_ + " has no tensor '" + name + "'");
    return nullptr;
  }
  taken_.insert(name);
  return &it->second;
}

void WeightCollector::matrix(const std::string& role, const std::string& name, bool required) {
  if (const TensorView* t = take(name, required)) spec.tensors[role] = *t;
}

void WeightCollector::vector(const std::string& role, const std::string& name, bool required, float offset) {
  if (const TensorView* t = take(name, required)) vector(role, name, *t, offset);
}

void WeightCollector::vector(const std::string& role, const std::string& name, const TensorView& t, float offset) {
  if (t.type == DType::F32 && offset == 0.0f && (t.rows == 1 || t.cols == 1) &&
      reinterpret_cast<uintptr_t>(t.data) % alignof(float) == 0) {
    spec.tensors[role] = TensorView{DType::F32, t.data, 1, t.rows * t.cols};
    return;
  }
  std::vector<float> v = floats(name, t);
  if (offset != 0.0f)
    for (float& x : v) x = offset + x;
  spec.tensors[role] = keep(v, 1, int64_t(v.size()));
}

void WeightCollector::layer(const std::string& role, const std::string& name, float norm_offset) {
  if (role.size() >= 4 && role.compare(role.size() - 4, 4, "norm") == 0) {
    vector(role, name + ".weight", true, norm_offset);
  } else {
    matrix(role, name + ".weight");
    vector(role + ".bias", name + ".bias", false);
  }
}

std::vector<float> WeightCollector::floats(const std::string& name, const TensorView& t) const {
  if (t.rows != 1 && t.cols != 1)
    throw Error(source_ + ": tensor '" + name + "' should be a vector, has shape (" + std::to_string(t.rows) + ", " +
                std::to_string(t.cols) + ")");
  return values(name, t);
}

std::vector<float> WeightCollector::values(const std::string& name, const TensorView& t) const {
  std::vector<float> v(size_t(t.rows * t.cols));
  const auto* bytes = static_cast<const uint8_t*>(t.data);
  for (size_t i = 0; i < v.size(); ++i) {
    if (t.type == DType::F32) {
      std::memcpy(&v[i], bytes + 4 * i, 4);
    } else if (t.type == DType::F16 || t.type == DType::BF16) {
      uint16_t h;
      std::memcpy(&h, bytes + 2 * i, 2);
      if (t.type == DType::F16) {
        v[i] = f16_to_f32(h);
      } else {
        const uint32_t bits = uint32_t(h) << 16;
        std::memcpy(&v[i], &bits, 4);
      }
    } else {
      throw Error(source_ + ": tensor '" + name + "' (a norm weight or bias) must be F32, F16 or BF16");
    }
  }
  return v;
}

TensorView WeightCollector::keep(const std::vector<float>& v, int64_t rows, int64_t cols) {
  std::vector<uint8_t> bytes(v.size() * sizeof(float));
  if (!v.empty()) std::memcpy(bytes.data(), v.data(), bytes.size());
  return TensorView{DType::F32, keep(std::move(bytes)), rows, cols};
}

const uint8_t* WeightCollector::keep(std::vector<uint8_t> bytes) {
  spec.converted.push_back(std::move(bytes));
  return spec.converted.back().data();
}

void WeightCollector::check_all_taken(const std::string& hint) const {
  std::vector<std::string> left;
  for (const auto& [name, t] : tensors_)
    if (!taken_.count(name)) left.push_back(name);
  if (left.empty()) return;
  std::string names;
  for (size_t i = 0; i < left.size() && i < 3; ++i) names += (i ? ", '" : "'") + left[i] + "'";
  if (left.size() > 3) names += " and " + std::to_string(left.size() - 3) + " more";
  throw Error(source_ + ": tensor " + names + " not used by this model" + hint);
}

ModelConfig base_config(int n_layers) {
  ModelConfig c;
  c.n_layers = n_layers;
  c.layers.assign(size_t(n_layers), LayerConfig{});
  return c;
}

std::vector<float> rope_inv_freq(double base, int dim) {
  std::vector<float> inv(size_t(dim / 2));
  for (int i = 0; i < dim / 2; ++i) {
    const float exponent = float(2 * i) / float(dim);
    inv[size_t(i)] = 1.0f / float(std::pow(base, double(exponent)));
  }
  return inv;
}

}  // namespace nextoken
