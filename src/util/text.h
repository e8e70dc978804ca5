// Text encodings shared by the report and the server.
#pragma once

#include <string>
#include <string_view>

namespace malaria {

std::string html_escape(std::string_view text);
std::string base64_encode(std::string_view bytes);

}  // namespace malaria
