#include "server/ucx_listen.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <ucs/debug/log_def.h>
#include <uct/api/uct.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <optional>
#include <vector>

namespace kvstash::server {
namespace {

// An IP address in binary; IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are folded to IPv4.
struct IpAddress {
  int family = AF_UNSPEC;
  std::array<unsigned char, 16> bytes{};  // the first 4 for IPv4
  bool operator==(const IpAddress&) const = default;
};

IpAddress FromV6(const in6_addr& v6) {
  IpAddress ip;
  if (IN6_IS_ADDR_V4MAPPED(&v6)) {
    ip.family = AF_INET;
    std::memcpy(ip.bytes.data(), &v6.s6_addr[12], 4);
  } else {
    ip.family = AF_INET6;
    std::memcpy(ip.bytes.data(), v6.s6_addr, 16);
  }
  return ip;
}

// The address of an AF_INET or AF_INET6 sockaddr; nullopt for any other family.
std::optional<IpAddress> FromSockaddr(const sockaddr* sa) {
  if (sa == nullptr) return std::nullopt;
  if (sa->sa_family == AF_INET) {
    IpAddress ip;
    ip.family = AF_INET;
    std::memcpy(ip.bytes.data(), &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, 4);
    return ip;
  }
  if (sa->sa_family == AF_INET6) return FromV6(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr);
  return std::nullopt;
}

// An IPv4 or IPv6 literal ("192.0.2.2", "::1", "fe80::1%eth0": the zone is dropped); nullopt for
// anything else.
std::optional<IpAddress> ParseIpLiteral(std::string text) {
  if (const size_t zone = text.find('%'); zone != std::string::npos) text.resize(zone);
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    IpAddress ip;
    ip.family = AF_INET;
    std::memcpy(ip.bytes.data(), &v4, 4);
    return ip;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) return FromV6(v6);
  return std::nullopt;
}

// 0.0.0.0 or ::, which a listener takes to mean every interface.
bool IsWildcard(const IpAddress& ip) {
  return std::all_of(ip.bytes.begin(), ip.bytes.end(), [](unsigned char b) { return b == 0; });
}

std::string ToText(const IpAddress& ip) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(ip.family, ip.bytes.data(), text, sizeof(text));
  return text;
}

std::string Join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (const std::string& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

struct InterfaceAddress {
  std::string interface;  // as UCX names devices: "eth0" for an alias label "eth0:1"
  IpAddress ip;
};

// Every IPv4 and IPv6 address of every interface (getifaddrs).
Result<std::vector<InterfaceAddress>> ListInterfaceAddresses() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return Internal(std::string("getifaddrs: ") + std::strerror(errno));
  std::vector<InterfaceAddress> out;
  for (const ifaddrs* it = list; it != nullptr; it = it->ifa_next) {
    std::optional<IpAddress> ip = FromSockaddr(it->ifa_addr);
    if (!ip || it->ifa_name == nullptr) continue;
    std::string name = it->ifa_name;
    name.resize(std::min(name.size(), name.find(':')));
    out.push_back({std::move(name), *ip});
  }
  freeifaddrs(list);
  return out;
}

// "lo 127.0.0.1 ::1, eth0 192.0.2.2": what an error message offers instead.
std::string DescribeInterfaces(const std::vector<InterfaceAddress>& addresses) {
  std::vector<std::string> interfaces;
  for (const InterfaceAddress& a : addresses) {
    auto same = [&](const std::string& entry) { return entry.rfind(a.interface + " ", 0) == 0; };
    auto found = std::find_if(interfaces.begin(), interfaces.end(), same);
    if (found == interfaces.end()) {
      interfaces.push_back(a.interface + " " + ToText(a.ip));
    } else {
      // Appended piece by piece: GCC 12 at -O3 warns (-Wrestrict, a false positive) on " " + string&&.
      found->append(" ");
      found->append(ToText(a.ip));
    }
  }
  return interfaces.empty() ? "none" : Join(interfaces, ", ");
}

