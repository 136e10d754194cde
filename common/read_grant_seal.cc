#include "common/read_grant_seal.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

namespace kvstash {
namespace {

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

// The working digest of this thread: copying a prepared state into it allocates nothing.
EVP_MD_CTX* ThreadScratch() {
  thread_local MdCtx scratch(EVP_MD_CTX_new());
  return scratch.get();
}

}  // namespace

// SHA-256 states after absorbing (secret ^ ipad) and (secret ^ opad): RFC 2104 with a key no
// longer than the 64-byte block.
struct ReadGrantSealer::Pads {
  MdCtx inner{EVP_MD_CTX_new()};
  MdCtx outer{EVP_MD_CTX_new()};
};

Result<std::unique_ptr<ReadGrantSealer>> ReadGrantSealer::Create() {
  std::array<std::byte, kSecretBytes> secret{};
  if (RAND_bytes(reinterpret_cast<unsigned char*>(secret.data()), static_cast<int>(secret.size())) != 1) {
    return Internal("no randomness for the read-grant secret (RAND_bytes failed)");
  }
  Result<std::unique_ptr<ReadGrantSealer>> sealer = WithSecret(secret);
  OPENSSL_cleanse(secret.data(), secret.size());
  return sealer;
}

Result<std::unique_ptr<ReadGrantSealer>> ReadGrantSealer::WithSecret(std::span<const std::byte> secret) {
  if (secret.size() != kSecretBytes) return InvalidArgument("a read-grant secret is 32 bytes");
  constexpr size_t kBlock = 64;  // SHA-256's block
  unsigned char ipad[kBlock], opad[kBlock];
  for (size_t i = 0; i < kBlock; ++i) {
    const unsigned char k = i < secret.size() ? static_cast<unsigned char>(secret[i]) : 0;
    ipad[i] = k ^ 0x36;
    opad[i] = k ^ 0x5c;
  }
  auto pads = std::make_unique<Pads>();
  const bool ok = pads->inner && pads->outer &&
                  EVP_DigestInit_ex(pads->inner.get(), EVP_sha256(), nullptr) == 1 &&
                  EVP_DigestUpdate(pads->inner.get(), ipad, kBlock) == 1 &&
                  EVP_DigestInit_ex(pads->outer.get(), EVP_sha256(), nullptr) == 1 &&
                  EVP_DigestUpdate(pads->outer.get(), opad, kBlock) == 1;
  OPENSSL_cleanse(ipad, kBlock);
  OPENSSL_cleanse(opad, kBlock);
  if (!ok) return Internal("cannot prepare SHA-256 for read grants (OpenSSL)");
  return std::unique_ptr<ReadGrantSealer>(new ReadGrantSealer(std::move(pads)));
}

ReadGrantSealer::ReadGrantSealer(std::unique_ptr<Pads> pads) : pads_(std::move(pads)) {}
ReadGrantSealer::~ReadGrantSealer() = default;

void ReadGrantSealer::Mac(const std::byte* sealed, unsigned char out[32]) const {
  EVP_MD_CTX* work = ThreadScratch();
  unsigned char inner[32];
  unsigned int length = 0;
  // Failures here are OpenSSL running out of memory for a copy: the MAC is then left zeroed,
  // which Verify rejects (a zero seal is never valid for a sealer) and Seal hands out as a grant
  // no daemon accepts.
  std::memset(out, 0, 32);
  if (work == nullptr || EVP_MD_CTX_copy_ex(work, pads_->inner.get()) != 1 ||
      EVP_DigestUpdate(work, sealed, kReadGrantSealedBytes) != 1 || EVP_DigestFinal_ex(work, inner, &length) != 1 ||
      EVP_MD_CTX_copy_ex(work, pads_->outer.get()) != 1 || EVP_DigestUpdate(work, inner, sizeof(inner)) != 1 ||
      EVP_DigestFinal_ex(work, out, &length) != 1) {
    std::memset(out, 0, 32);
  }
}

ReadGrantBytes ReadGrantSealer::Seal(const BlockKey& key, uint64_t lease_epoch) const {
  ReadGrantBytes grant = EncodeReadGrant(key, lease_epoch);
  unsigned char mac[32];
  Mac(grant.data(), mac);
  std::memcpy(grant.data() + kReadGrantSealedBytes, mac, kReadGrantSealBytes);
  return grant;
}

bool ReadGrantSealer::Verify(std::span<const std::byte> grant) const {
  if (grant.size() != kReadGrantBytes) return false;
  unsigned char mac[32];
  Mac(grant.data(), mac);
  static constexpr unsigned char kZero[kReadGrantSealBytes] = {};
  if (CRYPTO_memcmp(mac, kZero, kReadGrantSealBytes) == 0) return false;  // the MAC failed to compute
  return CRYPTO_memcmp(mac, grant.data() + kReadGrantSealedBytes, kReadGrantSealBytes) == 0;
}

}  // namespace kvstash
