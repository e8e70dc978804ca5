// Text encodings shared by the report and the server.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace malaria {

std::string html_escape(std::string_view text);
std::string base64_encode(std::string_view bytes);

// Replaces every byte that is not part of a well-formed UTF-8 sequence with U+FFFD, so any
// user-supplied string (file name, URL path) can go into JSON, HTML or a log.
std::string to_valid_utf8(std::string_view text);
// to_valid_utf8, with control characters shown as '?' and the text cut to max_chars bytes: safe
// for one log line or an error message.
std::string printable(std::string_view text, size_t max_chars = 200);

// One CSV field (RFC 4180): quoted when it holds a comma, quote, CR or LF; quotes doubled.
std::string csv_field(std::string_view text);
// Splits one CSV line written with csv_field.
std::vector<std::string> parse_csv_line(std::string_view line);
// "a; b; c"
std::string join(const std::vector<std::string>& parts, std::string_view separator);

}  // namespace malaria
