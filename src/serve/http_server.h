// The HTTP transport: libmicrohttpd with the limits a public server needs. Torch-free.
// It parses requests (multipart included), enforces size, time and connection limits, and hands
// complete requests to one handler; everything application-specific lives above it.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace malaria {

struct CaseInsensitiveLess {
  bool operator()(const std::string& a, const std::string& b) const;
};

struct FormPart {
  std::string name;
  std::string filename;
  std::string content_type;
  std::string data;
};

struct HttpRequest {
  std::string method;  // HEAD is given as GET; the transport drops the body
  std::string path;    // percent-decoded; may hold any bytes
  std::string remote_addr;
  std::multimap<std::string, std::string, CaseInsensitiveLess> headers;
  std::map<std::string, std::string> query;
  std::string body;             // the raw body, unless it was multipart/form-data
  std::vector<FormPart> parts;  // multipart/form-data fields, in order
  bool multipart = false;
  std::chrono::steady_clock::time_point started;

  std::string header(const std::string& name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  void set_header(const std::string& name, const std::string& value) {
    headers.emplace_back(name, value);
  }
  std::string header(const std::string& name) const;
};

struct HttpLimits {
  size_t max_body_bytes = 64u << 20;       // bytes actually received, chunked or not
  size_t max_buffered_bytes = 512u << 20;  // all bodies held at once; more is 503 (many uploads)
  size_t max_parts = 64;                   // multipart fields (files in one request)
  size_t max_query_parameters = 64;        // more is 414
  unsigned max_connections = 1000;         // open connections; more are refused at accept
  unsigned max_connections_per_ip = 0;     // 0: no per-address limit
  unsigned idle_timeout_s = 10;            // no byte for this long: 408 (in a body) or closed
  unsigned header_deadline_s = 10;         // a request's headers must arrive within this
  unsigned body_deadline_s = 60;           // and its body within this
  unsigned drain_timeout_s = 30;           // on stop, requests in flight get this long
};

class HttpServer {
 public:
  // Answers a complete request. Exceptions become a 500 through `on_error`.
  using Handler = std::function<void(const HttpRequest&, HttpResponse&)>;
  // Sees the request once its headers are in, before the body is read; returns true when it
  // answered (authentication, CORS preflight). Optional.
  using EarlyHandler = std::function<bool(const HttpRequest&, HttpResponse&)>;
  // Fills an error response (status, message) in the language of the request's route.
  using ErrorRenderer = std::function<void(const HttpRequest&, HttpResponse&, int status,
                                           const std::string& message)>;
  // Called once per answered request, for logs and metrics.
  using Observer =
      std::function<void(const HttpRequest&, const HttpResponse&, double seconds, size_t bytes_in)>;

  struct Callbacks {
    Handler handle;
    ErrorRenderer on_error;
    EarlyHandler early = nullptr;
    Observer observe = nullptr;
  };

  HttpServer(HttpLimits limits, Callbacks callbacks);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds (without SO_REUSEPORT, so a second server on the port fails) and starts serving.
  // Throws std::runtime_error naming the address on failure ("address in use").
  void start(const std::string& host, int port);
  int port() const;
  // Stops accepting, answers connections that were waiting in the backlog with 503, lets the
  // requests in flight finish (up to drain_timeout_s), then calls `drain_expired` (which must
  // make the handlers still working answer soon, e.g. with 503), waits for those answers and
  // closes everything.
  void stop(const std::function<void()>& drain_expired = {});

  struct Stats {
    size_t connections_open = 0;
    size_t requests_in_flight = 0;  // headers received, not yet answered
    size_t requests_timed_out = 0;  // answered 408: the body stopped arriving
    size_t body_bytes_held = 0;     // request bodies being received or handled
  };
  Stats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace malaria
