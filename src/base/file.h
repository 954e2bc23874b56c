// Whole-file reads and crash-safe whole-file writes (POSIX).
//
// Thread safety: free functions; concurrent writers of one path each write
// their own temporary file, and the last rename wins.
#ifndef STELLA_SRC_BASE_FILE_H_
#define STELLA_SRC_BASE_FILE_H_

#include <functional>
#include <string>
#include <string_view>

#include "src/base/status.h"

namespace stella {

// The bytes of the file at `path`. NotFound when it does not exist, IoError
// when it cannot be opened or read; the message names the path.
StatusOr<std::string> ReadWholeFile(const std::string& path);

struct AtomicWriteOptions {
  // Permission bits of the new file. Default 0644.
  unsigned mode = 0644;
  // Called with the temporary file's path once it is written and synced,
  // just before the rename (crash-injection tests).
  std::function<void(const std::string& temp_path)> before_rename;
};

// Replaces `path` with `content` so that a reader (or a crash) sees either
// the old file or the whole new one: the bytes go to a fresh temporary file
// next to it ("<path>.tmp.XXXXXX"), which is fsynced and renamed over `path`,
// then the folder is fsynced so that the rename is durable too. The
// temporary file is removed on failure.
Status WriteFileAtomically(const std::string& path, std::string_view content, const AtomicWriteOptions& options = {});

}  // namespace stella

#endif  // STELLA_SRC_BASE_FILE_H_
