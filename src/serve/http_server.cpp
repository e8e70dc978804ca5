#include "serve/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdarg>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

#include "serve/http_util.h"

namespace malaria {

bool CaseInsensitiveLess::operator()(const std::string& a, const std::string& b) const {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) <
           std::tolower(static_cast<unsigned char>(y));
  });
}

std::string HttpRequest::header(const std::string& name) const {
  const auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

std::string HttpResponse::header(const std::string& name) const {
  for (const auto& [key, value] : headers)
    if (strcasecmp(key.c_str(), name.c_str()) == 0) return value;
  return {};
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// What the watchdog knows of an open connection.
struct ConnectionWatch {
  int fd = -1;
  Clock::time_point phase_start = Clock::now();  // opened, or its previous request answered
  Clock::time_point last_byte = Clock::now();    // of the body being received
  bool in_request = false;                       // headers received, not yet answered
  bool awaiting_body = false;                    // a body is due and not complete
  bool closing = false;
  bool request_started = false;  // MHD has the request line: the request will be answered
  bool bad_url = false;          // the URL holds a space or decodes to a control byte
  size_t url_parameters = 0;     // query parameters of the request line
};

// Bytes of a rejected body that are still read (and dropped) so the client sees the answer.
constexpr size_t kDiscardAllowance = 64u << 20;

}  // namespace

struct HttpServer::Impl {
  struct RequestState {
    Impl* server = nullptr;
    HttpRequest req;
    HttpResponse res;
    MHD_PostProcessor* post = nullptr;
    size_t bytes_in = 0;
    bool rejected = false;    // an error answer is decided; the rest of the body is dropped
    bool answer_now = false;  // answer before the body: none is coming, or far too much
    size_t held = 0;          // bytes of this body counted in server->buffered
    ~RequestState() {
      if (post) MHD_destroy_post_processor(post);
      release();
    }
    void release() {
      if (server && held) server->buffered -= held;
      held = 0;
    }
  };

  HttpLimits limits;
  Callbacks cb;
  MHD_Daemon* daemon = nullptr;
  int listen_fd = -1;
  int bound_port = 0;
  std::atomic<bool> stopping{false};
  std::atomic<size_t> buffered{0};   // body bytes held by requests in progress
  std::atomic<size_t> in_flight{0};  // requests begun and not completed
  std::atomic<size_t> timed_out{0};  // answered 408 by the watchdog

  std::mutex mu;
  std::condition_variable wake;
  bool watchdog_exit = false;
  std::map<MHD_Connection*, ConnectionWatch> connections;
  std::thread watchdog;

  // --- requests -------------------------------------------------------------------------------

  void reject(RequestState& st, int status, const std::string& message) {
    if (st.rejected) return;
    st.rejected = true;
    st.release();
    st.req.body.clear();
    st.req.body.shrink_to_fit();
    st.req.parts.clear();
    render_error(st, status, message);
    st.res.set_header("Connection", "close");
  }

  void render_error(RequestState& st, int status, const std::string& message) {
    st.res = HttpResponse{};
    try {
      cb.on_error(st.req, st.res, status, message);
    } catch (...) {
      st.res.content_type = "text/plain; charset=utf-8";
      st.res.body = "error " + std::to_string(status) + "\n";
    }
    st.res.status = status;
  }

  static MHD_Result collect_header(void* cls, MHD_ValueKind, const char* key, const char* value) {
    static_cast<HttpRequest*>(cls)->headers.emplace(key ? key : "", value ? value : "");
    return MHD_YES;
  }
  static MHD_Result collect_query(void* cls, MHD_ValueKind, const char* key, const char* value) {
    static_cast<HttpRequest*>(cls)->query[key ? key : ""] = value ? value : "";
    return MHD_YES;
  }

  static std::string client_address(MHD_Connection* c) {
    const auto* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!info || !info->client_addr) return "";
    char text[INET6_ADDRSTRLEN] = "";
    const sockaddr* sa = info->client_addr;
    if (sa->sa_family == AF_INET)
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, text, sizeof text);
    else if (sa->sa_family == AF_INET6)
      ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, text,
                  sizeof text);
    return text;
  }

  // A request begins or ends on the connection; returns what was known of its URL and resets
  // it for the next request.
  ConnectionWatch mark(MHD_Connection* c, bool in_request) {
    std::lock_guard lock(mu);
    const auto it = connections.find(c);
    if (it == connections.end()) return {};
    ConnectionWatch before = it->second;
    it->second.in_request = in_request;
    it->second.awaiting_body = false;
    it->second.phase_start = it->second.last_byte = Clock::now();
    it->second.request_started = in_request;
    it->second.bad_url = false;
    it->second.url_parameters = 0;
    return before;
  }

  void expect_body(MHD_Connection* c, bool expected) {
    std::lock_guard lock(mu);
    const auto it = connections.find(c);
    if (it == connections.end()) return;
    it->second.awaiting_body = expected;
    it->second.last_byte = Clock::now();
  }

  // MHD decodes the path and each query key and value through this. Control bytes are kept
  // (refused in begin) and parameters counted, per connection.
  static size_t unescape(void* cls, MHD_Connection* c, char* s) {
    auto& self = *static_cast<Impl*>(cls);
    const size_t n = MHD_http_unescape(s);
    bool control = false;
    for (size_t i = 0; i < n; ++i) {
      const auto byte = static_cast<unsigned char>(s[i]);
      control |= byte < 0x20 || byte == 0x7f;
    }
    if (control) {
      std::lock_guard lock(self.mu);
      const auto it = self.connections.find(c);
      if (it != self.connections.end()) it->second.bad_url = true;
    }
    return n;
  }

  // Sees the request line as soon as MHD has it: from here the request is owed an answer (stop()
  // does not close the connection), its query parameters are counted for begin() to refuse too
  // many with 414, and raw spaces or control bytes (which strict level 0 lets through) flagged.
  static void* log_uri(void* cls, const char* uri, MHD_Connection* c) {
    auto& self = *static_cast<Impl*>(cls);
    const std::string_view raw = uri ? uri : "";
    const size_t query = raw.find('?');
    const size_t parameters =
        query == std::string_view::npos ? 0 : 1 + std::count(raw.begin() + query, raw.end(), '&');
    const bool bad = std::any_of(raw.begin(), raw.end(), [](char ch) {
      const auto byte = static_cast<unsigned char>(ch);
      return byte <= 0x20 || byte == 0x7f;
    });
    std::lock_guard lock(self.mu);
    const auto it = self.connections.find(c);
    if (it != self.connections.end()) {
      it->second.request_started = true;
      it->second.url_parameters = parameters;
      it->second.bad_url |= bad;
    }
    return nullptr;
  }

  // The headers are in: gather the request and apply the rules that need no body.
  void begin(MHD_Connection* c, const char* url, const char* method, const char* version,
             RequestState& st) {
    const ConnectionWatch url_facts = mark(c, true);
    auto& req = st.req;
    req.started = Clock::now();
    req.method = std::strcmp(method, "HEAD") == 0 ? "GET" : method;
    req.path = url ? url : "";
    req.remote_addr = client_address(c);
    MHD_get_connection_values(c, MHD_HEADER_KIND, &collect_header, &req);
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, &collect_query, &req);
    // A decoded NUL would cut the path short ("/metrics%00.png" read as "/metrics"), and a
    // filter in front of us may have judged the whole: refuse rather than guess.
    if (url_facts.bad_url) {
      reject(st, 400, "the URL holds a space or a control character (such as %00)");
      st.answer_now = true;
      return;
    }
    if (url_facts.url_parameters > limits.max_query_parameters) {
      reject(st, 414,
             "too many query parameters (" + std::to_string(url_facts.url_parameters) + "; limit " +
                 std::to_string(limits.max_query_parameters) + ")");
      st.answer_now = true;
      return;
    }
    if (req.header("Host").empty() && version && std::strcmp(version, "HTTP/1.0") != 0) {
      reject(st, 400, "missing Host header");
      st.answer_now = true;
      return;
    }
    check_framing(st);
    if (!st.rejected && cb.early && cb.early(req, st.res)) {
      st.rejected = true;  // answered without looking at the body: drop it
      st.res.set_header("Connection", "close");
    }
    if (st.rejected) return;
    const std::string type = req.header("Content-Type");
    if (type.size() >= 19 && strncasecmp(type.c_str(), "multipart/form-data", 19) == 0) {
      req.multipart = true;
      st.post = MHD_create_post_processor(c, 64 * 1024, &on_part, &st);
      if (!st.post) reject(st, 400, "malformed multipart/form-data (no boundary)");
    }
  }

  // Length and encoding rules, and whether a refusal is answered before the body or after it.
  void check_framing(RequestState& st) {
    const auto& req = st.req;
    if (req.headers.count("Content-Length") > 1) {
      reject(st, 400, "conflicting Content-Length headers");
      st.answer_now = true;  // no length to trust for skipping the body
      return;
    }
    const std::string length = req.header("Content-Length");
    unsigned long long declared = 0;
    if (!length.empty()) {
      char* end = nullptr;
      errno = 0;
      declared = std::strtoull(length.c_str(), &end, 10);
      if (errno != 0 || *end != '\0' || length[0] == '-') {
        reject(st, 400, "invalid Content-Length");
        st.answer_now = true;
        return;
      }
    }
    const std::string encoding = req.header("Content-Encoding");
    if (!encoding.empty() && strcasecmp(encoding.c_str(), "identity") != 0)
      reject(st, 415,
             "compressed request bodies are not accepted (Content-Encoding: " + encoding + ")");
    else if (declared > limits.max_body_bytes)
      reject(st, 413, too_large_message());
    const bool chunked = !req.header("Transfer-Encoding").empty();
    st.answer_now =
        (!chunked && declared == 0) || declared > limits.max_body_bytes + kDiscardAllowance;
  }

  std::string too_large_message() const {
    return "upload too large (limit " + std::to_string(limits.max_body_bytes / (1024 * 1024)) +
           " MB)";
  }

  static MHD_Result on_part(void* cls, MHD_ValueKind, const char* key, const char* filename,
                            const char* content_type, const char*, const char* data, uint64_t off,
                            size_t size) {
    auto& st = *static_cast<RequestState*>(cls);
    auto& parts = st.req.parts;
    const bool same_field = !parts.empty() && parts.back().name == (key ? key : "") &&
                            parts.back().filename == (filename ? filename : "");
    if (off == 0 && !(same_field && parts.back().data.empty())) {
      if (parts.size() >= st.server->limits.max_parts) {
        st.server->reject(st, 413,
                          "too many files: more than " +
                              std::to_string(st.server->limits.max_parts) + " (limit " +
                              std::to_string(st.server->limits.max_parts) + ")");
        return MHD_NO;
      }
      parts.push_back(
          {key ? key : "", filename ? filename : "", content_type ? content_type : "", {}});
    }
    if (size) parts.back().data.append(data, size);
    return MHD_YES;
  }

  // A piece of the body. Returns false when the connection must be dropped.
  bool receive(MHD_Connection* c, RequestState& st, const char* data, size_t size) {
    st.bytes_in += size;
    expect_body(c, true);
    // MHD cannot answer in the middle of a body: drop what follows a refusal and answer at its
    // end, or close the connection when the client keeps sending far past the limit.
    if (st.rejected) return st.bytes_in <= limits.max_body_bytes + kDiscardAllowance;
    if (seconds_since(st.req.started) > limits.body_deadline_s) {
      spdlog::warn("{}: request body not complete after {} s, closing", st.req.remote_addr,
                   limits.body_deadline_s);
      return false;
    }
    if (st.bytes_in > limits.max_body_bytes) {
      reject(st, 413, too_large_message());
      return true;
    }
    // Many uploads at once must not add up to more memory than the server may hold.
    if (buffered.fetch_add(size) + size > limits.max_buffered_bytes) {
      buffered -= size;
      reject(st, 503, "server busy: too many uploads in progress, retry shortly");
      return true;
    }
    st.held += size;
    if (!st.post) {
      st.req.body.append(data, size);
    } else if (MHD_post_process(st.post, data, size) != MHD_YES) {
      reject(st, 400, "malformed multipart/form-data body");
    }
    return true;
  }

  void finish(RequestState& st) {
    if (st.post) {
      const bool complete = MHD_destroy_post_processor(st.post) == MHD_YES;
      st.post = nullptr;
      if (!complete) reject(st, 400, "malformed multipart/form-data body");
    }
    if (st.rejected) return;
    try {
      cb.handle(st.req, st.res);
    } catch (const std::exception& e) {
      spdlog::error("{} {}: {}", st.req.method, st.req.path, e.what());
      render_error(st, 500, "internal error");
    } catch (...) {
      spdlog::error("{} {}: unknown exception", st.req.method, st.req.path);
      render_error(st, 500, "internal error");
    }
  }

  MHD_Result send(MHD_Connection* c, RequestState& st) {
    auto& res = st.res;
    // The body lives in the request state until MHD reports the request completed.
    MHD_Response* response = MHD_create_response_from_buffer(
        res.body.size(), const_cast<char*>(res.body.data()), MHD_RESPMEM_PERSISTENT);
    if (!response) return MHD_NO;
    if (!res.content_type.empty())
      MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, res.content_type.c_str());
    for (const auto& [name, value] : res.headers)
      MHD_add_response_header(response, name.c_str(), value.c_str());
    if (stopping) MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION, "close");
    const MHD_Result queued = MHD_queue_response(c, static_cast<unsigned>(res.status), response);
    MHD_destroy_response(response);
    return queued;
  }

  static MHD_Result on_request(void* cls, MHD_Connection* c, const char* url, const char* method,
                               const char* version, const char* upload_data, size_t* upload_size,
                               void** req_cls) {
    auto& self = *static_cast<Impl*>(cls);
    auto* st = static_cast<RequestState*>(*req_cls);
    if (!st) {
      st = new RequestState;
      st->server = &self;
      *req_cls = st;
      self.in_flight++;
      self.begin(c, url, method, version, *st);
      // MHD skips the body of an early answer and closes the connection, which can reset it
      // before a client still sending reads the answer: early only when that cannot happen.
      if (st->rejected && st->answer_now) return self.send(c, *st);
      self.expect_body(c, !st->answer_now);
      return MHD_YES;
    }
    self.expect_body(c, false);
    if (*upload_size > 0) {
      const size_t size = *upload_size;
      *upload_size = 0;
      return self.receive(c, *st, upload_data, size) ? MHD_YES : MHD_NO;
    }
    self.finish(*st);
    return self.send(c, *st);
  }

  static void on_completed(void* cls, MHD_Connection* c, void** req_cls,
                           MHD_RequestTerminationCode code) {
    auto& self = *static_cast<Impl*>(cls);
    std::unique_ptr<RequestState> st(static_cast<RequestState*>(*req_cls));
    *req_cls = nullptr;
    if (st) self.in_flight--;
    self.mark(c, false);
    if (st && code == MHD_REQUEST_TERMINATED_COMPLETED_OK && self.cb.observe) {
      try {
        self.cb.observe(st->req, st->res, seconds_since(st->req.started), st->bytes_in);
      } catch (const std::exception& e) {
        spdlog::error("request observer: {}", e.what());
      }
    }
  }

  static void on_connection(void* cls, MHD_Connection* c, void**,
                            MHD_ConnectionNotificationCode code) {
    auto& self = *static_cast<Impl*>(cls);
    std::lock_guard lock(self.mu);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
      const auto* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
      self.connections[c].fd = info ? info->connect_fd : -1;
    } else {
      self.connections.erase(c);
      self.wake.notify_all();  // stop() waits for the last connection
    }
  }

  static void on_log(void*, const char* fmt, va_list ap) {
    char line[512];
    std::vsnprintf(line, sizeof line, fmt, ap);
    std::string text(line);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    spdlog::debug("http: {}", text);
  }

  // --- connections ----------------------------------------------------------------------------

  // Closes connections whose next request's headers are overdue (slowloris), and on stop every
  // connection that is not in the middle of a request.
  void watch_connections() {
    std::unique_lock lock(mu);
    while (!watchdog_exit) {
      wake.wait_for(lock, std::chrono::milliseconds(250));
      const auto now = Clock::now();
      for (auto& [connection, w] : connections) {
        if (w.closing || w.fd < 0) continue;
        // A body that stopped coming (Expect: 100-continue and nothing after it, or a client
        // gone quiet): MHD would only close the connection; the client gets 408 first. MHD's
        // thread is waiting to read, so nothing else is written on the socket meanwhile.
        if (w.in_request && w.awaiting_body &&
            now - w.last_byte > std::chrono::seconds(limits.idle_timeout_s)) {
          send_raw_error(w.fd, 408, "Request Timeout", "the request body did not arrive in time");
          timed_out++;
          spdlog::info("request body stalled for {} s: answered 408 and closed",
                       limits.idle_timeout_s);
          ::shutdown(w.fd, SHUT_RDWR);
          w.closing = true;
          continue;
        }
        if (w.in_request) continue;
        const bool overdue = now - w.phase_start > std::chrono::seconds(limits.header_deadline_s);
        // On stop, an idle connection is closed, but not one whose request has arrived and is
        // not parsed yet (its thread is late on a busy machine): that request gets its answer.
        if (overdue || (stopping && !w.request_started && !input_waiting(w.fd))) {
          ::shutdown(w.fd, SHUT_RDWR);  // the connection's thread sees EOF and closes it
          w.closing = true;
        }
      }
    }
  }

  static bool input_waiting(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
  }

  // A whole response written on a socket MHD is not writing to (see the callers).
  static void send_raw_error(int fd, int status, const char* reason, const std::string& message) {
    const std::string body = json_error(message, status).dump();
    const std::string reply =
        "HTTP/1.1 " + std::to_string(status) + " " + reason +
        "\r\nContent-Type: application/json\r\n" + (status == 503 ? "Retry-After: 1\r\n" : "") +
        "Connection: close\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    [[maybe_unused]] auto n = ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
  }

  // Connections that finished the TCP handshake but were never taken from the backlog: each gets
  // 503, then a lingering close (what the client still sends is read until it closes, so that
  // closing with unread data does not reset the connection before the answer is read). Bounded:
  // accepting stops after 5 s, lingering after 3 s more, for all of them at once.
  static void answer_backlog_with_503(int fd) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    const auto accept_until = Clock::now() + std::chrono::seconds(5);
    std::vector<pollfd> lingering;
    for (int client;
         Clock::now() < accept_until && (client = ::accept(fd, nullptr, nullptr)) >= 0;) {
      send_raw_error(client, 503, "Service Unavailable", "server is shutting down");
      ::shutdown(client, SHUT_WR);
      lingering.push_back({client, POLLIN, 0});
    }
    const auto linger_until = Clock::now() + std::chrono::seconds(3);
    char sink[65536];
    while (!lingering.empty() && Clock::now() < linger_until) {
      if (::poll(lingering.data(), lingering.size(), 100) <= 0) continue;
      for (auto& p : lingering) {
        if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t n = ::recv(p.fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
          ::close(p.fd);
          p.fd = -1;
        }
      }
      lingering.erase(std::remove_if(lingering.begin(), lingering.end(),
                                     [](const pollfd& p) { return p.fd < 0; }),
                      lingering.end());
    }
    for (const auto& p : lingering) ::close(p.fd);
  }
};

