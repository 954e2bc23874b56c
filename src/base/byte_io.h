// ByteWriter and ByteReader: a little-endian binary encoding of integers,
// floats, strings and float arrays, for state blobs that must survive a
// process (checkpoints; the tuner's and the compressors' saved state).
//
// The reader is bounds-checked with a sticky error: the first read past the
// end (or an implausible length) records "<what>: truncated reading <field>"
// and every later read returns zeros, so a decoder reads every field and
// checks status() once. Nothing is ever read out of bounds.
//
// Thread safety: plain values; one thread per instance.
#ifndef STELLA_SRC_BASE_BYTE_IO_H_
#define STELLA_SRC_BASE_BYTE_IO_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "src/base/status.h"

namespace stella {

class ByteWriter {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void Bool(bool v) { U8(v ? 1 : 0); }
  void U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) U8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void U64(uint64_t v) {
    for (int i = 0; i < 8; ++i) U8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void I64(int64_t v) { U64(static_cast<uint64_t>(v)); }
  void F32(float v) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof(bits));
    U32(bits);
  }
  void F64(double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof(bits));
    U64(bits);
  }
  // u32 length, then the bytes.
  void String(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_.append(s.data(), s.size());
  }
  // u64 count, then count little-endian fp32 values.
  void Floats(const float* data, size_t n) {
    U64(n);
    AppendFloatBytes(data, n);
  }
  void Floats(const std::vector<float>& v) { Floats(v.data(), v.size()); }
  // The bytes as they are, no length prefix.
  void Raw(std::string_view bytes) { out_.append(bytes.data(), bytes.size()); }

  const std::string& data() const { return out_; }
  std::string Release() { return std::move(out_); }

 private:
  void AppendFloatBytes(const float* data, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    out_.append(reinterpret_cast<const char*>(data), n * sizeof(float));
#else
    for (size_t i = 0; i < n; ++i) F32(data[i]);
#endif
  }
  std::string out_;
};

class ByteReader {
 public:
  // `what` names the blob in error messages ("checkpoint /x/step-1.ckpt").
  ByteReader(std::string_view data, std::string what) : data_(data), what_(std::move(what)) {}

  uint8_t U8(const char* field) {
    if (!Need(1, field)) return 0;
    return static_cast<uint8_t>(data_[pos_++]);
  }
  bool Bool(const char* field) {
    const uint8_t v = U8(field);
    if (ok() && v > 1) Fail(std::string(field) + " must be 0 or 1, got " + std::to_string(v));
    return v == 1;
  }
  uint32_t U32(const char* field) {
    if (!Need(4, field)) return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<uint8_t>(data_[pos_ + i])} << (8 * i);
    pos_ += 4;
    return v;
  }
  uint64_t U64(const char* field) {
    if (!Need(8, field)) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<uint8_t>(data_[pos_ + i])} << (8 * i);
    pos_ += 8;
    return v;
  }
  int64_t I64(const char* field) { return static_cast<int64_t>(U64(field)); }
  float F32(const char* field) {
    const uint32_t bits = U32(field);
    float v;
    std::memcpy(&v, &bits, sizeof(v));
    return v;
  }
  double F64(const char* field) {
    const uint64_t bits = U64(field);
    double v;
    std::memcpy(&v, &bits, sizeof(v));
    return v;
  }
  std::string String(const char* field) {
    const uint32_t n = U32(field);
    if (!Need(n, field)) return {};
    std::string s(data_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  // The next n bytes as they are (a view into the blob).
  std::string_view Raw(uint64_t n, const char* field) {
    if (!Need(n, field)) return {};
    std::string_view v = data_.substr(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return v;
  }
  // A Floats() array of any length that fits in the rest of the blob.
  std::vector<float> Floats(const char* field) {
    const uint64_t n = U64(field);
    std::vector<float> v;
    if (!ok()) return v;
    if (n > remaining() / sizeof(float)) {
      Fail(std::string(field) + " claims " + std::to_string(n) + " floats but only " + std::to_string(remaining()) +
           " bytes are left (truncated)");
      return v;
    }
    v.resize(static_cast<size_t>(n));
    CopyFloats(v.data(), v.size());
    return v;
  }
  // A Floats() array that must hold exactly `expected` values, into `out`.
  void FloatsInto(const char* field, float* out, size_t expected) {
    const uint64_t n = U64(field);
    if (!ok()) return;
    if (n != expected) {
      Fail(std::string(field) + " holds " + std::to_string(n) + " floats, expected " + std::to_string(expected));
      return;
    }
    if (!Need(expected * sizeof(float), field)) return;
    CopyFloats(out, expected);
  }

  // Records an error found by the caller's own checks (first one wins).
  void Fail(const std::string& message) {
    if (status_.ok()) status_ = DataLossError(what_ + ": " + message);
  }
  // Fails unless every byte was consumed.
  void ExpectEnd() {
    if (ok() && pos_ != data_.size()) {
      Fail(std::to_string(data_.size() - pos_) + " unexpected trailing bytes");
    }
  }
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  size_t position() const { return pos_; }
  size_t remaining() const { return data_.size() - pos_; }

 private:
  bool Need(uint64_t n, const char* field) {
    if (!ok()) return false;
    if (n > remaining()) {
      Fail(std::string("truncated reading ") + field + " (needs " + std::to_string(n) + " bytes at offset " +
           std::to_string(pos_) + ", " + std::to_string(remaining()) + " left)");
      return false;
    }
    return true;
  }
  void CopyFloats(float* out, size_t n) {
    if (n == 0) return;  // `out` may be null (an empty vector's data()); memcpy must not see it
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    std::memcpy(out, data_.data() + pos_, n * sizeof(float));
    pos_ += n * sizeof(float);
#else
    for (size_t i = 0; i < n; ++i) out[i] = F32("float");
#endif
  }

  std::string_view data_;
  std::string what_;
  size_t pos_ = 0;
  Status status_;
};

}  // namespace stella

#endif  // STELLA_SRC_BASE_BYTE_IO_H_
