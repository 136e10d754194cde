// kvstash-node's gRPC requests as the wire delivers them: GenerateRequest and PrefillRequest bytes
// are parsed (or refused by protobuf), then checked by the node's own validation, which refuses them
// by field or returns a request within the stated limits: 1..context tokens, every id in the
// vocabulary, prompt + max_tokens within the context, a handoff key of 16 bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "node/grpc_requests.h"

namespace {

void Check(const kvstash::Result<kvstash::node::ParsedRequest>& parsed, const kvstash::node::RequestLimits& limits) {
  if (!parsed.ok()) {
    if (parsed.status().code() != kvstash::StatusCode::kInvalidArgument) std::abort();
    return;
  }
  const auto& r = parsed->request;
  if (r.prompt.empty() || r.prompt.size() + r.sampling.max_tokens > limits.context_tokens) std::abort();
  for (uint32_t t : r.prompt) {
    if (t >= limits.vocab_size) std::abort();
  }
  if (!r.sampling.Validate(limits.vocab_size).ok()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kvstash::node;
  RequestLimits limits;
  limits.vocab_size = 97;
  limits.context_tokens = 512;
  limits.max_request_bytes = 1 << 16;
  kvstash::v1::GenerateRequest generate;
  if (generate.ParseFromArray(data, static_cast<int>(size))) Check(ParseGenerateRequest(generate, nullptr, limits), limits);
  kvstash::v1::PrefillRequest prefill;
  uint32_t store_wait_ms = 0;
  if (prefill.ParseFromArray(data, static_cast<int>(size))) {
    Check(ParsePrefillRequest(prefill, nullptr, limits, &store_wait_ms), limits);
  }
  return 0;
}
