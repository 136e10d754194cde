// The block commands: put, get, rm, stat, ls. Each parses its keys before connecting, so a bad
// key is a usage error (exit 2) and nothing is sent to the daemon.
#include <algorithm>
#include <iostream>

#include "cli/commands.h"
#include "cli/file_io.h"
#include "cli/output.h"
#include "cli/session.h"
#include "common/units.h"

namespace kvstash::cli {
namespace {

nlohmann::json BlockJson(const BlockInfo& b) {
  return {{"key", b.key.ToHex()},
          {"size", b.size},
          {"checksum", FormatHex64(b.checksum)},
          {"tier", std::string(ToString(b.tier))},
          {"generation", b.generation},
          {"leased", b.lease_until_ms != 0},
          {"lease_until_ms", b.lease_until_ms},
          {"parent", b.parent ? nlohmann::json(b.parent->ToHex()) : nlohmann::json(nullptr)},
          {"pinned", b.pinned},
          {"hits", b.hits},
          {"age_ms", b.age_ms},
          {"member", b.member},
          {"replicas", b.replicas}};
}

Status KeyNotStored(const BlockKey& key) { return NotFound("key " + key.ToHex() + " not stored"); }

// Why a key Stat did not find is missing: Stat has no per-key outcome, so a one-byte Get says
// whether a member that may hold it did not answer (UNAVAILABLE, naming it) or it is not stored.
Status WhyMissing(Client& client, const BlockKey& key) {
  std::byte probe[1];
  GetItem item;
  item.key = key;
  item.buffer = probe;
  if (Status st = client.Get(std::span<GetItem>(&item, 1)); !st.ok()) return st;
  return item.status.code() == StatusCode::kUnavailable ? item.status : KeyNotStored(key);
}

// The JSON document of a get or stat that found nothing.
nlohmann::json MissJson(const BlockKey& key, const Status& why) {
  return {{"key", key.ToHex()},
          {"found", false},
          {"code", std::string(StatusCodeName(why.code()))},
          {"error", why.message()}};
}

}  // namespace

int RunPut(const GlobalOptions& global, const PutCommand& cmd) {
  constexpr std::string_view kCommand = "put";
  const auto key = ParseKeyArg(kCommand, "key", cmd.key);
  if (!key) return kExitUsage;
  std::optional<BlockKey> parent;
  if (!cmd.parent.empty()) {
    parent = ParseKeyArg(kCommand, "--parent", cmd.parent);
    if (!parent) return kExitUsage;
  }
  auto data = ReadWholeFile(cmd.file, limits::kMaxBlockBytes);
  if (!data.ok()) return ReportFailure(kCommand, data.status());
  if (data->empty()) {
    return ReportFailure(kCommand,
                         InvalidArgument((cmd.file == "-" ? std::string("stdin") : cmd.file) +
                                         " is empty; a block holds 1 B .. 64 MiB"));
  }

  Session session = Connect(kCommand, global);
  if (!session) return session.exit_code;
  const PutItem item{*key, parent, std::span<const std::byte>(*data)};
  auto result = session.client->Put(std::span<const PutItem>(&item, 1), PutOptions{.pin = cmd.pin});
  if (!result.ok()) return ReportFailure(kCommand, result.status());
  const PutOutcome outcome = result->outcomes.at(0);
  if (global.json) {
    PrintJson({{"key", key->ToHex()},
               {"outcome", std::string(ToString(outcome))},
               {"size", data->size()},
               {"pinned", cmd.pin},
               {"unreachable", result->unreachable}});
  } else if (outcome == PutOutcome::kStored || outcome == PutOutcome::kExists) {
    std::cout << (outcome == PutOutcome::kStored ? "stored " : "exists ") << key->ToHex() << "  "
              << FormatBytes(data->size()) << '\n';
  }
  switch (outcome) {
    case PutOutcome::kStored:
    case PutOutcome::kExists:
      return kExitOk;
    case PutOutcome::kBusy:
      return ReportFailure(kCommand, Aborted("key " + key->ToHex() +
                                             " is being written by another client; try again"));
    case PutOutcome::kNoSpace:
      return ReportFailure(kCommand, ResourceExhausted("no space for " + FormatBytes(data->size()) +
                                                       " (key " + key->ToHex() + ")"));
    case PutOutcome::kUnreachable:
      return ReportFailure(kCommand, Unavailable("the owner of key " + key->ToHex() + ", " +
                                                 (result->unreachable.empty() ? std::string("a member")
                                                                              : result->unreachable.front()) +
                                                 ", did not answer (down, or unreachable from here)"));
  }
  return kExitFailure;
}

int RunGet(const GlobalOptions& global, const GetCommand& cmd) {
  constexpr std::string_view kCommand = "get";
  const auto key = ParseKeyArg(kCommand, "key", cmd.key);
  if (!key) return kExitUsage;
  Session session = Connect(kCommand, global);
  if (!session) return session.exit_code;

  // The size decides the buffer; a block is immutable under its key, so the size cannot change
  // between Stat and Get (the block can only disappear, which Get reports as a miss).
  auto info = session.client->Stat(std::span<const BlockKey>(&*key, 1));
  if (!info.ok()) return ReportFailure(kCommand, info.status());
  Status why = Status::Ok();
  std::vector<std::byte> buffer;
  GetItem item;
  if (!info->at(0)) {
    why = WhyMissing(*session.client, *key);
  } else {
    buffer.resize(info->at(0)->size);
    item.key = *key;
    item.buffer = std::span<std::byte>(buffer);
    if (Status st = session.client->Get(std::span<GetItem>(&item, 1)); !st.ok()) return ReportFailure(kCommand, st);
    if (!item.found) why = item.status.code() == StatusCode::kNotFound || item.status.ok() ? KeyNotStored(*key) : item.status;
  }
  if (!why.ok()) {
    if (global.json) PrintJson(MissJson(*key, why));
    return ReportFailure(kCommand, why);
  }
  const Status written =
      WriteWholeFile(cmd.output, std::span<const std::byte>(buffer.data(), item.size));
  if (!written.ok()) return ReportFailure(kCommand, written);
  if (cmd.output == "-") return kExitOk;  // stdout carries the bytes; nothing else may go there
  if (global.json) {
    PrintJson({{"key", key->ToHex()}, {"size", item.size}, {"file", cmd.output}});
  } else {
    std::cout << "wrote " << item.size << " bytes of " << key->ToHex() << " to " << cmd.output
              << '\n';
  }
  return kExitOk;
}

int RunRemove(const GlobalOptions& global, const RemoveCommand& cmd) {
  constexpr std::string_view kCommand = "rm";
  std::vector<BlockKey> keys;
  for (const std::string& text : cmd.keys) {
    const auto key = ParseKeyArg(kCommand, "key", text);
    if (!key) return kExitUsage;
    keys.push_back(*key);
  }
  Session session = Connect(kCommand, global);
  if (!session) return session.exit_code;

  std::vector<RemoveOutcome> outcomes;
  for (size_t i = 0; i < keys.size(); i += limits::kMaxBatchKeys) {
    const size_t n = std::min<size_t>(limits::kMaxBatchKeys, keys.size() - i);
    auto part = session.client->Remove(std::span<const BlockKey>(keys).subspan(i, n));
    if (!part.ok()) {
      if (i > 0) {
        std::cerr << "kvstash: rm: the first " << i << " keys were processed before this error"
                  << std::endl;
      }
      return ReportFailure(kCommand, part.status());
    }
    outcomes.insert(outcomes.end(), part->begin(), part->end());
  }
  size_t removed = 0;
  nlohmann::json results = nlohmann::json::array();
  for (size_t i = 0; i < keys.size(); ++i) {
    const bool ok = outcomes.at(i) == RemoveOutcome::kRemoved;
    removed += ok ? 1 : 0;
    if (global.json) {
      results.push_back({{"key", keys[i].ToHex()}, {"outcome", ok ? "removed" : "missing"}});
    } else {
      std::cout << (ok ? "removed " : "missing ") << keys[i].ToHex() << '\n';
    }
  }
  if (global.json) {
    PrintJson({{"removed", removed}, {"missing", keys.size() - removed}, {"results", results}});
  }
  return kExitOk;
}

int RunStat(const GlobalOptions& global, const StatCommand& cmd) {
  constexpr std::string_view kCommand = "stat";
  const auto key = ParseKeyArg(kCommand, "key", cmd.key);
  if (!key) return kExitUsage;
  Session session = Connect(kCommand, global);
  if (!session) return session.exit_code;
  auto info = session.client->Stat(std::span<const BlockKey>(&*key, 1));
  if (!info.ok()) return ReportFailure(kCommand, info.status());
  if (!info->at(0)) {
    const Status why = WhyMissing(*session.client, *key);
    if (global.json) PrintJson(MissJson(*key, why));
    return ReportFailure(kCommand, why);
  }
  const BlockInfo& b = *info->at(0);
  if (global.json) {
    PrintJson(BlockJson(b));
    return kExitOk;
  }
  PrintFields(std::cout,
              {{"key", b.key.ToHex()},
               {"size", std::to_string(b.size) + " (" + FormatBytes(b.size) + ")"},
               {"checksum", FormatHex64(b.checksum) + " (xxh3-64)"},
               {"tier", std::string(ToString(b.tier))},
               {"generation", std::to_string(b.generation)},
               {"lease", b.lease_until_ms == 0
                             ? std::string("none")
                             : "until " + std::to_string(b.lease_until_ms) + " ms (daemon clock)"},
               {"parent", b.parent ? b.parent->ToHex() : std::string("none")},
               {"pinned", b.pinned ? "yes" : "no"},
               {"hits", std::to_string(b.hits)},
               {"age", FormatUptime(b.age_ms)},
               {"member", b.member},
               {"replicas", b.replicas == 0 ? std::string("none")
                                            : std::to_string(b.replicas) + " hot-block copies on the next members"}});
  return kExitOk;
}

int RunList(const GlobalOptions& global, const ListCommand& cmd) {
  constexpr std::string_view kCommand = "ls";
  std::optional<BlockKey> cursor;
  if (!cmd.start_after.empty()) {
    cursor = ParseKeyArg(kCommand, "--start-after", cmd.start_after);
    if (!cursor) return kExitUsage;
  }
  const uint32_t limit = cmd.limit == 0 ? limits::kDefaultListLimit : cmd.limit;
  Session session = Connect(kCommand, global);
  if (!session) return session.exit_code;

  std::vector<BlockInfo> blocks;
  std::optional<BlockKey> next;
  for (;;) {
    auto page = session.client->List(cursor, limit);
    if (!page.ok()) return ReportFailure(kCommand, page.status());
    blocks.insert(blocks.end(), page->blocks.begin(), page->blocks.end());
    next = page->next_start_after;
    if (!cmd.all || !next) break;
    if (cursor && *next <= *cursor) {
      return ReportFailure(
          kCommand, Internal("daemon returned a cursor that does not advance: " + next->ToHex()));
    }
    cursor = next;
  }

  if (global.json) {
    nlohmann::json list = nlohmann::json::array();
    for (const BlockInfo& b : blocks) list.push_back(BlockJson(b));
    PrintJson(
        {{"blocks", list},
         {"count", blocks.size()},
         {"next_start_after", next ? nlohmann::json(next->ToHex()) : nlohmann::json(nullptr)}});
    return kExitOk;
  }
  using A = Table::Align;
  Table table({"key", "size", "tier", "pinned", "leased", "hits", "age"},
              {A::kLeft, A::kRight, A::kLeft, A::kLeft, A::kLeft, A::kRight, A::kRight});
  for (const BlockInfo& b : blocks) {
    table.AddRow({b.key.ToHex(), FormatBytes(b.size), std::string(ToString(b.tier)),
                  b.pinned ? "yes" : "no", b.lease_until_ms != 0 ? "yes" : "no",
                  std::to_string(b.hits), FormatUptime(b.age_ms)});
  }
  table.Print(std::cout);
  std::cout << blocks.size() << (blocks.size() == 1 ? " block" : " blocks");
  if (next) {
    std::cout << "; more after " << next->ToHex() << " (kvstash ls --start-after " << next->ToHex()
              << ")\n";
  } else {
    std::cout << "; end of listing\n";
  }
  return kExitOk;
}

}  // namespace kvstash::cli
