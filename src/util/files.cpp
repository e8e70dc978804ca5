#include "util/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

namespace malaria {

namespace fs = std::filesystem;

void write_file_atomic(const std::string& path,
                       const std::function<void(const std::string&)>& writer) {
  const fs::path target(path);
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  try {
    writer(tmp);
    fs::rename(tmp, target);
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
}

void write_text_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    out << text;
    out.flush();
    if (!out) throw std::runtime_error("cannot write " + tmp);
  });
}

std::string read_text(const std::string& path, size_t max_bytes) {
  return read_regular_file(path, max_bytes);
}

std::string read_regular_file(const std::string& path, size_t max_bytes) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    throw FileError(path + ": cannot open (" +
                    (errno == ELOOP ? std::string("symbolic link loop") : std::strerror(errno)) +
                    ")");
  std::unique_ptr<int, void (*)(int*)> guard(new int(fd), [](int* f) {
    ::close(*f);
    delete f;
  });
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw FileError(path + ": cannot read (" + std::strerror(errno) + ")");
  if (!S_ISREG(st.st_mode)) throw FileError(path + ": not a regular file");
  if (static_cast<size_t>(st.st_size) > max_bytes)
    throw FileError(path + ": file of " + std::to_string(st.st_size) +
                    " bytes is over the limit of " + std::to_string(max_bytes));
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw FileError(path + ": cannot read (" + std::strerror(errno) + ")");
    if (n == 0) break;  // the file shrank while we read it
    got += static_cast<size_t>(n);
  }
  bytes.resize(got);
  return bytes;
}

std::string now_iso8601() { return iso8601_from_now(0); }

std::string iso8601_from_now(double days) {
  if (!(std::abs(days) <= 1e6)) throw std::invalid_argument("a time more than 1e6 days away");
  const auto when = std::chrono::system_clock::now() +
                    std::chrono::seconds(static_cast<long long>(std::llround(days * 86400)));
  const std::time_t t = std::chrono::system_clock::to_time_t(when);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace malaria