HttpServer::HttpServer(HttpLimits limits, Callbacks callbacks) : impl_(std::make_unique<Impl>()) {
  impl_->limits = limits;
  impl_->cb = std::move(callbacks);
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::port() const { return impl_->bound_port; }

namespace {

// Each connection holds a socket; the default soft limit of 1024 would cap them below our limit.
void raise_open_file_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, 65536);
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

int listen_on(const std::string& host, int port) {
  const std::string where = host + ":" + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found))
    throw std::runtime_error("cannot listen on " + where + ": " + ::gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(found, &::freeaddrinfo);
  const int fd = ::socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, found->ai_protocol);
  if (fd < 0) throw std::runtime_error("cannot listen on " + where + ": " + std::strerror(errno));
  // SO_REUSEADDR only: restarting over TIME_WAIT works, a second live server does not.
  const int yes = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  if (::bind(fd, found->ai_addr, found->ai_addrlen) != 0 || ::listen(fd, 511) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::runtime_error("cannot listen on " + where + ": " +
                             (err == EADDRINUSE ? std::string("address already in use")
                                                : std::string(std::strerror(err))));
  }
  return fd;
}

int bound_port_of(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

}  // namespace

void HttpServer::start(const std::string& host, int port) {
  auto& s = *impl_;
  raise_open_file_limit();
  s.listen_fd = listen_on(host, port);
  s.bound_port = bound_port_of(s.listen_fd);
  // A thread per connection: handlers may block on inference, and an idle or slow connection
  // costs one sleeping thread, never a place another client needs.
  const unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                         MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
  s.daemon = MHD_start_daemon(
      flags, 0, nullptr, nullptr, &Impl::on_request, &s,  //
      MHD_OPTION_EXTERNAL_LOGGER, &Impl::on_log, &s,      // first, so that it sees everything
      MHD_OPTION_LISTEN_SOCKET, s.listen_fd,              //
      MHD_OPTION_CONNECTION_LIMIT, s.limits.max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
      s.limits.max_connections_per_ip,
      // Our watchdog answers a stalled body with 408 at idle_timeout_s; MHD closes later.
      MHD_OPTION_CONNECTION_TIMEOUT, s.limits.idle_timeout_s + 5,
      // Headers and query parameters live in this per-connection pool (touched only as used);
      // past it MHD closes without an answer. 256 KB holds about 4,000 parameters, which are
      // then answered 414.
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, size_t{256 * 1024}, MHD_OPTION_UNESCAPE_CALLBACK,
      &Impl::unescape, &s, MHD_OPTION_URI_LOG_CALLBACK, &Impl::log_uri, &s,
      // Level 0: MHD's own answer to a missing Host repeats its header block; begin() refuses
      // it instead, logged and counted. Malformed header lines are still refused by MHD.
      MHD_OPTION_STRICT_FOR_CLIENT, 0, MHD_OPTION_NOTIFY_COMPLETED, &Impl::on_completed, &s,
      MHD_OPTION_NOTIFY_CONNECTION, &Impl::on_connection, &s, MHD_OPTION_END);
  if (!s.daemon) {
    ::close(s.listen_fd);
    s.listen_fd = -1;
    throw std::runtime_error("cannot start the HTTP server on " + host + ":" +
                             std::to_string(port));
  }
  s.watchdog = std::thread([&s] { s.watch_connections(); });
}

