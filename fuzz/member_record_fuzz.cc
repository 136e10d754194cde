// An etcd member record or drain mark, as any process that can write the cluster's etcd prefix could
// leave it: MemberRecordFromJson refuses it, or returns a record that survives a round trip through
// ToJson with its id and address intact. The base64 codec every etcd answer goes through, too.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "membership/etcd_client.h"
#include "membership/member_record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvstash::membership;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto record = MemberRecordFromJson(text);
  if (record.ok()) {
    if (record->id.empty() || record->grpc_address.empty()) std::abort();
    auto again = MemberRecordFromJson(ToJson(*record));
    if (!again.ok() || again->id != record->id || again->grpc_address != record->grpc_address) std::abort();
  }
  (void)DrainMarkFromJson(text);
  if (auto decoded = Base64Decode(text); decoded.ok()) {
    auto again = Base64Decode(Base64Encode(*decoded));  // what decodes must encode and decode back to itself
    if (!again.ok() || *again != *decoded) std::abort();
  }
  return 0;
}
