// File helpers: atomic writes so that an interrupted program never leaves a half-written file.
#pragma once

#include <functional>
#include <string>

namespace malaria {

// Writes through `writer` into PATH.tmp-PID, flushes, then renames over PATH.
void write_file_atomic(const std::string& path,
                       const std::function<void(const std::string&)>& writer);
void write_text_atomic(const std::string& path, const std::string& text);
std::string read_text(const std::string& path);
std::string now_iso8601();

}  // namespace malaria
