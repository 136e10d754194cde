// SegmentFiles (contract in tiers/segment_files.h).
#include "tiers/segment_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace kvstash::tiers {

std::string SegmentFiles::PathOf(const std::string& dir, uint32_t segment) {
  char name[32];
  std::snprintf(name, sizeof(name), "/seg-%06u.dat", segment);
  return dir + name;
}

SegmentFiles::~SegmentFiles() {
  for (int fd : fds_) ::close(fd);
}

Result<std::unique_ptr<SegmentFiles>> SegmentFiles::Open(const std::string& dir, uint64_t segment_bytes,
                                                         uint32_t count) {
  std::unique_ptr<SegmentFiles> files(new SegmentFiles());
  for (uint32_t i = 0; i < count; ++i) {
    const std::string path = PathOf(dir, i);
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (files->direct_io_ ? O_DIRECT : 0), 0644);
    if (fd < 0 && errno == EINVAL && files->direct_io_) {
      files->direct_io_ = false;  // the file system has no O_DIRECT; earlier files are reopened below
      fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    }
    if (fd < 0) return Internal("cannot open " + path + ": " + std::strerror(errno));
    files->fds_.push_back(fd);
    const int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(segment_bytes));
    if (rc != 0) {
      if (rc == ENOSPC) {
        return ResourceExhausted("no space to preallocate " + path + " (" + std::to_string(segment_bytes) +
                                 " bytes): reduce the ssd capacity");
      }
      return Internal("cannot preallocate " + path + ": " + std::strerror(rc));
    }
  }
  // The files and their directory entries reach the disk before anything is indexed in them: a
  // power cut must not take away a segment whose blocks the index already names.
  for (int fd : files->fds_) {
    if (::fsync(fd) != 0) return Internal("cannot fsync a segment file in " + dir + ": " + std::strerror(errno));
  }
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    const int rc = ::fsync(dfd);
    const int err = errno;
    ::close(dfd);
    if (rc != 0) return Internal("cannot fsync ssd dir " + dir + ": " + std::strerror(err));
  }
  if (!files->direct_io_) {
    // Mixed modes would be harmless, but keep every file alike so direct_io() is one answer.
    for (uint32_t i = 0; i < count; ++i) {
      const int fl = ::fcntl(files->fds_[i], F_GETFL);
      if (fl >= 0) (void)::fcntl(files->fds_[i], F_SETFL, fl & ~O_DIRECT);
    }
  }
  return files;
}

Status SegmentFiles::SyncAll() const {
  for (int fd : fds_) {
    if (::fdatasync(fd) != 0) return Internal(std::string("fdatasync failed: ") + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace kvstash::tiers
