// Read grants (common/read_grant.h) and their seal (common/read_grant_seal.h): the seal is
// HMAC-SHA-256 as RFC 2104 defines it (checked against OpenSSL's own HMAC), every changed byte of a
// sealed grant is refused, and so are unsealed grants and grants of another daemon's secret.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <cstring>

#include "common/read_grant.h"
#include "common/read_grant_seal.h"

namespace kvstash {
namespace {

std::array<std::byte, ReadGrantSealer::kSecretBytes> Secret(uint8_t fill) {
  std::array<std::byte, ReadGrantSealer::kSecretBytes> secret{};
  for (size_t i = 0; i < secret.size(); ++i) secret[i] = std::byte(static_cast<uint8_t>(fill + i));
  return secret;
}

TEST(ReadGrantTest, TheSealIsTheTruncatedHmacSha256OfKeyAndEpoch) {
  const auto secret = Secret(7);
  auto sealer = ReadGrantSealer::WithSecret(secret);
  ASSERT_TRUE(sealer.ok()) << sealer.status().ToString();
  const BlockKey key = BlockKey::FromParts(0x1234, 0x5678);
  const ReadGrantBytes grant = (*sealer)->Seal(key, 42);
  const ReadGrantBytes plain = EncodeReadGrant(key, 42);
  EXPECT_EQ(std::memcmp(grant.data(), plain.data(), kReadGrantSealedBytes), 0);
  unsigned char expected[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  ASSERT_NE(HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
                 reinterpret_cast<const unsigned char*>(plain.data()), kReadGrantSealedBytes, expected, &length),
            nullptr);
  ASSERT_EQ(length, 32u);
  EXPECT_EQ(std::memcmp(grant.data() + kReadGrantSealedBytes, expected, kReadGrantSealBytes), 0);
  auto decoded = DecodeReadGrant(grant);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->key, key);
  EXPECT_EQ(decoded->lease_epoch, 42u);
}

TEST(ReadGrantTest, EveryChangedBitOfASealedGrantIsRefused) {
  auto sealer = ReadGrantSealer::Create();
  ASSERT_TRUE(sealer.ok()) << sealer.status().ToString();
  const ReadGrantBytes grant = (*sealer)->Seal(BlockKey::FromParts(1, 2), 9);
  ASSERT_TRUE((*sealer)->Verify(grant));
  for (size_t i = 0; i < grant.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      ReadGrantBytes changed = grant;
      changed[i] ^= std::byte(static_cast<uint8_t>(1u << bit));
      EXPECT_FALSE((*sealer)->Verify(changed)) << "byte " << i << " bit " << bit;
    }
  }
}

TEST(ReadGrantTest, UnsealedShortAndForeignGrantsAreRefused) {
  auto sealer = ReadGrantSealer::WithSecret(Secret(1));
  auto other = ReadGrantSealer::WithSecret(Secret(2));
  auto same = ReadGrantSealer::WithSecret(Secret(1));
  ASSERT_TRUE(sealer.ok() && other.ok() && same.ok());
  const BlockKey key = BlockKey::FromParts(3, 4);
  EXPECT_FALSE((*sealer)->Verify(EncodeReadGrant(key, 5)));   // what a client could make itself
  EXPECT_FALSE((*sealer)->Verify((*other)->Seal(key, 5)));   // another daemon's (or start's) secret
  EXPECT_TRUE((*sealer)->Verify((*same)->Seal(key, 5)));     // the secret, not the object, decides
  const ReadGrantBytes grant = (*sealer)->Seal(key, 5);
  EXPECT_FALSE((*sealer)->Verify(std::span(grant).first(kReadGrantBytes - 1)));
  EXPECT_FALSE(DecodeReadGrant(std::span(grant).first(kReadGrantSealedBytes)).ok());
  const auto secret = Secret(1);
  EXPECT_FALSE(ReadGrantSealer::WithSecret(std::span(secret).first(16)).ok());
  // Two fresh sealers draw different secrets.
  auto a = ReadGrantSealer::Create(), b = ReadGrantSealer::Create();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_FALSE((*b)->Verify((*a)->Seal(key, 5)));
}

}  // namespace
}  // namespace kvstash
