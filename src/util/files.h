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
std::string read_text(const std::string& path);

class FileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// The bytes of a regular file of at most max_bytes. A FIFO, device, folder, symlink loop or
// larger file is a FileError naming the path; nothing blocks.
std::string read_regular_file(const std::string& path, size_t max_bytes);
std::string now_iso8601();

}  // namespace malaria
