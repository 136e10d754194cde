// SegmentFiles: the SSD tier's preallocated segment files, `dir`/seg-NNNNNN.dat, each exactly
// segment_bytes long, opened O_RDWR | O_DIRECT. Space is reserved with fallocate() at open, so a
// full file system shows up here (RESOURCE_EXHAUSTED, naming the file) and not in the middle of
// a write. Where the file system refuses O_DIRECT (tmpfs), files are opened buffered instead and
// direct_io() answers false.
//
// Thread-safety: immutable after Open(); fds may be used from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvstash/result.h"

namespace kvstash::tiers {

class SegmentFiles {
 public:
  static Result<std::unique_ptr<SegmentFiles>> Open(const std::string& dir, uint64_t segment_bytes,
                                                    uint32_t count);
  ~SegmentFiles();
  SegmentFiles(const SegmentFiles&) = delete;
  SegmentFiles& operator=(const SegmentFiles&) = delete;

  static std::string PathOf(const std::string& dir, uint32_t segment);

  const std::vector<int>& fds() const { return fds_; }
  bool direct_io() const { return direct_io_; }
  // fdatasync on every segment file; INTERNAL on failure.
  Status SyncAll() const;

 private:
  SegmentFiles() = default;
  std::vector<int> fds_;
  bool direct_io_ = true;
};

}  // namespace kvstash::tiers
