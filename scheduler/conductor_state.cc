#include "scheduler/conductor_state.h"

#include <algorithm>
#include <cmath>

namespace kvstash::scheduler {
namespace {

Status CheckTime(double t, const char* what) {
  if (!std::isfinite(t) || t < 0)
    return InvalidArgument(std::string(what) + " must be a finite number >= 0");
  return Status::Ok();
}

}  // namespace

Result<uint32_t> ConductorState::Register(const std::string& id, Role role, const std::string& address,
                                          const std::string& namespace_id) {
  if (id.empty() || id.size() > 256) return InvalidArgument("instance id must be 1..256 bytes");
  if (address.size() > 256) return InvalidArgument("address must be at most 256 bytes");
  if (namespace_id.size() > 256) return InvalidArgument("namespace_id must be at most 256 bytes");
  if (auto it = ids_.find(id); it != ids_.end() && it->second.first == role) endpoints_[id] = {address, namespace_id};
  if (auto it = ids_.find(id); it != ids_.end()) {
    if (it->second.first != role)
      return AlreadyExists("instance " + id + " is registered with the other role");
    if (role == Role::kPrefill) {
      index_.Clear(it->second.second);
      prefill_[it->second.second].busy_until = 0;
    } else {
      decode_[it->second.second] = Decode();
      decode_[it->second.second].id = id;
    }
    return it->second.second;
  }
  uint32_t index;
  if (role == Role::kPrefill) {
    if (prefill_.size() >= PrefixIndex::kMaxInstances) {
      return ResourceExhausted("at most " + std::to_string(PrefixIndex::kMaxInstances) +
                               " prefill instances");
    }
    index = uint32_t(prefill_.size());
    prefill_.emplace_back();
    prefill_.back().id = id;
  } else {
    if (decode_.size() >= kMaxDecode) return ResourceExhausted("at most 4096 decode instances");
    index = uint32_t(decode_.size());
    decode_.emplace_back();
    decode_.back().id = id;
  }
  ids_.emplace(id, std::make_pair(role, index));
  endpoints_[id] = {address, namespace_id};
  return index;
}

Result<std::pair<Role, uint32_t>> ConductorState::Find(const std::string& id) const {
  auto it = ids_.find(id);
  if (it == ids_.end()) return NotFound("unknown instance '" + id + "' (register it first)");
  return it->second;
}

Result<Role> ConductorState::RoleOf(const std::string& id) const {
  KVSTASH_ASSIGN_OR_RETURN(auto who, Find(id));
  return who.first;
}

Status ConductorState::PrefillHeartbeat(const std::string& id, double now_s, double queue_s) {
  KVSTASH_ASSIGN_OR_RETURN(auto who, Find(id));
  if (who.first != Role::kPrefill)
    return FailedPrecondition("instance " + id + " is not a prefill instance");
  KVSTASH_RETURN_IF_ERROR(CheckTime(now_s, "time"));
  KVSTASH_RETURN_IF_ERROR(CheckTime(queue_s, "queue_seconds"));
  prefill_[who.second].busy_until = now_s + queue_s;
  return Status::Ok();
}

Status ConductorState::DecodeHeartbeat(const std::string& id, double now_s, double step_s,
                                       std::vector<SequenceLoad> seqs) {
  KVSTASH_ASSIGN_OR_RETURN(auto who, Find(id));
  if (who.first != Role::kDecode)
    return FailedPrecondition("instance " + id + " is not a decode instance");
  KVSTASH_RETURN_IF_ERROR(CheckTime(now_s, "time"));
  KVSTASH_RETURN_IF_ERROR(CheckTime(step_s, "step_seconds"));
  if (seqs.size() > 1'000'000) return InvalidArgument("too many sequences in one heartbeat");
  Decode& d = decode_[who.second];
  d.as_of = now_s;
  d.step_s = step_s;
  d.seqs = std::move(seqs);
  std::erase_if(d.incoming, [&](const Incoming& in) { return in.ready_s <= now_s; });
  return Status::Ok();
}

Status ConductorState::KvEvent(const std::string& id, std::span<const BlockId> stored,
                               std::span<const BlockId> evicted) {
  KVSTASH_ASSIGN_OR_RETURN(auto who, Find(id));
  if (who.first != Role::kPrefill) {
    return FailedPrecondition("instance " + id +
                              " is a decode instance; only prefill caches are indexed");
  }
  for (BlockId b : stored) index_.Add(who.second, b);
  for (BlockId b : evicted) index_.Remove(who.second, b);
  return Status::Ok();
}

void ConductorState::Commit(const RouteRequest& req, const RouteDecision& d) {
  Prefill& p = prefill_[d.plan.prefill];
  p.busy_until = std::max(p.busy_until, req.now_s + d.plan.transfer_s) + d.plan.prefill_s;
  decode_[d.decode].incoming.push_back(Incoming{p.busy_until, req.input_tokens + 1});
}

double ConductorState::PrefillQueueSeconds(size_t i, double now_s) const {
  return std::max(0.0, prefill_[i].busy_until - now_s);
}

void ConductorState::PrefixMatches(std::span<const BlockId> chain,
                                   std::vector<uint32_t>& out) const {
  index_.Matches(chain, uint32_t(prefill_.size()), out);
}

DecodeLoad ConductorState::DecodeLoadNow(size_t j) const {
  const Decode& d = decode_[j];
  DecodeLoad l{d.seqs.size(), 0};
  for (const auto& s : d.seqs) l.context_tokens += s.context_tokens;
  return l;
}

DecodeLoad ConductorState::DecodeLoadAt(size_t j, double at_s) const {
  const Decode& d = decode_[j];
  DecodeLoad l;
  const double steps = d.step_s > 0 ? std::max(0.0, at_s - d.as_of) / d.step_s : 0.0;
  for (const auto& s : d.seqs) {
    if (double(s.remaining_tokens) > steps)
      ++l.batch, l.context_tokens += s.context_tokens + uint64_t(steps);
  }
  for (const auto& in : d.incoming) {
    if (in.ready_s <= at_s) ++l.batch, l.context_tokens += in.context;
  }
  return l;
}

Result<std::pair<std::string, std::string>> ConductorState::Endpoint(const std::string& id) const {
  auto it = endpoints_.find(id);
  if (it == endpoints_.end()) return NotFound("instance " + id + " is not registered");
  return std::make_pair(it->second.address, it->second.namespace_id);
}

Status ConductorState::Touch(const std::string& id, double now_s) {
  KVSTASH_ASSIGN_OR_RETURN(auto where, Find(id));
  if (where.first == Role::kPrefill) {
    prefill_[where.second].last_seen_s = now_s;
  } else {
    decode_[where.second].last_seen_s = now_s;
  }
  return Status::Ok();
}

std::string ConductorState::AnyNamespace() const {
  for (const auto& [id, where] : endpoints_) {
    if (!where.namespace_id.empty()) return where.namespace_id;
  }
  return "";
}

}  // namespace kvstash::scheduler