// The addresses `host` stands for: itself when it is an IP literal, else what the resolver says.
Result<std::vector<IpAddress>> AddressesOf(const std::string& host) {
  if (std::optional<IpAddress> ip = ParseIpLiteral(host)) return std::vector<IpAddress>{*ip};
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &found); rc != 0) {
    return InvalidArgument("cannot resolve '" + host + "': " + gai_strerror(rc));
  }
  std::vector<IpAddress> out;
  for (const addrinfo* it = found; it != nullptr; it = it->ai_next) {
    if (std::optional<IpAddress> ip = FromSockaddr(it->ai_addr)) out.push_back(*ip);
  }
  freeaddrinfo(found);
  return out;
}

// The interfaces that carry any of `ips`, each once, in getifaddrs' order.
std::vector<std::string> InterfacesCarrying(const std::vector<IpAddress>& ips,
                                            const std::vector<InterfaceAddress>& addresses) {
  std::vector<std::string> out;
  for (const InterfaceAddress& a : addresses) {
    if (std::find(ips.begin(), ips.end(), a.ip) == ips.end()) continue;
    if (std::find(out.begin(), out.end(), a.interface) == out.end()) out.push_back(a.interface);
  }
  return out;
}

// UCX's network devices, as its transports see them: tcp's are interfaces ("eth0"), the other
// transports' are RDMA ports ("mlx5_0:1").
struct UcxNetworkDevices {
  std::vector<std::string> tcp;
  std::vector<std::string> other;
};

void AddUnique(std::vector<std::string>& list, const std::string& item) {
  if (std::find(list.begin(), list.end(), item) == list.end()) list.push_back(item);
}

// UCX prints its log lines to stdout, where kvstashd's ready line goes; while devices are probed
// (before any UcxContext routes them) they go to the debug log instead.
ucs_log_func_rc_t ProbeLog(const char* file, unsigned line, const char*, ucs_log_level_t,
                           const ucs_log_component_config_t*, const char* format, va_list ap) {
  char message[512];
  std::vsnprintf(message, sizeof(message), format, ap);
  spdlog::debug("UCX {}:{} (probing network devices): {}", file, line, message);
  return UCS_LOG_FUNC_RC_STOP;
}

void AddNetworkDevices(uct_component_h component, const char* md_name, UcxNetworkDevices& out) {
  uct_md_config_t* config = nullptr;
  if (uct_md_config_read(component, nullptr, nullptr, &config) != UCS_OK) return;
  uct_md_h md = nullptr;
  const ucs_status_t opened = uct_md_open(component, md_name, config, &md);
  uct_config_release(config);
  if (opened != UCS_OK) return;
  uct_tl_resource_desc_t* resources = nullptr;
  unsigned count = 0;
  if (uct_md_query_tl_resources(md, &resources, &count) == UCS_OK) {
    for (unsigned i = 0; i < count; ++i) {
      if (resources[i].dev_type != UCT_DEVICE_TYPE_NET) continue;
      AddUnique(std::string_view(resources[i].tl_name) == "tcp" ? out.tcp : out.other, resources[i].dev_name);
    }
    uct_release_tl_resource_list(resources);
  }
  uct_md_close(md);
}

// Every memory domain of every UCX component, asked for its network devices (UCT's resource
// query; what `ucx_info -d` lists). Empty lists when UCX cannot be queried.
UcxNetworkDevices QueryUcxNetworkDevices() {
  UcxNetworkDevices out;
  ucs_log_push_handler(&ProbeLog);
  uct_component_h* components = nullptr;
  unsigned count = 0;
  if (uct_query_components(&components, &count) == UCS_OK) {
    for (unsigned c = 0; c < count; ++c) {
      uct_component_attr_t attr{};
      attr.field_mask = UCT_COMPONENT_ATTR_FIELD_MD_RESOURCE_COUNT;
      if (uct_component_query(components[c], &attr) != UCS_OK || attr.md_resource_count == 0) continue;
      std::vector<uct_md_resource_desc_t> mds(attr.md_resource_count);
      attr.field_mask = UCT_COMPONENT_ATTR_FIELD_MD_RESOURCES;
      attr.md_resources = mds.data();
      if (uct_component_query(components[c], &attr) != UCS_OK) continue;
      for (const uct_md_resource_desc_t& md : mds) AddNetworkDevices(components[c], md.md_name, out);
    }
    uct_release_component_list(components);
  }
  ucs_log_pop_handler();
  return out;
}

