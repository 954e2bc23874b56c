// The user's own data, memory-mapped: flat uint16 token files (nanoGPT /
// llm.c style) for language models, and NumPy .npy feature/label pairs for
// classification. Files are mapped read-only and shared (MAP_SHARED), so
// workers on one machine share the page cache instead of each holding a copy.
//
// Thread safety: a loaded Dataset is immutable and can be shared.
#ifndef STELLA_RUNTIME_DATA_OWN_DATA_H_
#define STELLA_RUNTIME_DATA_OWN_DATA_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "src/base/status.h"

namespace stella::data {

// A read-only memory mapping of a whole file.
class MappedFile {
 public:
  // NotFound when the file cannot be opened; DataLoss when it is empty.
  static StatusOr<std::shared_ptr<const MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, uint64_t size) : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_;
  uint64_t size_;
};

// A .npy array's header: element type, shape, where the data starts.
struct NpyHeader {
  std::string descr;  // e.g. "<f4", "<i8"
  std::vector<int64_t> shape;
  uint64_t data_offset = 0;
  int64_t elements() const;  // -1 when the product overflows
};

// Parses the header of a .npy file (format versions 1-3); DataLoss naming
// `path` when it is not .npy, Fortran-ordered, or shorter than its shape.
StatusOr<NpyHeader> ParseNpy(const uint8_t* bytes, uint64_t size, const std::string& path);

}  // namespace stella::data

#endif  // STELLA_RUNTIME_DATA_OWN_DATA_H_
