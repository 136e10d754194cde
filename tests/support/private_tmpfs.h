// PrivateTmpfs: a small real file system that can fill up, for tests of ENOSPC, without root:
// a child process creates a user + mount namespace, mounts a tmpfs of the given size on a
// directory and holds it until destruction; this process (and any process it starts) reaches the
// mount through the child's root, /proc/<child>/root + dir. Where user namespaces are not allowed
// (a sysctl, a container's seccomp profile) ok() is false and reason() says why: skip then.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace kvstash::testing {

class PrivateTmpfs {
 public:
  PrivateTmpfs(const std::string& dir, uint64_t bytes) {
    int ready[2], hold[2];
    if (::pipe(ready) != 0 || ::pipe(hold) != 0) {
      reason_ = std::string("pipe: ") + std::strerror(errno);
      return;
    }
    const uid_t uid = ::getuid();
    const gid_t gid = ::getgid();
    char uid_map[64], gid_map[64], size_opt[64];
    std::snprintf(uid_map, sizeof(uid_map), "0 %u 1\n", static_cast<unsigned>(uid));
    std::snprintf(gid_map, sizeof(gid_map), "0 %u 1\n", static_cast<unsigned>(gid));
    std::snprintf(size_opt, sizeof(size_opt), "size=%llu", static_cast<unsigned long long>(bytes));
    child_ = ::fork();
    if (child_ < 0) {
      reason_ = std::string("fork: ") + std::strerror(errno);
      return;
    }
    if (child_ == 0) {
      ::close(ready[0]);
      ::close(hold[1]);
      auto fail = [&](const char* what) {
        char msg[160];
        const int n = std::snprintf(msg, sizeof(msg), "%s: %s", what, std::strerror(errno));
        (void)!::write(ready[1], msg, static_cast<size_t>(n));
        ::_exit(1);
      };
      auto write_file = [&](const char* path, const char* text) {
        const int fd = ::open(path, O_WRONLY);
        if (fd < 0 || ::write(fd, text, std::strlen(text)) < 0) fail(path);
        ::close(fd);
      };
      if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) fail("unshare(CLONE_NEWUSER | CLONE_NEWNS)");
      write_file("/proc/self/setgroups", "deny");
      write_file("/proc/self/uid_map", uid_map);
      write_file("/proc/self/gid_map", gid_map);
      if (::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail("mount --make-rprivate /");
      if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, size_opt) != 0) fail("mount -t tmpfs");
      (void)!::write(ready[1], "R", 1);
      char c;
      (void)!::read(hold[0], &c, 1);  // until the parent closes its end
      ::_exit(0);
    }
    ::close(ready[1]);
    ::close(hold[0]);
    hold_ = hold[1];
    char buf[200] = {};
    const ssize_t n = ::read(ready[0], buf, sizeof(buf) - 1);
    ::close(ready[0]);
    if (n == 1 && buf[0] == 'R') {
      path_ = "/proc/" + std::to_string(child_) + "/root" + dir;
    } else {
      reason_ = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "the namespace child exited";
    }
  }
  ~PrivateTmpfs() {
    if (hold_ >= 0) ::close(hold_);
    if (child_ > 0) ::waitpid(child_, nullptr, 0);
  }
  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  const std::string& reason() const { return reason_; }

 private:
  pid_t child_ = -1;
  int hold_ = -1;
  std::string path_;
  std::string reason_;
};

// Writes `path` until the file system refuses a byte more. Returns the bytes written, or 0 when
// the file cannot be created or a write fails for another reason than ENOSPC.
inline uint64_t FillUp(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return 0;
  std::vector<char> chunk(64 * 1024, 'f');
  uint64_t total = 0;
  for (size_t len = chunk.size(); len > 0;) {
    const ssize_t n = ::write(fd, chunk.data(), len);
    if (n > 0) {
      total += static_cast<uint64_t>(n);
    } else if (errno == ENOSPC) {
      len /= 2;  // fill the last pages too
    } else {
      total = 0;
      break;
    }
  }
  ::close(fd);
  return total;
}

}  // namespace kvstash::testing