// The interfaces an explicit --ucx-listen names: itself when it is an interface, else the
// interfaces that carry it as an address. Empty for a wildcard address.
Result<std::vector<std::string>> InterfacesNamedBy(const std::string& ucx_listen,
                                                   const std::vector<InterfaceAddress>& addresses) {
  if (if_nametoindex(ucx_listen.c_str()) != 0) return std::vector<std::string>{ucx_listen};
  const std::optional<IpAddress> ip = ParseIpLiteral(ucx_listen);
  if (!ip) {
    return InvalidArgument("--ucx-listen '" + ucx_listen + "' is neither a network interface nor an IP address (" +
                           "interfaces: " + DescribeInterfaces(addresses) + ")");
  }
  if (IsWildcard(*ip)) return std::vector<std::string>{};
  std::vector<std::string> interfaces = InterfacesCarrying({*ip}, addresses);
  if (interfaces.empty()) {
    return InvalidArgument("--ucx-listen " + ucx_listen + ": no network interface of this host has that address (" +
                           "interfaces: " + DescribeInterfaces(addresses) + ")");
  }
  return interfaces;
}

// The interfaces that carry the gRPC host's addresses. Empty for a wildcard host.
Result<std::vector<std::string>> InterfacesOfGrpcHost(const std::string& grpc_host,
                                                      const std::vector<InterfaceAddress>& addresses) {
  Result<std::vector<IpAddress>> ips = AddressesOf(grpc_host);
  if (!ips.ok()) return InvalidArgument("--listen host: " + ips.status().message() + "; set --ucx-listen");
  if (std::any_of(ips->begin(), ips->end(), IsWildcard)) return std::vector<std::string>{};
  std::vector<std::string> interfaces = InterfacesCarrying(*ips, addresses);
  if (interfaces.empty()) {
    return InvalidArgument("--listen host " + grpc_host + " is on no network interface of this host (interfaces: " +
                           DescribeInterfaces(addresses) + "); set --ucx-listen");
  }
  return interfaces;
}

}  // namespace

Result<UcxListen> ResolveUcxListen(const std::string& ucx_listen, const std::string& grpc_host) {
  if (ucx_listen == "all") return UcxListen{"", "every interface (--ucx-listen all)"};
  KVSTASH_ASSIGN_OR_RETURN(const std::vector<InterfaceAddress> addresses, ListInterfaceAddresses());
  const bool derived = ucx_listen.empty();
  KVSTASH_ASSIGN_OR_RETURN(const std::vector<std::string> interfaces,
                           derived ? InterfacesOfGrpcHost(grpc_host, addresses)
                                   : InterfacesNamedBy(ucx_listen, addresses));
  const std::string origin = derived ? "--listen " + grpc_host : "--ucx-listen " + ucx_listen;
  if (interfaces.empty()) return UcxListen{"", "every interface (" + origin + ")"};

  const UcxNetworkDevices ucx = QueryUcxNetworkDevices();
  for (const std::string& interface : interfaces) {
    if (std::find(ucx.tcp.begin(), ucx.tcp.end(), interface) != ucx.tcp.end()) continue;
    const std::string why = "UCX's tcp transport cannot use interface " + interface +
                            " (down, or without an address; it can use: " +
                            (ucx.tcp.empty() ? std::string("none") : Join(ucx.tcp, ", ")) + ")";
    if (!derived) return InvalidArgument("--ucx-listen " + ucx_listen + ": " + why);
    spdlog::warn("{}; peers reach this daemon's data plane through shared memory or RDMA only", why);
  }
  std::vector<std::string> devices = interfaces;
  for (const std::string& port : ucx.other) AddUnique(devices, port);
  std::string description = Join(interfaces, ", ") + " (" + (derived ? "the interface of " : "") + origin + ")";
  if (!ucx.other.empty()) description += "; RDMA ports " + Join(ucx.other, ", ");
  return UcxListen{Join(devices, ","), std::move(description)};
}

}  // namespace kvstash::server
