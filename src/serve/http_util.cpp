#include "serve/http_util.h"

#include <strings.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "model/model_info.h"
#include "util/files.h"

namespace malaria {

nlohmann::json json_error(const std::string& message, int status) {
  return {{"error", message}, {"status", status}};
}

std::string fnv1a_hex(std::string_view bytes) {
  uint64_t h = 1469598103934665603ull;
  for (char c : bytes) h = (h ^ uint8_t(c)) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  unsigned diff = a.size() != b.size();
  for (size_t i = 0; i < a.size(); ++i) diff |= uint8_t(a[i]) ^ uint8_t(i < b.size() ? b[i] : 0);
  return diff == 0;
}

std::string mime_for_format(const std::string& format) {
  if (format == "png") return "image/png";
  if (format == "jpeg") return "image/jpeg";
  if (format == "bmp") return "image/bmp";
  if (format == "tiff") return "image/tiff";
  return "application/octet-stream";
}

std::string bearer_token(const std::string& authorization) {
  // The scheme name is case-insensitive (RFC 7235); the token is not.
  if (authorization.size() < 7 || strncasecmp(authorization.c_str(), "Bearer ", 7) != 0) return {};
  const size_t start = authorization.find_first_not_of(' ', 7);
  return start == std::string::npos ? std::string() : authorization.substr(start);
}

std::string model_file_id(const std::string& arch, const std::string& path) {
  return arch + "-" + fnv1a_hex(read_regular_file(path, kMaxModelFileBytes)).substr(0, 12);
}

}  // namespace malaria
