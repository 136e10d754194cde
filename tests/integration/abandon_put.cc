// kvstash-test-abandon-put ADDR KEY_HEX SIZE: a writer that dies mid-put. It reserves one block,
// writes half of it with a one-sided UCX put, prints "reserved <id>" and then waits on stdin
// until the test kills it. Used by data_plane_test to prove that a vanished writer leaves no
// visible block and that its reservation is reclaimed.
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <string>
#include <vector>

#include "kvstash/block_key.h"
#include "kvstash/v1/store.grpc.pb.h"
#include "transfer/transfer_engine.h"

int main(int argc, char** argv) {
  using namespace kvstash;
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s ADDR KEY_HEX SIZE\n", argv[0]);
    return 2;
  }
  auto key = BlockKey::FromHex(argv[2]);
  const uint64_t size = std::stoull(argv[3]);
  if (!key.ok() || size < 2) return 2;
  auto stub = v1::Store::NewStub(grpc::CreateChannel(argv[1], grpc::InsecureChannelCredentials()));
  v1::DataPlaneResponse dp;
  {
    grpc::ClientContext ctx;
    if (!stub->DataPlane(&ctx, v1::DataPlaneRequest(), &dp).ok() || !dp.ucx_available()) return 1;
  }
  v1::PutBeginRequest begin;
  auto* item = begin.add_items();
  item->set_key(std::string(key->AsBytes()));
  item->set_size(size);
  v1::PutBeginResponse begun;
  {
    grpc::ClientContext ctx;
    if (!stub->PutBegin(&ctx, begin, &begun).ok()) return 1;
  }
  if (begun.results(0).outcome() != v1::PutBeginResult::RESERVED) return 1;
  auto engine = transfer::TransferEngine::Create({});
  if (!engine.ok()) return 1;
  std::vector<std::byte> half(size / 2, std::byte{0x5A});
  transfer::TransferOp op{transfer::OpKind::kPut, half.data(), half.size(), begun.results(0).remote_addr(), {}};
  if (!(*engine)->Run({dp.worker_address(), dp.rkey()}, std::span(&op, 1)).ok() || !op.status.ok()) return 1;
  std::printf("reserved %zu-byte handle\n", begun.results(0).reservation().size());
  std::fflush(stdout);
  char c;
  while (std::fread(&c, 1, 1, stdin) == 1) {
  }
  return 0;
}
