#include "cli/file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kvstash::cli {
namespace {

Status ErrnoStatus(const std::string& what, int err) {
  const std::string message = what + ": " + std::strerror(err);
  if (err == ENOENT) return NotFound(message);
  if (err == EACCES || err == EPERM) return Status(StatusCode::kPermissionDenied, message);
  return Internal(message);
}

Status WriteAll(int fd, std::span<const std::byte> data, const std::string& name) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("cannot write " + name, errno);
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<std::byte>> ReadWholeFile(const std::string& path, uint64_t max_bytes) {
  const bool is_stdin = path == "-";
  const std::string name = is_stdin ? std::string("stdin") : path;
  const int fd = is_stdin ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot open " + name, errno);
  std::vector<std::byte> data;
  Status status;
  constexpr size_t kChunk = 1 << 20;
  for (;;) {
    const size_t old_size = data.size();
    data.resize(old_size + kChunk);
    const ssize_t n = ::read(fd, data.data() + old_size, kChunk);
    if (n < 0) {
      data.resize(old_size);
      if (errno == EINTR) continue;
      status = ErrnoStatus("cannot read " + name, errno);
      break;
    }
    data.resize(old_size + static_cast<size_t>(n));
    if (n == 0) break;
    if (data.size() > max_bytes) {
      status = OutOfRange(name + " is larger than " + std::to_string(max_bytes) + " bytes");
      break;
    }
  }
  if (!is_stdin) ::close(fd);
  if (!status.ok()) return status;
  return data;
}

Status WriteWholeFile(const std::string& path, std::span<const std::byte> data) {
  if (path == "-") return WriteAll(STDOUT_FILENO, data, "stdout");
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("cannot create " + path, errno);
  Status status = WriteAll(fd, data, path);
  if (::close(fd) != 0 && status.ok()) status = ErrnoStatus("cannot write " + path, errno);
  return status;
}

}  // namespace kvstash::cli
