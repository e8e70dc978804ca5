// Starts the real `malaria serve` binary on a free loopback port and stops it at the end.
#pragma once

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "test_helpers.h"

namespace testing_support {

inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

class ServerProcess {
 public:
  explicit ServerProcess(std::vector<std::string> extra_args) : port_(free_port()) {
    // A server may close a connection it refused while a client is still sending: that is
    // EPIPE for the client, not a reason for the test process to die.
    ::signal(SIGPIPE, SIG_IGN);
    std::vector<std::string> args = {
        MALARIA_BIN, "--threads",        "2",      "serve",
        "--model",   MALARIA_TEST_MODEL, "--port", std::to_string(port_)};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      const std::string log = "/tmp/malaria-server-test-" + std::to_string(::getpid()) + ".log";
      freopen(log.c_str(), "w", stderr);
      freopen(log.c_str(), "a", stdout);
      ::execv(MALARIA_BIN, argv.data());
      ::_exit(127);
    }
    httplib::Client probe("127.0.0.1", port_);
    for (int i = 0; i < 300; ++i) {
      if (auto r = probe.Get("/ready"); r && r->status == 200) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    throw std::runtime_error("server did not become ready");
  }
  ~ServerProcess() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGTERM);
      wait_exit();
    }
  }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(30);
    return c;
  }
  // Exit status after SIGTERM, or -1.
  int wait_exit() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  int port_;
  pid_t pid_ = -1;
  bool exited_ = false;
};

// The value of one sample of the server's /metrics ("name{labels}" exactly as rendered), or -1.
inline double metric(int port, const std::string& sample) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(30);
  const auto res = c.Get("/metrics");
  if (!res || res->status != 200) return -1;
  const std::string& text = res->body;
  for (size_t at = text.find(sample + ' '); at != std::string::npos;
       at = text.find(sample + ' ', at + 1))
    if (at == 0 || text[at - 1] == '\n') return std::stod(text.substr(at + sample.size() + 1));
  return -1;
}

// Waits until `state()` holds, polling; the generous limit only catches a hang.
template <typename State>
bool wait_until(State state, std::chrono::seconds limit = std::chrono::seconds(120)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (state()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling, not a wait for time
  }
  return false;
}

// Waits until the metric sample satisfies `ready`.
template <typename Predicate>
bool wait_for_metric(int port, const std::string& sample, Predicate ready,
                     std::chrono::seconds limit = std::chrono::seconds(120)) {
  return wait_until([&] { return ready(metric(port, sample)); }, limit);
}

// Runs `malaria serve --model MODEL --port PORT`, expected to fail at start; returns its exit
// status and everything it printed.
inline std::pair<int, std::string> serve_and_capture(const std::string& model, int port) {
  const std::string cmd = std::string(MALARIA_BIN) + " serve --model " + model + " --port " +
                          std::to_string(port) + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[256];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  return {WEXITSTATUS(status), out};
}

// A test suite sharing one server process started with Options::args(); its tests fail (CI) or
// skip when the shared images are missing.
template <typename Options>
class SharedServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::filesystem::is_directory(data_root() + "/cell_images_128"))
      server_ = new ServerProcess(Options::args());
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { MALARIA_REQUIRE_DIR(data_root() + "/cell_images_128"); }
  static inline ServerProcess* server_ = nullptr;
};

}  // namespace testing_support
