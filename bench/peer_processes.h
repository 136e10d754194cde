// Peers that bench/ measures beside kvstash in the same run: iperf3 over loopback and a
// redis-server it starts itself, both on ports chosen at run time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace kvstash::bench {

// A free TCP port on 127.0.0.1 (bound and released; the caller binds it next).
int FreePort();

// Runs a shell command and returns its stdout, or nullopt when it could not run or failed.
std::optional<std::string> RunCapture(const std::string& command);

struct StreamResult {
  double gbps = 0;  // 1e9 bytes per second
};
// iperf3 loopback throughput with `streams` parallel streams for `seconds`.
std::optional<StreamResult> RunIperf3(int streams, double seconds);

struct RedisResult {
  double ops_per_s = 0;
  double p50_us = 0;
  double p99_us = 0;
};
// redis-benchmark GET or SET (`op` "get"/"set") of `value_bytes` values with `clients`
// connections and `requests` requests, against a redis-server started for this call.
std::optional<RedisResult> RunRedis(const std::string& op, uint64_t value_bytes, int clients, uint64_t requests);

}  // namespace kvstash::bench
