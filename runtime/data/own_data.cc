// MappedFile, the .npy header parser, and the token / .npy loaders.
#include "runtime/data/own_data.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <regex>

#include "runtime/data/dataset.h"

namespace stella::data {
namespace {

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + (shape.size() == 1 ? ",)" : ")");
}

// The value of 'key' in the header dict, up to the next top-level comma.
std::string DictValue(const std::string& header, const std::string& key) {
  const size_t k = header.find("'" + key + "'");
  if (k == std::string::npos) return "";
  size_t start = header.find(':', k);
  if (start == std::string::npos) return "";
  ++start;
  int depth = 0;
  size_t end = start;
  for (; end < header.size(); ++end) {
    const char c = header[end];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if ((c == ',' && depth == 0) || c == '}') break;
  }
  std::string v = header.substr(start, end - start);
  v.erase(0, v.find_first_not_of(" "));
  v.erase(v.find_last_not_of(" ") + 1);
  return v;
}

StatusOr<std::vector<int64_t>> ParseShape(const std::string& text, const std::string& path) {
  if (text.size() < 2 || text.front() != '(' || text.back() != ')') {
    return DataLossError(path + ": .npy header has no shape tuple, got " + text);
  }
  std::vector<int64_t> shape;
  const std::regex number(R"(\d+)");
  const std::string inner = text.substr(1, text.size() - 2);
  for (std::sregex_iterator it(inner.begin(), inner.end(), number), end; it != end; ++it) {
    if (it->length() > 18) return DataLossError(path + ": implausible .npy dimension " + it->str());
    shape.push_back(std::stoll(it->str()));
  }
  return shape;
}

// Size of one element of a .npy dtype we accept ("<f4", "<i8", ...).
int ElementBytes(const std::string& descr) {
  if (descr.size() < 3) return 0;
  return std::atoi(descr.c_str() + 2);
}

StatusOr<std::pair<std::shared_ptr<const MappedFile>, NpyHeader>> OpenNpy(const std::string& path,
                                                                          const std::string& want_descr,
                                                                          const char* what) {
  STELLA_ASSIGN_OR_RETURN(auto file, MappedFile::Open(path));
  STELLA_ASSIGN_OR_RETURN(NpyHeader h, ParseNpy(file->data(), file->size(), path));
  if (h.descr != want_descr) {
    return DataLossError(path + ": " + what + " must be " + want_descr + " (" +
                         (want_descr == "<f4" ? "numpy float32" : "numpy int64") + "), got dtype " + h.descr);
  }
  return std::make_pair(std::move(file), std::move(h));
}

}  // namespace

StatusOr<std::shared_ptr<const MappedFile>> MappedFile::Open(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NotFoundError("cannot open " + path + ": " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoError("stat " + path, err);
  }
  if (st.st_size == 0) {
    close(fd);
    return DataLossError(path + ": file is empty");
  }
  void* p = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
  const int err = errno;
  close(fd);  // the mapping keeps the file
  if (p == MAP_FAILED) return ErrnoError("mmap " + path, err);
  return std::shared_ptr<const MappedFile>(
      new MappedFile(path, static_cast<const uint8_t*>(p), static_cast<uint64_t>(st.st_size)));
}

MappedFile::~MappedFile() { munmap(const_cast<uint8_t*>(data_), static_cast<size_t>(size_)); }

int64_t NpyHeader::elements() const {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(n, d, &n)) return -1;  // no file holds that many
  }
  return n;
}

