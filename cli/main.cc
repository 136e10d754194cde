// kvstash: the admin CLI of a kvstash daemon. This file only wires the command line (CLI11) to
// the Run* functions of commands.h; exit codes: 0 ok, 1 operation failed, 2 usage error.
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/commands.h"
#include "cli/session.h"
#include "common/logging.h"
#include "kvstash/limits.h"

namespace {

using kvstash::cli::kExitUsage;

std::string UsageMessage(const CLI::App* app, const CLI::Error& e) {
  std::string where = app->get_name().empty() || app->get_parent() == nullptr
                          ? std::string("usage")
                          : app->get_name() + ": usage";
  return "kvstash: " + where + ": " + e.what() + " (see kvstash --help)\n";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kvstash::cli;
  GlobalOptions global;
  std::string log_level = "warn";

  CLI::App app{"kvstash: admin CLI of the kvstash KVCache store", "kvstash"};
  app.set_version_flag("--version", KVSTASH_VERSION);
  app.require_subcommand(1);
  app.fallthrough();
  app.failure_message(UsageMessage);
  app.add_option("--addr", global.addr,
                 "daemon address HOST:PORT (default: $KVSTASH_ADDR, else 127.0.0.1:7370)");
  app.add_option("--etcd", global.etcd,
                 "etcd endpoints, comma-separated (default: $KVSTASH_ETCD): act on the whole cluster");
  app.add_option("--cluster", global.cluster, "cluster name in etcd")->capture_default_str();
  app.add_option("--timeout-ms", global.timeout_ms, "per-RPC timeout in milliseconds")
      ->check(CLI::Range(uint64_t{1}, uint64_t{3'600'000}));
  app.add_option("--etcd-ca", global.etcd_ca, "PEM CA of etcd's certificate (https:// endpoints)");
  app.add_option("--etcd-cert", global.etcd_cert, "PEM client certificate for etcd (etcd --client-cert-auth)");
  app.add_option("--etcd-key", global.etcd_key, "PEM private key of --etcd-cert");
  app.add_option("--tls-ca", global.tls_ca, "PEM CA of the daemons' certificates: talk TLS [plaintext]");
  app.add_option("--tls-cert", global.tls_cert, "PEM client certificate, for daemons that demand one (mutual TLS)");
  app.add_option("--tls-key", global.tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-server-name", global.tls_server_name,
                 "name the daemon's certificate must carry [the host dialled]");
  app.add_option("--token-file", global.token_file,
                 "file holding the bearer token on its first line (default: $KVSTASH_TOKEN)");
  app.add_option("--log-level", log_level,
                 "SDK log level on stderr: trace|debug|info|warn|error|off");
  auto add_json = [&](CLI::App* sub) {
    sub->add_flag("--json", global.json, "print one JSON document instead of tables");
  };

  CLI::App* status = app.add_subcommand("status", "daemon health, version, tiers and counters");
  add_json(status);

  PutCommand put;
  CLI::App* put_cmd =
      app.add_subcommand("put", "store a file's bytes as one block (1 B .. 64 MiB)");
  put_cmd->add_option("KEY", put.key, "block key, 32 hex digits")->required();
  put_cmd->add_option("FILE", put.file, "file to store ('-' = stdin)")->required();
  put_cmd->add_option("--parent", put.parent, "key of the previous block of the chain");
  put_cmd->add_flag("--pin", put.pin, "never evict this block");
  add_json(put_cmd);

  GetCommand get;
  CLI::App* get_cmd = app.add_subcommand("get", "fetch one block into a file");
  get_cmd->add_option("KEY", get.key, "block key, 32 hex digits")->required();
  get_cmd->add_option("-o,--output", get.output, "destination file ('-' = stdout)")->required();
  add_json(get_cmd);

  RemoveCommand rm;
  CLI::App* rm_cmd = app.add_subcommand("rm", "remove blocks (reports removed or missing per key)");
  rm_cmd->add_option("KEY", rm.keys, "block keys, 32 hex digits each")->required();
  add_json(rm_cmd);

  StatCommand stat;
  CLI::App* stat_cmd = app.add_subcommand("stat", "all metadata of one block");
  stat_cmd->add_option("KEY", stat.key, "block key, 32 hex digits")->required();
  add_json(stat_cmd);

  ListCommand ls;
  CLI::App* ls_cmd =
      app.add_subcommand("ls", "list stored blocks in key order, one page at a time");
  ls_cmd->add_option("--limit", ls.limit, "blocks per page (default 100)")
      ->check(CLI::Range(uint32_t{1}, kvstash::limits::kMaxListLimit));
  ls_cmd->add_option("--start-after", ls.start_after, "list keys after this one (a cursor)");
  ls_cmd->add_flag("--all", ls.all, "follow pages to the end");
  add_json(ls_cmd);

  HashCommand hash;
  CLI::App* hash_cmd = app.add_subcommand("hash", "print the block keys of a token file");
  hash_cmd->add_option("FILE", hash.file, "token file ('-' = stdin)")->required();
  hash_cmd
      ->add_option("--namespace", hash.namespace_id,
                   "namespace id hashed into the seed, e.g. 'llama3-8b|default|fp16|0'")
      ->capture_default_str();
  hash_cmd->add_option("--block-tokens", hash.block_tokens, "tokens per block (default 512)")
      ->check(CLI::Range(uint32_t{1}, uint32_t{1} << 24));
  hash_cmd
      ->add_option("--format", hash.format,
                   "text: whitespace-separated decimal ids; u32: raw little-endian uint32")
      ->check(CLI::IsMember({"text", "u32"}))
      ->capture_default_str();
  add_json(hash_cmd);

  BenchCommand bench;
  CLI::App* bench_cmd =
      app.add_subcommand("bench", "put/get load with random data and unique keys");
  bench_cmd->add_option("--op", bench.op, "put | get | both")
      ->check(CLI::IsMember({"put", "get", "both"}))
      ->capture_default_str();
  bench_cmd->add_option("--block-size", bench.block_size, "bytes per block")->capture_default_str();
  bench_cmd->add_option("--count", bench.count, "blocks per phase")->capture_default_str();
  bench_cmd->add_option("--threads", bench.threads, "concurrent callers")->capture_default_str();
  bench_cmd->add_option("--duration-s", bench.duration_s, "time limit per phase")
      ->capture_default_str();
  bench_cmd->add_option("--batch", bench.batch, "blocks per RPC")->capture_default_str();
  bench_cmd
      ->add_option("--verify-every", bench.verify_every,
                   "compare every Nth fetched block with what was put (1 = all)")
      ->capture_default_str();
  bench_cmd->add_flag("--progress", bench.progress,
                      "progress bar even when stderr is not a terminal");
  bench_cmd->add_flag("--keep", bench.keep, "leave the bench blocks in the store");
  bench_cmd->add_option("--data-path", bench.data_path, "auto | ucx | inline (how block bytes travel)")
      ->check(CLI::IsMember({"auto", "ucx", "inline"}))
      ->capture_default_str();
  bench_cmd->add_option("--ucx-transports", bench.ucx_transports, "UCX transport list for the bench client");
  bench_cmd->add_flag("--eager-puts", bench.eager_puts,
                      "send each block with its put request, no reservation round (two-sided UCX, i.e. tcp)");
  add_json(bench_cmd);

  DrainCommand drain;
  CLI::App* drain_cmd = app.add_subcommand("drain", "take a member out of the ring gracefully (needs --etcd)");
  drain_cmd->add_option("MEMBER", drain.member, "member id, as `kvstash --etcd ... status` lists it")->required();
  drain_cmd->add_flag("--undo", drain.undo, "put a drained member back into the ring");
  add_json(drain_cmd);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }

  if (const kvstash::Status logging = kvstash::InitLogging(log_level); !logging.ok()) {
    return ReportUsage("--log-level", logging.message());
  }

  if (status->parsed()) return RunStatus(global);
  if (put_cmd->parsed()) return RunPut(global, put);
  if (get_cmd->parsed()) return RunGet(global, get);
  if (rm_cmd->parsed()) return RunRemove(global, rm);
  if (stat_cmd->parsed()) return RunStat(global, stat);
  if (ls_cmd->parsed()) return RunList(global, ls);
  if (hash_cmd->parsed()) return RunHash(global, hash);
  if (bench_cmd->parsed()) return RunBench(global, bench);
  if (drain_cmd->parsed()) return RunDrain(global, drain);
  return kExitUsage;  // unreachable: require_subcommand(1) makes parse() reject this
}
