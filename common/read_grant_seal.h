// ReadGrantSealer: seals and checks the read grants of a daemon with tokens on (layout in
// common/read_grant.h). The seal is HMAC-SHA-256 (RFC 2104), truncated to 16 bytes, of the grant's
// key and lease epoch under a 32-byte secret drawn from the OS at construction and never written
// anywhere: grants die with the daemon, as the leases they name do.
//
// Why a MAC and not a table of granted reads: the check runs on the data plane's progress thread
// for every two-sided read, must not lock or allocate, and a table would need expiry. A tenant's
// stored keys are derived from public inputs (server/tenant_keys.h) and epochs are small counters,
// so without the seal any UCX peer could name another tenant's leased block.
//
// Cost: the HMAC's inner and outer pad states are hashed once here; a seal or a check is two
// SHA-256 compressions (about 0.2 us on this project's 2-core VM, with SHA extensions).
//
// Thread-safety: Seal and Verify are const and may run on any threads at once.
#pragma once

#include <memory>
#include <span>

#include "common/read_grant.h"

namespace kvstash {

class ReadGrantSealer {
 public:
  // A sealer with a fresh random secret; INTERNAL if the OS gives no randomness.
  static Result<std::unique_ptr<ReadGrantSealer>> Create();
  // A sealer with a given 32-byte secret (tests: two sealers with one secret agree).
  static Result<std::unique_ptr<ReadGrantSealer>> WithSecret(std::span<const std::byte> secret);
  ~ReadGrantSealer();
  ReadGrantSealer(const ReadGrantSealer&) = delete;
  ReadGrantSealer& operator=(const ReadGrantSealer&) = delete;

  ReadGrantBytes Seal(const BlockKey& key, uint64_t lease_epoch) const;
  // Whether `grant` is one this sealer (or one with its secret) made; compares in constant time.
  bool Verify(std::span<const std::byte> grant) const;

  static constexpr size_t kSecretBytes = 32;

 private:
  struct Pads;
  explicit ReadGrantSealer(std::unique_ptr<Pads> pads);
  // The full HMAC-SHA-256 of the grant's first kReadGrantSealedBytes bytes.
  void Mac(const std::byte* sealed, unsigned char out[32]) const;
  std::unique_ptr<Pads> pads_;
};

}  // namespace kvstash
