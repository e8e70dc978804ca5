// Fuzz target: raw bytes sent to the real HTTP transport (libmicrohttpd, our limits, multipart,
// routing and error rendering) over loopback. Every input must get an HTTP answer or a clean
// close within 5 s, never a crash or a 500.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "serve/http_server.h"
#include "serve/render.h"
#include "serve/router.h"

namespace {

malaria::HttpServer& server() {
  static std::unique_ptr<malaria::HttpServer> instance = [] {
    static malaria::Router router;
    router.add("GET", "/health", [](const auto&, auto& res) {
      malaria::send_json(res, 200, {{"status", "ok"}});
    });
    router.add("POST", "/api/v1/predict", [](const malaria::HttpRequest& req, auto& res) {
      nlohmann::json files = nlohmann::json::array();
      for (const auto& part : req.parts)
        files.push_back({part.name, part.filename, part.data.size()});
      malaria::send_json(res, 200, {{"files", files}, {"body", req.body.size()}});
    });
    malaria::HttpLimits limits;
    limits.max_body_bytes = 1 << 20;
    limits.max_parts = 8;
    limits.header_deadline_s = 2;
    auto s = std::make_unique<malaria::HttpServer>(
        limits, malaria::HttpServer::Callbacks{[](const auto& req, auto& res) {
                                                 router.dispatch(req, res, malaria::render_error);
                                               },
                                               malaria::render_error});
    s->start("127.0.0.1", 0);
    return s;
  }();
  return *instance;
}

}  // namespace

namespace {

// A connected socket. libFuzzer's timer can interrupt connect(); the connection then completes
// in the background, so wait for it rather than fail.
int connect_to_server() {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(server().port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
    if (errno == EINTR || errno == EINPROGRESS || errno == EALREADY) {
      pollfd p{fd, POLLOUT, 0};
      int error = 0;
      socklen_t len = sizeof error;
      for (int i = 0; i < 50 && ::poll(&p, 1, 100) <= 0; ++i) {
      }
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == 0 && error == 0) return fd;
    }
    ::close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  __builtin_trap();  // the server stopped accepting connections
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = connect_to_server();
  size_t sent = 0;
  while (sent < size) {
    const ssize_t n = ::send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);  // end of input: the server answers or closes
  std::string answer;
  char buf[4096];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    if (std::chrono::steady_clock::now() > deadline) __builtin_trap();  // the server hung
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, 100);
    if (ready < 0 && errno != EINTR) __builtin_trap();
    if (ready <= 0) continue;  // libFuzzer's timer interrupts system calls every second
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    answer.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  // No input is an internal error (505 for an unknown HTTP version is a fine answer).
  for (size_t at = 0; (at = answer.find("HTTP/1.1 ", at)) != std::string::npos; at += 9)
    if (answer.compare(at + 9, 3, "500") == 0) __builtin_trap();
  return 0;
}
