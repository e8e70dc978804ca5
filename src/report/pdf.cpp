#include "report/pdf.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <thread>
#include <vector>

#include "util/files.h"

extern char** environ;

namespace malaria {

namespace fs = std::filesystem;

std::string html_to_pdf(const std::string& html, int timeout_s) {
  // A browser per PDF is heavy: two at once at most, the others are told to retry.
  static std::atomic<int> running{0};
  struct Slot {
    Slot() {
      if (++running > 2) {
        --running;
        throw std::runtime_error("busy printing other PDFs, retry shortly");
      }
    }
    ~Slot() { --running; }
  } slot;
  char pattern[] = "/tmp/malaria-pdf-XXXXXX";
  if (!mkdtemp(pattern)) throw std::runtime_error("cannot create a folder for the PDF");
  const fs::path dir = pattern;
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{dir};
  write_text_atomic((dir / "report.html").string(), html);
  const std::string out = (dir / "report.pdf").string();
  std::vector<std::string> args = {"chromium",
                                   "--headless",
                                   "--no-sandbox",
                                   "--disable-gpu",
                                   "--no-pdf-header-footer",
                                   "--user-data-dir=" + (dir / "profile").string(),
                                   "--print-to-pdf=" + out,
                                   "file://" + (dir / "report.html").string()};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, (dir / "chromium.log").c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  // Its own process group, so that a timeout kills the renderers too, not only the parent.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attributes, 0);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, "chromium", &actions, &attributes, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (rc != 0)
    throw std::runtime_error("cannot start chromium to print the PDF (is it installed?)");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      throw std::runtime_error("chromium took longer than " + std::to_string(timeout_s) +
                               " s to print the PDF");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polling a child, not a test
  }
  kill(-pid, SIGKILL);  // helpers the browser left behind
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !fs::exists(out))
    throw std::runtime_error("chromium could not print the PDF");
  std::string pdf = read_regular_file(out, 64u << 20);
  if (pdf.rfind("%PDF-", 0) != 0)
    throw std::runtime_error("chromium wrote something that is not a PDF");
  return pdf;
}

}  // namespace malaria
