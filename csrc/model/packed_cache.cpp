// packed_cache.cpp: see packed_cache.h.
#include "packed_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <vector>

namespace nextoken {

namespace {

constexpr char MAGIC[8] = {'N', 'T', 'P', 'A', 'C', 'K', '0', '1'};
constexpr size_t ALIGN = 4096;

std::string header_text(const PackedCache& cache, size_t n) {
  return cache.key + "\npacked bytes " + std::to_string(n) + "\n";
}

size_t data_offset(const std::string& header) {
  return (sizeof(MAGIC) + 8 + header.size() + ALIGN - 1) / ALIGN * ALIGN;
}

bool write_all(int fd, const void* p, size_t n) {
  const auto* c = static_cast<const uint8_t*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd, c, n);
    if (w <= 0) return false;
    c += w;
    n -= size_t(w);
  }
  return true;
}

}  // namespace

bool read_packed_cache(const PackedCache& cache, size_t n, PackedBuffer& out) {
  if (cache.path.empty()) return false;
  const std::string header = header_text(cache, n);
  const size_t offset = data_offset(header);
  const int fd = ::open(cache.path.c_str(), O_RDONLY);
  if (fd < 0) return false;
  struct stat st;
  if (fstat(fd, &st) != 0 || size_t(st.st_size) != offset + n) {
    ::close(fd);
    return false;
  }
  void* m = mmap(nullptr, offset + n, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) return false;
  const auto* base = static_cast<const uint8_t*>(m);
  uint64_t length;
  std::memcpy(&length, base + sizeof(MAGIC), 8);
  if (std::memcmp(base, MAGIC, sizeof(MAGIC)) != 0 || length != header.size() ||
      std::memcmp(base + sizeof(MAGIC) + 8, header.data(), header.size()) != 0) {
    munmap(m, offset + n);
    return false;
  }
  const size_t total = offset + n;
  out = PackedBuffer(const_cast<uint8_t*>(base) + offset, [m, total](uint8_t*) { munmap(m, total); });
  return true;
}

void write_packed_cache(const PackedCache& cache, const uint8_t* data, size_t n) {
  if (cache.path.empty()) return;
  const std::string header = header_text(cache, n);
  const std::string tmp = cache.path + ".tmp." + std::to_string(getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  const uint64_t length = header.size();
  std::vector<uint8_t> head(data_offset(header), 0);
  std::memcpy(head.data(), MAGIC, sizeof(MAGIC));
  std::memcpy(head.data() + sizeof(MAGIC), &length, 8);
  std::memcpy(head.data() + sizeof(MAGIC) + 8, header.data(), header.size());
  const bool ok = write_all(fd, head.data(), head.size()) && write_all(fd, data, n);
  if (::close(fd) != 0 || !ok || std::rename(tmp.c_str(), cache.path.c_str()) != 0) ::unlink(tmp.c_str());
}

}  // namespace nextoken
