// Where a real kvstashd's data plane listens (--ucx-listen, server/ucx_listen.h) and who may map its
// arena (--shm-mode, docs/SAME_HOST_TRUST.md), read from the kernel's own tables: the daemon's
// listening tcp sockets (/proc/net/tcp{,6} matched against /proc/PID/fd) and its System V segments
// (/proc/sysvipc/shm matched on cpid).
#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "kvstash/client.h"
#include "tests/support/block_bytes.h"
#include "tests/support/daemon_process.h"

extern char** environ;

namespace kvstash {
namespace {

using testing::DaemonProcess;

// A listening tcp socket of the daemon.
struct Listener {
  std::string address;  // "127.0.0.1", "::1", "192.0.2.2"
  unsigned port = 0;
  bool loopback = false;
};

// The inodes of the sockets process `pid` holds open (/proc/PID/fd/N -> "socket:[INODE]").
std::set<unsigned long> SocketInodes(pid_t pid) {
  std::set<unsigned long> out;
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* fds = opendir(dir.c_str());
  if (fds == nullptr) return out;
  while (dirent* entry = readdir(fds)) {
    char target[128] = {};
    const std::string path = dir + "/" + entry->d_name;
    if (readlink(path.c_str(), target, sizeof(target) - 1) <= 0) continue;
    unsigned long inode = 0;
    if (std::sscanf(target, "socket:[%lu]", &inode) == 1) out.insert(inode);
  }
  closedir(fds);
  return out;
}

// "0100007F:1F90" (/proc/net/tcp) or 32 hex digits ":PORT" (tcp6): the kernel prints each 32-bit
// word of the address as the integer it holds in memory, so copying the words back restores the
// bytes on any host.
std::optional<Listener> ParseLocalAddress(const std::string& text, bool v6) {
  const size_t colon = text.find(':');
  const size_t words = v6 ? 4 : 1;
  if (colon != words * 8) return std::nullopt;
  unsigned char bytes[16] = {};
  for (size_t w = 0; w < words; ++w) {
    const uint32_t word = static_cast<uint32_t>(std::stoul(text.substr(w * 8, 8), nullptr, 16));
    std::memcpy(bytes + 4 * w, &word, 4);
  }
  Listener l;
  l.port = static_cast<unsigned>(std::stoul(text.substr(colon + 1), nullptr, 16));
  char printed[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, bytes, printed, sizeof(printed));
  l.address = printed;
  if (!v6) {
    l.loopback = bytes[0] == 127;
  } else {
    in6_addr a{};
    std::memcpy(&a, bytes, 16);
    l.loopback = IN6_IS_ADDR_LOOPBACK(&a) || (IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127);
  }
  return l;
}

// Every tcp socket in state LISTEN (0A) that process `pid` holds.
std::vector<Listener> ListeningSockets(pid_t pid) {
  const std::set<unsigned long> inodes = SocketInodes(pid);
  std::vector<Listener> out;
  for (const auto& [table, v6] : {std::pair<const char*, bool>{"/proc/net/tcp", false}, {"/proc/net/tcp6", true}}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout;
      unsigned long inode = 0;
      fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode;
      if (state != "0A" || inodes.count(inode) == 0) continue;
      if (std::optional<Listener> l = ParseLocalAddress(local, v6)) out.push_back(*l);
    }
  }
  return out;
}

std::string Describe(const std::vector<Listener>& listeners) {
  std::string out;
  for (const Listener& l : listeners) out += " " + l.address + ":" + std::to_string(l.port);
  return out.empty() ? " none" : out;
}

unsigned PortOf(const std::string& host_port) {
  return static_cast<unsigned>(std::stoul(host_port.substr(host_port.rfind(':') + 1)));
}

// The listeners that are neither the gRPC nor the /metrics port: UCX's.
std::vector<Listener> UcxListeners(const DaemonProcess& daemon) {
  std::vector<Listener> out;
  for (const Listener& l : ListeningSockets(daemon.pid())) {
    if (l.port != PortOf(daemon.grpc_address()) && l.port != PortOf(daemon.metrics_address())) out.push_back(l);
  }
  return out;
}

// An IPv4 address of an interface that is up and not loopback, with that interface's name; nullopt
// on a host with loopback alone.
std::optional<std::pair<std::string, std::string>> NonLoopbackIpv4() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return std::nullopt;
  std::optional<std::pair<std::string, std::string>> found;
  for (const ifaddrs* it = list; it != nullptr && !found; it = it->ifa_next) {
    if (it->ifa_addr == nullptr || it->ifa_addr->sa_family != AF_INET) continue;
    if ((it->ifa_flags & IFF_UP) == 0 || (it->ifa_flags & IFF_LOOPBACK) != 0) continue;
    char printed[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(it->ifa_addr)->sin_addr, printed, sizeof(printed));
    found = std::make_pair(std::string(printed), std::string(it->ifa_name));
  }
  freeifaddrs(list);
  return found;
}

