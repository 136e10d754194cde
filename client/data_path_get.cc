// The data path's gets (contract in client/connection.h): inline (bytes in the gRPC response),
// over UCX (locate and lease, read one-sided or by a push request carrying the grant, verify the
// checksum, release), or two-sided by key with no locate RPC; and the asynchronous lease
// releases a connection waits for before a remove and at its end.
#include <cstring>
#include <optional>

#include "client/connection.h"
#include "common/checksum.h"
#include "common/read_grant.h"

namespace kvstash::client_internal {

Status Connection::GetRoundInline(std::span<GetItem> items, const std::vector<size_t>& indices,
                                    std::vector<size_t>& deferred) {
  v1::GetRequest req;
  for (size_t i : indices) req.add_keys(std::string(items[i].key.AsBytes()));
  v1::GetResponse resp;
  auto ctx = Context();
  KVSTASH_RETURN_IF_ERROR(Call(stub_->Get(ctx.get(), req, &resp), "get"));
  if (resp.results_size() != static_cast<int>(indices.size())) return Internal("daemon answered a malformed get");
  for (size_t j = 0; j < indices.size(); ++j) {
    GetItem& item = items[indices[j]];
    const v1::GetResult& r = resp.results(static_cast<int>(j));
    if (r.outcome() == v1::GetResult::DEFERRED) {
      deferred.push_back(indices[j]);
      continue;
    }
    item.found = false;
    item.size = 0;
    if (r.outcome() != v1::GetResult::FOUND) {
      item.status = NotFound("block " + item.key.ToHex() + " is not stored");
      continue;
    }
    const std::string& data = r.data();
    if (data.size() != r.info().size()) {
      item.status = DataLoss("daemon sent " + std::to_string(data.size()) + " bytes for a block of " +
                             std::to_string(r.info().size()));
      continue;
    }
    if (data.size() > item.buffer.size()) {
      item.status = OutOfRange("block " + item.key.ToHex() + " is " + std::to_string(data.size()) +
                               " bytes; the buffer holds " + std::to_string(item.buffer.size()));
      continue;
    }
    if (options_.verify_checksums && BlockChecksum(data.data(), data.size()) != r.info().checksum()) {
      item.status = DataLoss("block " + item.key.ToHex() + " failed its checksum");
      continue;
    }
    std::memcpy(item.buffer.data(), data.data(), data.size());
    item.found = true;
    item.size = data.size();
    item.status = Status::Ok();
  }
  return Status::Ok();
}

Status Connection::GetRoundUcx(std::span<GetItem> items, const std::vector<size_t>& indices, bool device_reader) {
  struct Located {
    size_t item;
    uint64_t size, checksum, remote_addr, lease_epoch;
    bool own_lease;  // taken by this call, so released by it
    std::string read_grant;  // sealed by a daemon with tokens; empty: the client encodes it
  };
  std::vector<Located> located;
  std::vector<size_t> to_locate;
  uint64_t incarnation = 0;  // of the addresses located by this call
  {
    MutexLock lock(target_mu_);
    incarnation = instance_id_;  // pre-located items came from a Lookup against the current target
  }
  std::vector<size_t> by_key;  // asked for by key over the two-sided protocol (no locate RPC)
  for (size_t i : indices) {
    const BlockInfo* info = items[i].located;
    if (!device_reader && info != nullptr && info->key == items[i].key && info->remote_addr != 0) {
      located.push_back({i, info->size, info->checksum, info->remote_addr, info->lease_epoch, false, info->read_grant});
    } else if (!device_reader && eager_ && !items[i].buffer.empty()) {
      by_key.push_back(i);
    } else {
      to_locate.push_back(i);
    }
  }
  // What the daemon could not send this way (held below DRAM, or the transfer failed) is located.
  if (!by_key.empty()) KVSTASH_RETURN_IF_ERROR(GetByKey(items, by_key, to_locate));
  // The daemon starts a lease after it receives the request, so it runs at least until
  // sent + lease_ms by our clock: a read that finishes before then read leased bytes.
  const auto sent = std::chrono::steady_clock::now();
  if (!to_locate.empty()) {
    v1::GetRequest req;
    for (size_t i : to_locate) req.add_keys(std::string(items[i].key.AsBytes()));
    req.set_locate_only(true);
    req.set_lease_ms(lease_ms_);
    req.set_device_reader(device_reader);
    v1::GetResponse resp;
    auto ctx = Context();
    KVSTASH_RETURN_IF_ERROR(Call(stub_->Get(ctx.get(), req, &resp), "get"));
    if (resp.results_size() != static_cast<int>(to_locate.size())) return Internal("daemon answered a malformed get");
    incarnation = resp.instance_id();
    for (size_t j = 0; j < to_locate.size(); ++j) {
      const v1::GetResult& r = resp.results(static_cast<int>(j));
      GetItem& item = items[to_locate[j]];
      if (r.outcome() != v1::GetResult::FOUND) {
        item.found = false;
        item.size = 0;
        item.status = NotFound("block " + item.key.ToHex() + " is not stored");
        continue;
      }
      located.push_back({to_locate[j], r.info().size(), r.info().checksum(), r.info().remote_addr(),
                         r.info().lease_epoch(), true, r.info().read_grant()});
    }
  }
  std::vector<transfer::TransferOp> reads;
  std::vector<size_t> read_of;  // reads[k] serves located[read_of[k]]
  std::vector<std::pair<BlockKey, uint64_t>> to_release;
  for (size_t l = 0; l < located.size(); ++l) {
    const Located& loc = located[l];
    GetItem& item = items[loc.item];
    item.found = false;
    item.size = 0;
    if (loc.own_lease && loc.lease_epoch != 0) to_release.emplace_back(item.key, loc.lease_epoch);
    if (loc.size == 0 || loc.size > limits::kMaxBlockBytes || loc.remote_addr == 0) {
      item.status = DataLoss("daemon described block " + item.key.ToHex() + " incompletely");
      continue;
    }
    if (loc.size > item.buffer.size()) {
      item.status = OutOfRange("block " + item.key.ToHex() + " is " + std::to_string(loc.size) +
                               " bytes; the buffer holds " + std::to_string(item.buffer.size()));
      continue;
    }
    reads.push_back({transfer::OpKind::kGet, item.buffer.data(), loc.size, loc.remote_addr, {}});
    reads.back().device_local = item.memory == BufferMemory::kCudaDevice;
    // What a two-sided read shows the daemon: its sealed grant, or (no tokens) key and lease.
    if (loc.read_grant.size() == kReadGrantBytes) {
      std::memcpy(reads.back().grant.data(), loc.read_grant.data(), kReadGrantBytes);
    } else {
      reads.back().grant = EncodeReadGrant(item.key, loc.lease_epoch);
    }
    read_of.push_back(l);
  }
  Status run = Status::Ok();
  if (!reads.empty() && !device_reader) {
    Result<transfer::RemoteTarget> from = TargetFor(incarnation);
    run = from.ok() ? engine_->Run(*from, reads) : from.status();
  } else if (!reads.empty()) {
    run = RunDeviceReads(incarnation, reads);
  }
  const bool within_lease = std::chrono::steady_clock::now() < sent + std::chrono::milliseconds(lease_ms_);
  ReleaseLeasesAsync(to_release);
  for (size_t k = 0; k < reads.size(); ++k) {
    const Located& loc = located[read_of[k]];
    GetItem& item = items[loc.item];
    const Status st = run.ok() ? reads[k].status : run;
    if (!st.ok()) {
      // The daemon went away or the transfer failed: a miss, never an error for the whole call.
      // A two-sided read the daemon refused (the block moved or its lease ended) is a plain miss.
      const bool refused = st.code() == StatusCode::kNotFound || st.code() == StatusCode::kFailedPrecondition ||
                           st.code() == StatusCode::kOutOfRange;
      item.status = refused ? NotFound("block " + item.key.ToHex() + " is no longer readable: " + st.message())
                            : Unavailable("reading block " + item.key.ToHex() + ": " + st.message());
      continue;
    }
    // Device memory is not re-hashed here (BufferMemory): the lease rule stands in.
    if (options_.verify_checksums && item.memory != BufferMemory::kCudaDevice) {
      if (BlockChecksum(reads[k].local, reads[k].length) != loc.checksum) {
        item.status = DataLoss("block " + item.key.ToHex() + " failed its checksum (moved while read)");
        continue;
      }
    } else if (loc.own_lease && !within_lease) {
      item.status = NotFound("block " + item.key.ToHex() + " was read after its lease ran out");
      continue;
    }
    item.found = true;
    item.size = reads[k].length;
    item.status = Status::Ok();
  }
  return Status::Ok();
}

Status Connection::RunDeviceReads(uint64_t incarnation, std::span<transfer::TransferOp> reads) {
  KVSTASH_ASSIGN_OR_RETURN(const auto targets, DeviceTargetsFor(incarnation));
  const auto& [dram, hbm] = targets;
  // Two batches: reads of HBM copies (addresses inside the HBM arena) and of DRAM blocks, each
  // against the range it lies in (the engine refuses addresses outside its target's range).
  std::vector<transfer::TransferOp> on_hbm, on_dram;
  std::vector<size_t> hbm_of, dram_of;
  for (size_t k = 0; k < reads.size(); ++k) {
    const transfer::TransferOp& op = reads[k];
    const bool in_hbm = hbm.length > 0 && op.remote_addr >= hbm.base && op.remote_addr - hbm.base < hbm.length;
    (in_hbm ? on_hbm : on_dram).push_back(op);
    (in_hbm ? hbm_of : dram_of).push_back(k);
  }
  auto run = [&](const transfer::RemoteTarget& target, std::vector<transfer::TransferOp>& ops,
                 const std::vector<size_t>& of) {
    if (ops.empty()) return;
    const Status st = engine_->Run(target, ops);
    for (size_t j = 0; j < ops.size(); ++j) reads[of[j]].status = st.ok() ? ops[j].status : st;
  };
  run(hbm, on_hbm, hbm_of);
  run(dram, on_dram, dram_of);
  return Status::Ok();
}

Status Connection::GetByKey(std::span<GetItem> items, const std::vector<size_t>& indices,
                            std::vector<size_t>& to_locate) {
  transfer::RemoteTarget from;
  {
    MutexLock lock(target_mu_);
    from = target_;
  }
  std::vector<transfer::TransferOp> ops(indices.size());
  for (size_t j = 0; j < indices.size(); ++j) {
    GetItem& item = items[indices[j]];
    ops[j].kind = transfer::OpKind::kEagerGet;
    ops[j].local = item.buffer.data();
    ops[j].length = item.buffer.size();
    ops[j].key = item.key;
  }
  const Status run = engine_->Run(from, ops);
  for (size_t j = 0; j < indices.size(); ++j) {
    GetItem& item = items[indices[j]];
    const transfer::TransferOp& op = ops[j];
    item.found = false;
    item.size = 0;
    const Status& st = run.ok() ? op.status : run;
    switch (st.code()) {
      case StatusCode::kOk:
        // The daemon held the block's lease until its send completed: with checksums off, these
        // bytes were leased while they moved.
        if (options_.verify_checksums && BlockChecksum(item.buffer.data(), op.got_size) != op.got_checksum) {
          item.status = DataLoss("block " + item.key.ToHex() + " failed its checksum");
          break;
        }
        item.found = true;
        item.size = op.got_size;
        item.status = Status::Ok();
        break;
      case StatusCode::kNotFound: item.status = NotFound("block " + item.key.ToHex() + " is not stored"); break;
      case StatusCode::kOutOfRange: item.status = OutOfRange(st.message()); break;
      case StatusCode::kDataLoss: item.status = st; break;
      default:
        // Not in DRAM (FAILED_PRECONDITION), the daemon restarted, the transfer failed: the usual
        // way, which locates (moving the block into DRAM) and refreshes the daemon's address.
        to_locate.push_back(indices[j]);
    }
  }
  return Status::Ok();
}

void Connection::ReleaseLeasesAsync(const std::vector<std::pair<BlockKey, uint64_t>>& leases) {
  if (leases.empty()) return;
  struct Pending {
    grpc::ClientContext ctx;
    v1::ReleaseLeasesRequest req;
    v1::ReleaseLeasesResponse resp;
  };
  auto* call = new Pending();
  call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(options_.timeout_ms));
  Authorize(call->ctx);
  for (const auto& [key, epoch] : leases) {
    auto* lease = call->req.add_leases();
    lease->set_key(std::string(key.AsBytes()));
    lease->set_lease_epoch(epoch);
  }
  {
    MutexLock lock(releases_mu_);
    ++releases_in_flight_;
  }
  stub_->async()->ReleaseLeases(&call->ctx, &call->req, &call->resp, [this, call](grpc::Status) {
    delete call;
    MutexLock lock(releases_mu_);
    --releases_in_flight_;
    releases_done_.notify_all();
  });
}

void Connection::WaitForReleases() {
  MutexLock lock(releases_mu_);
  // Each release carries a deadline of timeout_ms, so this wait ends; the bound is a backstop.
  lock.WaitFor(releases_done_, std::chrono::milliseconds(options_.timeout_ms) * 2, [this] {
    releases_mu_.AssertHeld();  // a wait predicate runs with the mutex held
    return releases_in_flight_ == 0;
  });
}

}  // namespace kvstash::client_internal
