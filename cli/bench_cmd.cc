// `kvstash bench`: validates the options, runs the put phase and then the get phase
// (bench_phase.h) against one daemon, prints the report, and removes the bench blocks unless
// --keep. A get-only run loads its blocks first without reporting that load. Exit 1 when an RPC
// failed, a fetched block differed from what was put, or the daemon refused puts.
#include <iostream>
#include <random>

#include "cli/bench_phase.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "cli/session.h"
#include "common/units.h"

namespace kvstash::cli {
namespace {

constexpr uint64_t kMaxCount = 100'000'000;
constexpr uint32_t kMaxThreads = 256;

double PerSecond(double value, double seconds) { return seconds > 0 ? value / seconds : 0; }

nlohmann::json LatencyJson(const LatencySummary& s) {
  return {{"p50", s.p50_ns / 1e3},
          {"p99", s.p99_ns / 1e3},
          {"max", s.max_ns / 1e3},
          {"mean", s.mean_ns / 1e3}};
}

nlohmann::json PhaseJson(const PhaseResult& r) {
  nlohmann::json j = {
      {"ops", r.ops},
      {"rpcs", r.rpcs},
      {"bytes", r.bytes},
      {"errors", r.errors},
      {"seconds", r.seconds},
      {"ops_per_s", PerSecond(static_cast<double>(r.ops), r.seconds)},
      {"gb_per_s", PerSecond(static_cast<double>(r.bytes) / 1e9, r.seconds)},
      {"latency_us",
       {{"rpc", LatencyJson(r.rpc_latency)}, {"block", LatencyJson(r.block_latency)}}}};
  if (r.op == "put") {
    j["stored"] = r.stored;
    j["existed"] = r.existed;
    j["failed"] = r.failed;
  } else {
    j["hits"] = r.hits;
    j["misses"] = r.misses;
    j["verified"] = r.verified;
    j["mismatches"] = r.mismatches;
  }
  j["unreachable"] = r.unreachable;
  if (!r.unreachable_member.empty()) j["unreachable_member"] = r.unreachable_member;
  if (!r.first_error.ok()) j["first_error"] = r.first_error.ToString();
  return j;
}

void PrintReport(const std::string& address, const BenchPlan& plan,
                 const std::vector<PhaseResult>& phases) {
  std::cout << "bench " << address << "  block " << FormatBytes(plan.block_size) << "  threads "
            << plan.threads << "  batch " << plan.batch << "  count " << plan.count << "  verify 1/"
            << plan.verify_every << "\n\n";
  using A = Table::Align;
  Table table({"op", "ops", "errors", "seconds", "ops/s", "GB/s", "rpc p50", "rpc p99", "rpc max",
               "block p50", "block p99", "block max"},
              {A::kLeft, A::kRight, A::kRight, A::kRight, A::kRight, A::kRight, A::kRight,
               A::kRight, A::kRight, A::kRight, A::kRight, A::kRight});
  for (const PhaseResult& r : phases) {
    table.AddRow({r.op, std::to_string(r.ops), std::to_string(r.errors), FormatFixed(r.seconds, 3),
                  FormatFixed(PerSecond(static_cast<double>(r.ops), r.seconds), 0),
                  FormatFixed(PerSecond(static_cast<double>(r.bytes) / 1e9, r.seconds), 3),
                  FormatLatency(r.rpc_latency.p50_ns), FormatLatency(r.rpc_latency.p99_ns),
                  FormatLatency(r.rpc_latency.max_ns), FormatLatency(r.block_latency.p50_ns),
                  FormatLatency(r.block_latency.p99_ns), FormatLatency(r.block_latency.max_ns)});
  }
  table.Print(std::cout);
  std::cout << '\n';
  for (const PhaseResult& r : phases) {
    if (r.op == "put") {
      std::cout << "put: " << r.stored << " stored, " << r.existed << " existed, " << r.failed
                << " failed (busy or no space), " << r.unreachable << " to members that did not answer\n";
    } else {
      std::cout << "get: " << r.hits << " hits, " << r.misses << " misses, " << r.verified
                << " compared byte-exact with what was put, " << r.mismatches << " mismatches"
                << (r.unreachable > 0 ? " (" + std::to_string(r.unreachable) + " misses from members that did not answer)"
                                      : std::string())
                << '\n';
    }
  }
  std::cout << "block latency = rpc latency / blocks in the rpc; GB/s = 1e9 bytes/s\n";
}

// Removes every block the run put. Failures only warn: the measurement is already done.
void Cleanup(Client& client, const Workload& work, const std::vector<uint8_t>& present) {
  std::vector<BlockKey> keys;
  for (uint64_t i = 0; i < present.size(); ++i) {
    if (present[i]) keys.push_back(work.Key(i));
  }
  for (size_t i = 0; i < keys.size(); i += limits::kMaxBatchKeys) {
    const size_t n = std::min<size_t>(limits::kMaxBatchKeys, keys.size() - i);
    auto r = client.Remove(std::span<const BlockKey>(keys).subspan(i, n));
    if (!r.ok()) {
      std::cerr << "kvstash: bench: warning: could not remove the bench blocks: "
                << r.status().ToString() << std::endl;
      return;
    }
  }
}

}  // namespace

int RunBench(const GlobalOptions& global, const BenchCommand& cmd) {
  constexpr std::string_view kCommand = "bench";
  BenchPlan plan;
  auto block_size = ParseByteSize(cmd.block_size);
  if (!block_size.ok())
    return ReportUsage(kCommand, "--block-size: " + block_size.status().message());
  if (*block_size == 0 || *block_size > limits::kMaxBlockBytes) {
    return ReportUsage(kCommand, "--block-size must be 1 B .. 64 MiB");
  }
  if (cmd.count == 0 || cmd.count > kMaxCount)
    return ReportUsage(kCommand, "--count must be 1 .. 100000000");
  if (cmd.threads == 0 || cmd.threads > kMaxThreads)
    return ReportUsage(kCommand, "--threads must be 1 .. 256");
  if (cmd.batch == 0 || cmd.batch > limits::kMaxBatchKeys)
    return ReportUsage(kCommand, "--batch must be 1 .. 4096");
  if (!(cmd.duration_s > 0)) return ReportUsage(kCommand, "--duration-s must be > 0");
  if (cmd.verify_every == 0) return ReportUsage(kCommand, "--verify-every must be >= 1");
  plan.block_size = *block_size;
  plan.count = cmd.count;
  plan.threads = cmd.threads;
  plan.batch = cmd.batch;
  plan.duration_s = cmd.duration_s;
  plan.verify_every = cmd.verify_every;
  plan.eager_puts = cmd.eager_puts;
  const bool progress = cmd.progress || StderrIsTerminal();

  const DataPath data_path = cmd.data_path == "ucx"      ? DataPath::kUcx
                            : cmd.data_path == "inline" ? DataPath::kInline
                                                        : DataPath::kAuto;
  Session session = Connect(kCommand, global, data_path, cmd.ucx_transports);
  if (!session) return session.exit_code;
  Client& client = *session.client;

  std::random_device entropy;
  const uint64_t run_hi = (static_cast<uint64_t>(entropy()) << 32) ^ entropy();
  const uint64_t run_lo = (static_cast<uint64_t>(entropy()) << 32) ^ entropy();
  const Workload work(plan.block_size, run_hi, run_lo);

  std::vector<uint64_t> all(plan.count);
  for (uint64_t i = 0; i < plan.count; ++i) all[i] = i;
  std::vector<uint8_t> present(plan.count, 0);

  std::vector<PhaseResult> phases;
  // A get-only run first loads its blocks; that load is not reported.
  const PhaseResult put = RunPhase(Op::kPut, client, plan, work, all, present, progress);
  if (cmd.op != "get")
    phases.push_back(put);
  else if (put.errors > 0)
    phases.push_back(put);
  if (cmd.op != "put" && put.errors == 0) {
    std::vector<uint64_t> stored;
    for (uint64_t i = 0; i < plan.count; ++i) {
      if (present[i]) stored.push_back(i);
    }
    phases.push_back(RunPhase(Op::kGet, client, plan, work, stored, present, progress));
  }
  if (!cmd.keep) Cleanup(client, work, present);

  if (global.json) {
    nlohmann::json doc = {{"address", session.address},
                          {"data_path", client.data_path()},
                          {"block_size", plan.block_size},
                          {"threads", plan.threads},
                          {"batch", plan.batch},
                          {"count", plan.count},
                          {"duration_s", plan.duration_s},
                          {"verify_every", plan.verify_every}};
    for (const PhaseResult& r : phases) doc[r.op] = PhaseJson(r);
    PrintJson(doc);
  } else {
    PrintReport(session.address + "  data path " + client.data_path(), plan, phases);
  }

  int rc = kExitOk;
  for (const PhaseResult& r : phases) {
    const std::string where = std::string(kCommand) + ": " + r.op;
    if (r.errors > 0) {
      rc = ReportFailure(where, r.first_error);
    } else if (r.mismatches > 0) {
      rc = ReportFailure(where,
                         DataLoss(std::to_string(r.mismatches) +
                                  " blocks came back wrong; first: " + r.first_error.ToString()));
    } else if (r.unreachable > 0) {
      rc = ReportFailure(where, Unavailable(std::to_string(r.unreachable) + " blocks' members did not answer (" +
                                            r.unreachable_member + ")"));
    } else if (r.failed > 0) {
      rc = ReportFailure(where, ResourceExhausted(std::to_string(r.failed) +
                                                  " puts were refused (daemon busy or full)"));
    }
  }
  return rc;
}

}  // namespace kvstash::cli
