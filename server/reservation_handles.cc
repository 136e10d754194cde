#include "server/reservation_handles.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace kvstash::server {
namespace {

void FillRandom(void* out, size_t n) {
  auto* p = static_cast<char*>(out);
  while (n > 0) {
    const ssize_t got = getrandom(p, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      // No entropy source at all: refusing to make guessable handles is the only safe answer.
      throw std::runtime_error(std::string("getrandom failed: ") + std::strerror(errno));
    }
    p += got;
    n -= static_cast<size_t>(got);
  }
}

}  // namespace

uint64_t ReservationHandles::RandomTag() {
  uint64_t tag = 0;
  while (tag == 0) FillRandom(&tag, sizeof(tag));
  return tag;
}

std::string ReservationHandles::NewHandle() {
  std::string handle(kHandleBytes, '\0');
  FillRandom(handle.data(), handle.size());
  return handle;
}

Result<ReservationHandles::Entry> ReservationHandles::Find(std::string_view handle, std::string_view session) const {
  if (handle.size() != kHandleBytes) {
    return InvalidArgument("a reservation handle is " + std::to_string(kHandleBytes) + " bytes, not " +
                           std::to_string(handle.size()));
  }
  MutexLock lock(mu_);
  auto it = entries_.find(std::string(handle));
  if (it == entries_.end() || it->second.session != session) {
    return NotFound("no open reservation under this handle for this connection "
                    "(never begun, committed, aborted, expired, or opened by another connection)");
  }
  return it->second;
}

void ReservationHandles::Close(std::string_view handle) {
  MutexLock lock(mu_);
  entries_.erase(std::string(handle));
}

size_t ReservationHandles::size() const {
  MutexLock lock(mu_);
  return entries_.size();
}

}  // namespace kvstash::server