HttpServer::Stats HttpServer::stats() const {
  const auto& s = *impl_;
  Stats stats;
  {
    std::lock_guard lock(impl_->mu);
    stats.connections_open = s.connections.size();
  }
  stats.requests_in_flight = s.in_flight;
  stats.requests_timed_out = s.timed_out;
  stats.body_bytes_held = s.buffered;
  return stats;
}

void HttpServer::stop(const std::function<void()>& drain_expired) {
  auto& s = *impl_;
  if (!s.daemon) return;
  s.stopping = true;
  const int fd = MHD_quiesce_daemon(s.daemon);
  if (fd >= 0) {
    Impl::answer_backlog_with_503(fd);
    ::close(fd);
  }
  // Idle connections are closed by the watchdog; the others end as their requests are answered.
  std::unique_lock lock(s.mu);
  s.wake.notify_all();
  const auto drained = [&] { return s.connections.empty(); };
  if (!s.wake.wait_for(lock, std::chrono::seconds(s.limits.drain_timeout_s), drained) &&
      drain_expired) {
    lock.unlock();
    drain_expired();
    lock.lock();
    // The handlers now answer quickly (503); a field already being segmented finishes first.
    s.wake.wait_for(lock, std::chrono::seconds(30), drained);
  }
  lock.unlock();
  MHD_stop_daemon(s.daemon);
  s.daemon = nullptr;
  {
    std::lock_guard lock(s.mu);
    s.watchdog_exit = true;
  }
  s.wake.notify_all();
  if (s.watchdog.joinable()) s.watchdog.join();
}

}  // namespace malaria
