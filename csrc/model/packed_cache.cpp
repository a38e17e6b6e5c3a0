// packed_cache.cpp: see packed_cache.h.
#include "packed_cache.h"

#include <fcntl.h>
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

bool read_all(int fd, size_t offset, void* p, size_t n) {
  auto* c = static_cast<uint8_t*>(p);
  while (n > 0) {
    const ssize_t r = ::pread(fd, c, n, off_t(offset));
    if (r <= 0) return false;
    c += r;
    offset += size_t(r);
    n -= size_t(r);
  }
  return true;
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
  std::vector<char> head(sizeof(MAGIC) + 8 + header.size());
  bool ok = fstat(fd, &st) == 0 && size_t(st.st_size) == offset + n && read_all(fd, 0, head.data(), head.size());
  uint64_t length = 0;
  if (ok) std::memcpy(&length, head.data() + sizeof(MAGIC), 8);
  ok = ok && std::memcmp(head.data(), MAGIC, sizeof(MAGIC)) == 0 && length == header.size() &&
       std::memcmp(head.data() + sizeof(MAGIC) + 8, header.data(), header.size()) == 0;
  // Read into the huge-page buffer rather than mapped: decode streams these bytes every token, and a file
  // mapping's 4 KiB pages cost ~15 % of int8 decode speed in TLB misses (SmolLM2, 2 threads).
  if (ok) {
    PackedBuffer buffer(n);
    ok = read_all(fd, offset, buffer.get(), n);
    if (ok) out = std::move(buffer);
  }
  ::close(fd);
  return ok;
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
