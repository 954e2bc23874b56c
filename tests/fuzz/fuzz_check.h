// FUZZ_CHECK: the invariant check of the libFuzzer targets under tests/fuzz.
//
// A violated invariant prints what was expected and what happened, then
// aborts, so libFuzzer records the input as a crash (STELLA_CHECK prints only
// the condition; a fuzz finding needs the values to be diagnosable).
//
// Thread safety: stateless; the targets are single-threaded.
#ifndef STELLA_TESTS_FUZZ_FUZZ_CHECK_H_
#define STELLA_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <string>

// `detail` is written whole (fwrite, not %s): inputs may hold NUL bytes.
#define FUZZ_CHECK(cond, detail)                                                               \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      const std::string fuzz_detail_ = (detail);                                               \
      std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n  ", __FILE__, __LINE__, #cond); \
      std::fwrite(fuzz_detail_.data(), 1, fuzz_detail_.size(), stderr);                        \
      std::fputc('\n', stderr);                                                                \
      std::abort();                                                                            \
    }                                                                                          \
  } while (0)

#endif  // STELLA_TESTS_FUZZ_FUZZ_CHECK_H_
