#include "common/http_serve.h"

#include <httplib.h>

#include <chrono>

namespace kvstash {

Result<int> ServeInBackground(httplib::Server& server, const std::string& host, int port, std::thread& thread,
                              std::string_view what) {
  if (thread.joinable()) return FailedPrecondition(std::string(what) + " server already started");
  // httplib sets SO_REUSEPORT, which lets a second process bind the same port and take half its
  // connections: keep only SO_REUSEADDR, so a port in use is refused.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<void*>(&yes), sizeof(yes));
  });
  int bound = -1;
  if (port == 0) {
    bound = server.bind_to_any_port(host);
  } else if (server.bind_to_port(host, port)) {
    bound = port;
  }
  if (bound <= 0) return Unavailable("cannot listen for " + std::string(what) + " on " + host + ":" + std::to_string(port));
  thread = std::thread([&server] { server.listen_after_bind(); });
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!server.is_running() && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
  return bound;
}

void StopServing(httplib::Server& server, std::thread& thread) {
  if (!thread.joinable()) return;
  server.stop();
  thread.join();
}

}  // namespace kvstash
