// packed_cache.h: int8 compute's repacked weights kept in a file, so that a later load reads them
// instead of repacking (~0.2-0.4 s for SmolLM2 on 2 cores, as long as llama.cpp's whole load).
//
// The file: "NTPACK01", the header length (u64), the header text (the caller's key plus the packed byte
// count), zero padding to a 4 KiB boundary, the packed bytes. A file is used only if its header is the
// expected one and its size exact; the key names the source (loaders: path, size, mtime and a hash of
// the file's first MiB) and the packed layout's version, so a changed model or engine repacks. Written
// to a temporary file renamed into place: readers never see a partial cache.
#pragma once

#include <string>

#include "buffers.h"

namespace nextoken {

struct PackedCache {
  std::string path;  // empty: no cache
  std::string key;   // what the packed bytes were made from
};

// The cached bytes (n of them) read into a new buffer, or false (absent, stale, damaged: the caller packs).
bool read_packed_cache(const PackedCache& cache, size_t n, PackedBuffer& out);
// Best effort: a cache that cannot be written leaves nothing behind and changes nothing else.
void write_packed_cache(const PackedCache& cache, const uint8_t* data, size_t n);

}  // namespace nextoken
