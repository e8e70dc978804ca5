// Small helpers for the HTTP layer: escaping, encoding, JSON error bodies.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "util/text.h"

namespace malaria {

nlohmann::json json_error(const std::string& message, int status);
// FNV-1a 64-bit digest as 16 hex digits: a stable id for a model file's bytes.
std::string fnv1a_hex(std::string_view bytes);
// ARCH-<12 hex digits of the file's FNV-1a>: the id results and records name a model file by.
std::string model_file_id(const std::string& arch, const std::string& path);
// Compares without an early exit, so the time taken does not reveal how much of a key matched.
bool constant_time_equal(std::string_view a, std::string_view b);
std::string mime_for_format(const std::string& format);
// The token of an "Authorization: Bearer TOKEN" header, or "" for any other header.
std::string bearer_token(const std::string& authorization);

}  // namespace malaria
