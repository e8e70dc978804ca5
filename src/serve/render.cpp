#include "serve/render.h"

#include "report/slide_report.h"
#include "serve/http_util.h"
#include "util/text.h"

namespace malaria {

std::string json_text(const nlohmann::json& body) {
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void send_json(HttpResponse& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.content_type = "application/json";
  res.body = json_text(body);
  res.set_header("Cache-Control", "no-store");
}

const std::string& page_csp() {
  static const std::string csp =
      "default-src 'self'; img-src 'self' data: blob:; style-src 'self' " +
      report_style_csp_source() +
      "; script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
      "frame-ancestors 'none'";
  return csp;
}

void send_page(HttpResponse& res, int status, const std::string& html) {
  res.status = status;
  res.content_type = "text/html; charset=utf-8";
  res.body = html;
  res.set_header("Content-Security-Policy", page_csp());
  res.set_header("Cache-Control", "no-store");
}

std::string result_page(const std::string& body_html) {
  return "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
         "<title>Malaria cell classifier: result</title><link rel=\"stylesheet\" "
         "href=\"/style.css\"></head><body>"
         "<header><h1>Malaria cell classifier</h1></header>"
         "<p class=\"notice\" role=\"note\"><strong>Assistive tool.</strong> This software "
         "assists and does not replace a trained microscopist.</p><main><section>" +
         body_html +
         "<p><a href=\"/\">Classify another image</a></p></section></main></body></html>";
}

bool is_api_route(const std::string& path) { return path.rfind("/api/", 0) == 0; }

void render_error(const HttpRequest& req, HttpResponse& res, int status,
                  const std::string& message) {
  const std::string text = printable(message, 400);
  const bool wants_html = req.header("Accept").find("text/html") != std::string::npos;
  if (is_api_route(req.path) || !wants_html)
    return send_json(res, status, json_error(text, status));
  send_page(res, status,
            result_page("<h2>" + std::to_string(status) + "</h2><p class=\"error\">" +
                        html_escape(text) + "</p>"));
}

}  // namespace malaria