// Every address of interface `name`, as inet_ntop prints them.
std::set<std::string> AddressesOf(const std::string& name) {
  std::set<std::string> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (const ifaddrs* it = list; it != nullptr; it = it->ifa_next) {
    if (it->ifa_addr == nullptr || name != it->ifa_name) continue;
    char printed[INET6_ADDRSTRLEN] = {};
    if (it->ifa_addr->sa_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(it->ifa_addr)->sin_addr, printed, sizeof(printed));
    } else if (it->ifa_addr->sa_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(it->ifa_addr)->sin6_addr, printed, sizeof(printed));
    } else {
      continue;
    }
    out.insert(printed);
  }
  freeifaddrs(list);
  return out;
}

// A System V segment from /proc/sysvipc/shm.
struct Segment {
  int shmid = 0;
  unsigned mode = 0;  // permission bits only
  unsigned long long size = 0;
};

// The System V segments process `pid` created. A line reads "key shmid perms size cpid ...", perms
// in octal with SHM_DEST (01000) set once the segment is removed (as UCX removes its segments right
// after attaching them).
std::vector<Segment> SegmentsCreatedBy(pid_t pid) {
  std::vector<Segment> out;
  std::ifstream in("/proc/sysvipc/shm");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    long long key = 0;
    Segment s;
    std::string perms;
    pid_t cpid = 0;
    if (!(fields >> key >> s.shmid >> perms >> s.size >> cpid) || cpid != pid) continue;
    s.mode = static_cast<unsigned>(std::stoul(perms, nullptr, 8)) & 0777;
    out.push_back(s);
  }
  return out;
}

// The segment that holds a daemon's `arena_bytes` arena: the one it created of at least that size.
std::optional<Segment> ArenaSegment(pid_t pid, unsigned long long arena_bytes) {
  for (const Segment& s : SegmentsCreatedBy(pid)) {
    if (s.size >= arena_bytes) return s;
  }
  return std::nullopt;
}

