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
#include <string>
#include <thread>
#include <vector>

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

}  // namespace testing_support