StatusOr<NpyHeader> ParseNpy(const uint8_t* bytes, uint64_t size, const std::string& path) {
  static const char kMagic[] = "\x93NUMPY";
  if (size < 10 || std::memcmp(bytes, kMagic, 6) != 0) {
    return DataLossError(path + ": not a .npy file (no \\x93NUMPY magic); save it with numpy.save");
  }
  const int major = bytes[6];
  if (major < 1 || major > 3) return DataLossError(path + ": unsupported .npy format version " + std::to_string(major));
  const uint64_t prefix = major == 1 ? 10 : 12;
  if (size < prefix) return DataLossError(path + ": .npy header truncated");
  uint64_t header_len = uint64_t{bytes[8]} | uint64_t{bytes[9]} << 8;
  if (major > 1) header_len |= uint64_t{bytes[10]} << 16 | uint64_t{bytes[11]} << 24;
  if (size < prefix + header_len) {
    return DataLossError(path + ": .npy header promises " + std::to_string(header_len) + " bytes, file has " +
                         std::to_string(size - prefix));
  }
  const std::string header(reinterpret_cast<const char*>(bytes + prefix), header_len);
  NpyHeader h;
  h.data_offset = prefix + header_len;
  h.descr = DictValue(header, "descr");
  if (h.descr.size() >= 2) h.descr = h.descr.substr(1, h.descr.size() - 2);  // strip quotes
  if (DictValue(header, "fortran_order") != "False") {
    return DataLossError(path + ": .npy array is Fortran-ordered; save a C-ordered array (numpy.ascontiguousarray)");
  }
  STELLA_ASSIGN_OR_RETURN(h.shape, ParseShape(DictValue(header, "shape"), path));
  const int element = ElementBytes(h.descr);
  if (h.elements() < 0 || h.elements() > static_cast<int64_t>(size)) {
    return DataLossError(path + ": holds " + std::to_string(size - h.data_offset) +
                         " data bytes, far fewer than "
                         "its shape " +
                         ShapeText(h.shape) + " needs (truncated, or a corrupt header?)");
  }
  const uint64_t want = static_cast<uint64_t>(h.elements()) * static_cast<uint64_t>(std::max(element, 0));
  if (element > 0 && size - h.data_offset != want) {
    return DataLossError(path + ": holds " + std::to_string(size - h.data_offset) + " data bytes, shape " +
                         ShapeText(h.shape) + " of " + h.descr + " needs " + std::to_string(want) +
                         " (expected file size " + std::to_string(h.data_offset + want) + " bytes; truncated?)");
  }
  return h;
}

StatusOr<Dataset> LoadTokens(const std::string& path, int sequence_length) {
  if (sequence_length < 1)
    return InvalidArgumentError("sequenceLength must be >= 1, got " + std::to_string(sequence_length));
  STELLA_ASSIGN_OR_RETURN(auto file, MappedFile::Open(path));
  if (file->size() % 2 != 0) {
    return DataLossError(path + ": " + std::to_string(file->size()) +
                         " bytes is not a whole number of 2-byte uint16 tokens (truncated? expected " +
                         std::to_string(file->size() + 1) + " or " + std::to_string(file->size() - 1) + " bytes)");
  }
  Dataset d;
  d.format = Format::kTokens;
  d.num_tokens = static_cast<int64_t>(file->size() / 2);
  if (d.num_tokens < sequence_length + 1) {
    return DataLossError(path + ": holds " + std::to_string(d.num_tokens) + " tokens, fewer than one window of " +
                         "sequenceLength + 1 = " + std::to_string(sequence_length + 1) + " (expected at least " +
                         std::to_string(2 * (sequence_length + 1)) + " bytes)");
  }
  d.sequence_length = sequence_length;
  d.size = (d.num_tokens - 1) / sequence_length;
  d.tokens = file->data();
  d.token_file = std::move(file);
  uint16_t max_token = 0;
  for (int64_t t = 0; t < d.num_tokens; ++t) max_token = std::max(max_token, d.Token(t));
  d.num_classes = int{max_token} + 1;
  return d;
}

StatusOr<Dataset> LoadNpy(const std::string& features_path, const std::string& labels_path) {
  STELLA_ASSIGN_OR_RETURN(auto features, OpenNpy(features_path, "<f4", "features"));
  STELLA_ASSIGN_OR_RETURN(auto labels, OpenNpy(labels_path, "<i8", "labels"));
  const NpyHeader& fh = features.second;
  const NpyHeader& lh = labels.second;
  if (fh.shape.size() < 2 || fh.shape[0] < 1) {
    return DataLossError(features_path +
                         ": features must have shape [N, ...] with N >= 1 and at least one feature "
                         "dimension, got " +
                         ShapeText(fh.shape));
  }
  if (lh.shape.size() != 1 || lh.shape[0] != fh.shape[0]) {
    return DataLossError(labels_path + ": labels must have shape (" + std::to_string(fh.shape[0]) + ",) to match " +
                         features_path + ", got " + ShapeText(lh.shape));
  }
  Dataset d;
  d.format = Format::kNpy;
  d.size = fh.shape[0];
  d.sample_shape.assign(fh.shape.begin() + 1, fh.shape.end());
  d.features = features.first->data() + fh.data_offset;
  d.class_labels = labels.first->data() + lh.data_offset;
  d.feature_file = std::move(features.first);
  d.label_file = std::move(labels.first);
  int64_t max_label = 0;
  for (int64_t i = 0; i < d.size; ++i) {
    const int64_t l = d.Label(i);
    if (l < 0)
      return DataLossError(labels_path + ": label " + std::to_string(l) + " at index " + std::to_string(i) +
                           " is negative; labels are class indices 0..C-1");
    max_label = std::max(max_label, l);
  }
  d.num_classes = static_cast<int>(max_label + 1);
  return d;
}

}  // namespace stella::data
