// File helpers: atomic writes so that an interrupted program never leaves a half-written file.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>

namespace malaria {

// Writes through `writer` into PATH.tmp-PID, flushes, then renames over PATH.
void write_file_atomic(const std::string& path,
                       const std::function<void(const std::string&)>& writer);
void write_text_atomic(const std::string& path, const std::string& text);

class FileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// A text file given by a user or written by a run (annotations, splits, configs): the rules of
// read_regular_file with a cap far above any such file.
inline constexpr size_t kMaxTextFileBytes = 256u << 20;
std::string read_text(const std::string& path, size_t max_bytes = kMaxTextFileBytes);
// The bytes of a regular file of at most max_bytes. A FIFO, device, folder, symlink loop or
// larger file is a FileError naming the path; nothing blocks.
std::string read_regular_file(const std::string& path, size_t max_bytes);
std::string now_iso8601();
// UTC, YYYY-MM-DDTHH:MM:SSZ (so that text order is time order), `days` from now (negative: ago;
// at most 1e6 days either way, else std::invalid_argument).
std::string iso8601_from_now(double days);

}  // namespace malaria
