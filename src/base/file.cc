#include "src/base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace stella {
namespace {

Status WriteAll(int fd, std::string_view bytes, const std::string& path) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("cannot write " + path, errno);
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

// Writes, chmods and fsyncs the open temporary file, and closes it.
Status FillTemp(int fd, const std::string& tmp, std::string_view content, unsigned mode) {
  Status st = WriteAll(fd, content, tmp);
  if (st.ok() && ::fchmod(fd, static_cast<mode_t>(mode)) != 0) st = ErrnoError("cannot chmod " + tmp, errno);
  if (st.ok() && ::fsync(fd) != 0) st = ErrnoError("cannot fsync " + tmp, errno);
  if (::close(fd) != 0 && st.ok()) st = ErrnoError("cannot close " + tmp, errno);
  return st;
}

std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

Status FsyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open " + dir + " for fsync", errno);
  Status st;
  if (::fsync(fd) != 0) st = ErrnoError("cannot fsync " + dir, errno);
  ::close(fd);
  return st;
}

}  // namespace

StatusOr<std::string> ReadWholeFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    const Status st = ErrnoError("cannot read file \"" + path + "\"", e);
    return e == ENOENT ? NotFoundError(st.message()) : st;
  }
  std::string out;
  char buf[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      return ErrnoError("error reading file \"" + path + "\"", e);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

Status WriteFileAtomically(const std::string& path, std::string_view content, const AtomicWriteOptions& options) {
  std::string tmp = path + ".tmp.XXXXXX";
  const int fd = ::mkstemp(tmp.data());  // O_EXCL, mode 0600 until FillTemp's chmod
  if (fd < 0) return ErrnoError("cannot create " + tmp, errno);
  Status st = FillTemp(fd, tmp, content, options.mode);
  if (st.ok() && options.before_rename) options.before_rename(tmp);
  if (st.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    st = ErrnoError("cannot rename " + tmp + " to " + path, errno);
  }
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  // The rename itself survives a crash only once the folder is synced.
  return FsyncDir(DirOf(path));
}

}  // namespace stella
