// What the server sends back: JSON text, HTML pages and error bodies in the route's language.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "serve/http_server.h"

namespace malaria {

// The page's policy; its styles are its own files, plus the slide report's style block (see
// report_style_csp_source).
const std::string& page_csp();
// Swagger UI sets inline styles on its elements.
inline constexpr const char* kDocsCsp =
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src "
    "'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

// Serialises without throwing: bytes that are not UTF-8 become U+FFFD.
std::string json_text(const nlohmann::json& body);
void send_json(HttpResponse& res, int status, const nlohmann::json& body);
void send_page(HttpResponse& res, int status, const std::string& html);
// The page around a form result or an error, in the look of the upload page.
std::string result_page(const std::string& body_html);
// JSON on API routes and for clients that do not accept HTML; a readable page otherwise.
void render_error(const HttpRequest& req, HttpResponse& res, int status,
                  const std::string& message);
bool is_api_route(const std::string& path);

}  // namespace malaria