// Runs kvstashd with `args` to its exit (at most 60 s); its exit code (-1 when it did not exit by
// itself) and everything it wrote to stdout and stderr.
std::pair<int, std::string> RunToExit(const std::vector<std::string>& args) {
  std::vector<std::string> all = {KVSTASHD_PATH};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  int fds[2];
  if (pipe(fds) != 0) return {-1, "pipe failed"};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, KVSTASHD_PATH, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (spawned != 0) {
    close(fds[0]);
    return {-1, std::string("posix_spawn: ") + std::strerror(spawned)};
  }
  std::string output;
  bool timed_out = false;
  for (;;) {
    pollfd pfd{fds[0], POLLIN, 0};
    if (poll(&pfd, 1, 60'000) <= 0) {
      timed_out = true;
      break;
    }
    char buf[4096];
    const ssize_t n = read(fds[0], buf, sizeof(buf));
    if (n <= 0) break;
    output.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  return {!timed_out && WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

constexpr unsigned long long kArenaBytes = 64ULL << 20;

std::unique_ptr<DaemonProcess> StartDaemon(std::vector<std::string> extra) {
  std::vector<std::string> args = {"--dram-capacity", "64MiB"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto daemon = std::make_unique<DaemonProcess>(KVSTASHD_PATH, args);
  EXPECT_TRUE(daemon->ok()) << daemon->error();
  return daemon;
}

// The case: --listen 127.0.0.1:PORT. UCX's tcp, left to its default, also listens on every
// other interface's address; the daemon must keep its data plane on lo.
TEST(UcxListenTest, LoopbackDaemonListensOnLoopbackOnly) {
  if (!NonLoopbackIpv4()) GTEST_SKIP() << "this host has no non-loopback interface up: nothing to leak onto";
  auto daemon = StartDaemon({});
  ASSERT_TRUE(daemon->ok());
  const std::vector<Listener> listeners = ListeningSockets(daemon->pid());
  for (const Listener& l : listeners) {
    EXPECT_TRUE(l.loopback) << "kvstashd --listen 127.0.0.1:0 listens on " << l.address << ":" << l.port
                            << " (all listeners:" << Describe(listeners) << ")";
  }
  // Not vacuous: UCX's tcp does listen, on loopback.
  EXPECT_FALSE(UcxListeners(*daemon).empty()) << "no UCX listener at all:" << Describe(listeners);
  EXPECT_EQ(daemon->Stop(), 0);
}

// The control: --ucx-listen all is UCX's default (what every daemon did before --ucx-listen), and
// on this host it reaches a non-loopback address — which the test above would catch.
TEST(UcxListenTest, ListenAllReachesOtherInterfaces) {
  if (!NonLoopbackIpv4()) GTEST_SKIP() << "this host has no non-loopback interface up";
  auto daemon = StartDaemon({"--ucx-listen", "all"});
  ASSERT_TRUE(daemon->ok());
  const std::vector<Listener> ucx = UcxListeners(*daemon);
  EXPECT_TRUE(std::any_of(ucx.begin(), ucx.end(), [](const Listener& l) { return !l.loopback; }))
      << "UCX listeners:" << Describe(ucx);
  EXPECT_EQ(daemon->Stop(), 0);
}

// --ucx-listen ADDRESS: UCX listens on that address's interface and no other (gRPC stays on
// 127.0.0.1).
TEST(UcxListenTest, AddressPicksItsInterface) {
  const auto address = NonLoopbackIpv4();
  if (!address) GTEST_SKIP() << "this host has no non-loopback interface up";
  auto daemon = StartDaemon({"--ucx-listen", address->first});
  ASSERT_TRUE(daemon->ok());
  const std::set<std::string> interface_addresses = AddressesOf(address->second);
  const std::vector<Listener> ucx = UcxListeners(*daemon);
  EXPECT_FALSE(ucx.empty());
  for (const Listener& l : ucx) {
    EXPECT_EQ(interface_addresses.count(l.address), 1u)
        << "--ucx-listen " << address->first << " (" << address->second << "): UCX listens on " << l.address
        << " (UCX listeners:" << Describe(ucx) << ")";
  }
  EXPECT_EQ(daemon->Stop(), 0);
}

// A daemon on 127.0.0.1 still serves a tcp client on the same host (UCX's tcp over lo).
TEST(UcxListenTest, TcpClientReachesLoopbackDaemon) {
  auto daemon = StartDaemon({"--ucx-transports", "tcp"});
  ASSERT_TRUE(daemon->ok());
  ClientOptions options;
  options.address = daemon->grpc_address();
  options.data_path = DataPath::kUcx;
  options.ucx_transports = "tcp";
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  const BlockKey key = BlockKey::FromParts(0x75637821, 0x6c697374656e);
  const std::vector<std::byte> data = testing::BytesFor(key, 1 << 20);
  const std::vector<PutItem> items = {{key, std::nullopt, data}};
  auto put = (*client)->Put(items);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->stored, 1u);
  std::vector<std::byte> back(data.size());
  std::vector<GetItem> gets(1);
  gets[0].key = key;
  gets[0].buffer = back;
  ASSERT_TRUE((*client)->Get(gets).ok());
  EXPECT_TRUE(gets[0].found) << gets[0].status.ToString();
  EXPECT_EQ(back, data);
  client->reset();
  EXPECT_EQ(daemon->Stop(), 0);
}

// UCX creates the arena's System V segment 0660; the daemon makes it its own uid's alone.
TEST(UcxListenTest, ArenaSegmentIsOwnerOnly) {
  auto daemon = StartDaemon({});
  ASSERT_TRUE(daemon->ok());
  const std::optional<Segment> arena = ArenaSegment(daemon->pid(), kArenaBytes);
  if (!arena) GTEST_SKIP() << "UCX did not place the arena in System V shared memory here";
  EXPECT_EQ(arena->mode, 0600u) << "arena segment " << arena->shmid << " has mode 0" << std::oct << arena->mode;
  EXPECT_EQ(daemon->Stop(), 0);
}

// --shm-mode 0660 keeps the group's access, for operators who share the cache with a group.
TEST(UcxListenTest, ShmModeKeepsGroupAccessWhenAsked) {
  auto daemon = StartDaemon({"--shm-mode", "0660"});
  ASSERT_TRUE(daemon->ok());
  const std::optional<Segment> arena = ArenaSegment(daemon->pid(), kArenaBytes);
  if (!arena) GTEST_SKIP() << "UCX did not place the arena in System V shared memory here";
  EXPECT_EQ(arena->mode, 0660u) << "arena segment " << arena->shmid << " has mode 0" << std::oct << arena->mode;
  EXPECT_EQ(daemon->Stop(), 0);
}

// A --ucx-listen that names nothing on this host stops the start with a message that says so.
TEST(UcxListenTest, BadUcxListenIsRefusedAtStart) {
  const std::vector<std::string> base = {"--standalone", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                                         "--dram-capacity", "64MiB"};
  struct Case {
    std::string value;
    int exit_code;
    std::vector<std::string> said;
  };
  const Case cases[] = {
      // 203.0.113.0/24 is TEST-NET-3: documentation only, on no interface.
      {"203.0.113.77", 1, {"--ucx-listen 203.0.113.77", "no network interface", "lo "}},
      {"no-such-if0", 1, {"no-such-if0", "neither a network interface nor an IP address"}},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = base;
    args.insert(args.end(), {"--ucx-listen", c.value});
    const auto [code, output] = RunToExit(args);
    EXPECT_EQ(code, c.exit_code) << c.value << ": " << output;
    EXPECT_EQ(output.find("kvstashd ready"), std::string::npos) << c.value << ": " << output;
    for (const std::string& words : c.said) EXPECT_NE(output.find(words), std::string::npos) << c.value << ": " << output;
  }
  std::vector<std::string> args = base;
  args.insert(args.end(), {"--shm-mode", "0644"});
  const auto [code, output] = RunToExit(args);
  EXPECT_EQ(code, 2) << output;
  EXPECT_NE(output.find("shm_mode must be 0600"), std::string::npos) << output;
}

}  // namespace
}  // namespace kvstash
