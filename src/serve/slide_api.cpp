#include "serve/slide_api.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <opencv2/imgcodecs.hpp>

#include "report/pdf.h"
#include "report/slide_report.h"
#include "serve/http_util.h"
#include "serve/render.h"
#include "util/files.h"
#include "util/text.h"

namespace malaria {

using json = nlohmann::json;

namespace {

// JSON only, declared so: a form or text/plain body (what another web page can send without a
// CORS preflight) is refused.
json parse_body(const HttpRequest& req) {
  if (req.multipart || req.header("Content-Type").rfind("application/json", 0) != 0)
    throw StoreError(415, "send JSON (Content-Type: application/json)");
  json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded()) throw StoreError(400, "the body is not valid JSON");
  if (!body.is_object()) throw StoreError(400, "the body must be a JSON object");
  return body;
}

size_t query_number(const HttpRequest& req, const std::string& name, size_t fallback, size_t max) {
  const auto it = req.query.find(name);
  if (it == req.query.end()) return fallback;
  size_t value = 0;
  const char* end = it->second.data() + it->second.size();
  const auto parsed = std::from_chars(it->second.data(), end, value);
  if (parsed.ec != std::errc() || parsed.ptr != end || value > max)
    throw StoreError(400, "'" + name + "' must be a whole number up to " + std::to_string(max));
  return value;
}

bool is_loopback_request(const HttpRequest& req) {
  const std::string& peer = req.remote_addr;
  const bool local_peer =
      peer.rfind("127.", 0) == 0 || peer == "::1" || peer.rfind("::ffff:127.", 0) == 0;
  std::string host = req.header("Host");
  if (!host.empty() && host.front() == '[')
    host = host.substr(0, host.find(']') + 1);
  else
    host = host.substr(0, host.find(':'));
  return local_peer && (host == "127.0.0.1" || host == "localhost" || host == "[::1]");
}

std::string query_text(const HttpRequest& req, const std::string& name) {
  const auto it = req.query.find(name);
  return it == req.query.end() ? "" : it->second;
}

std::string string_field(const json& body, const char* key) {
  if (!body.contains(key) || body[key].is_null()) return "";
  if (!body[key].is_string()) throw StoreError(400, std::string("'") + key + "' must be a string");
  return body[key].get<std::string>();
}

// "valid_days": how long a new token works (absent or 0: no expiry; the store checks the range).
double valid_days(const json& body) {
  if (!body.contains("valid_days") || body["valid_days"].is_null()) return 0;
  if (!body["valid_days"].is_number()) throw StoreError(400, "'valid_days' must be a number");
  return body["valid_days"].get<double>();
}

}  // namespace

SlideApi::SlideApi(SlideStore& store, SlideApiOptions options, FieldScreener screen,
                   CellExplainer explain, HttpServer::ErrorRenderer on_error)
    : store_(store),
      opt_(std::move(options)),
      screen_(std::move(screen)),
      explain_(std::move(explain)),
      on_error_(std::move(on_error)) {}

std::optional<User> SlideApi::user_of(const HttpRequest& req) {
  const std::string token = bearer_token(req.header("Authorization"));
  if (!opt_.api_key.empty() && !token.empty() && constant_time_equal(token, opt_.api_key))
    return User{"api-key", "api-key", kRoleAdmin, {}, "", ""};
  if (token.rfind("mal_", 0) == 0) return store_.authenticate(token);
  // The single local user exists only for a caller on this machine that names it by a loopback
  // host (not a DNS name that could be rebound to it), while no user and no key are set up.
  if (opt_.api_key.empty() && is_loopback_request(req) && store_.user_count() == 0)
    return User{"local", "local", kRoleAdmin, {}, "", ""};
  return std::nullopt;
}

Router::ParamHandler SlideApi::guarded(Handler handler) {
  return [this, handler = std::move(handler)](const HttpRequest& req, HttpResponse& res,
                                              const PathParams& params) {
    try {
      const std::optional<User> user = user_of(req);
      if (!user) {
        res.set_header("WWW-Authenticate", "Bearer");
        return on_error_(req, res, 401, "sign in: send Authorization: Bearer TOKEN");
      }
      handler(req, res, params, *user);
    } catch (const StoreError& e) {
      res = HttpResponse{};
      if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer error=\"invalid_token\"");
      on_error_(req, res, e.status, e.what());
    } catch (const SqlUnavailable& e) {
      spdlog::error("records: {}", e.what());
      res = HttpResponse{};
      on_error_(req, res, 503, "the record database is unavailable, retry shortly");
    }
  };
}

void SlideApi::add_routes(Router& router) {
  add_slide_routes(router);
  add_review_routes(router);
  add_user_routes(router);
}

void SlideApi::add_slide_routes(Router& router) {
  router.add("POST", "/api/v1/slides", guarded([this](auto& req, auto& res, auto&, auto& by) {
               create_slide(req, res, by);
             }));
  router.add("GET", "/api/v1/slides",
             guarded([this](auto& req, auto& res, auto&, auto& by) { list_slides(req, res, by); }));
  router.add("GET", "/api/v1/slides/{id}", guarded([this](auto& req, auto& res, auto& p, auto& by) {
               get_slide(req, res, p.at("id"), by);
             }));
  router.add("POST", "/api/v1/slides/{id}/fields",
             guarded([this](auto& req, auto& res, auto& p, auto& by) {
               add_fields(req, res, p.at("id"), by);
             }));
}

void SlideApi::add_review_routes(Router& router) {
  router.add("POST", "/api/v1/cells/{id}/review",
             guarded([this](auto& req, auto& res, auto& p, auto& by) {
               review(req, res, p.at("id"), by);
             }));
  router.add("GET", "/api/v1/cells/{id}/explanation",
             guarded([this](auto&, auto& res, auto& p, auto& by) {
               const auto [cell, field_id] = store_.cell(p.at("id"), by);
               res.content_type = "image/png";
               res.set_header("Cache-Control", "private, max-age=3600");
               res.body = explain_(store_.field_image(field_id, by).second, cell);
             }));
  router.add("POST", "/api/v1/slides/{id}/sign",
             guarded([this](auto&, auto& res, auto& p, auto& by) { sign(res, p.at("id"), by); }));
  router.add("GET", "/api/v1/slides/{id}/audit",
             guarded([this](auto&, auto& res, auto& p, auto& by) {
               json events = json::array();
               for (const auto& e : store_.audit(p.at("id"), by)) events.push_back(e.to_json());
               send_json(res, 200, {{"slide_id", p.at("id")}, {"events", events}});
             }));
  router.add("GET", "/api/v1/slides/{id}/report",
             guarded([this](auto& req, auto& res, auto& p, auto& by) {
               report(req, res, p.at("id"), by);
             }));
  router.add("GET", "/api/v1/slides/{id}/annotations.csv",
             guarded([this](auto&, auto& res, auto& p, auto& by) {
               const Slide slide = store_.slide(p.at("id"), by);
               // Training data are what a reviewer signed, not the model's own calls.
               if (slide.status != "signed")
                 throw StoreError(409, "sign the slide first: corrections come from signed slides");
               res.content_type = "text/csv; charset=utf-8";
               res.set_header("Content-Disposition",
                              "attachment; filename=\"" + slide.id + "-annotations.csv\"");
               res.body = slide_annotations_csv(slide, store_.fields(slide.id, by));
             }));
  router.add("GET", "/api/v1/fields/{id}/image",
             guarded([this](auto& req, auto& res, auto& p, auto& by) {
               auto [format, bytes] = store_.field_image(p.at("id"), by);
               res.set_header("Cache-Control", "private, max-age=3600");
               // ?format=jpeg: a copy browsers can show (they cannot show TIFF).
               if (query_text(req, "format") == "jpeg" && format != "jpeg") {
                 const cv::Mat image =
                     cv::imdecode(std::vector<uchar>(bytes.begin(), bytes.end()), cv::IMREAD_COLOR);
                 if (image.empty()) throw StoreError(422, "the kept image cannot be decoded");
                 std::vector<uchar> jpeg;
                 cv::imencode(".jpg", image, jpeg, {cv::IMWRITE_JPEG_QUALITY, 92});
                 bytes.assign(jpeg.begin(), jpeg.end());
                 format = "jpeg";
               }
               res.content_type = mime_for_format(format);
               res.body = std::move(bytes);
             }));
}

void SlideApi::add_user_routes(Router& router) {
  router.add("GET", "/api/v1/me", guarded([](auto&, auto& res, auto&, auto& by) {
               json sites = by.sites;
               send_json(res, 200,
                         {{"records", true},
                          {"name", by.name},
                          {"role", by.role},
                          {"sites", sites},
                          {"may_review", by.may_review()},
                          {"token_expires_at",
                           by.expires_at.empty() ? json(nullptr) : json(by.expires_at)}});
             }));
  router.add("GET", "/api/v1/users", guarded([this](auto&, auto& res, auto&, auto& by) {
               if (!by.manages_every_site())
                 throw StoreError(403, "only an admin of every site lists users");
               json users = json::array();
               for (const auto& u : store_.users())
                 users.push_back(
                     {{"name", u.name},
                      {"role", u.role},
                      {"sites", u.sites},
                      {"created_at", u.created_at},
                      {"expires_at", u.expires_at.empty() ? json(nullptr) : json(u.expires_at)}});
               send_json(res, 200, {{"users", users}});
             }));
  router.add("POST", "/api/v1/users",
             guarded([this](auto& req, auto& res, auto&, auto& by) { add_user(req, res, by); }));
  router.add("POST", "/api/v1/users/{name}/token",
             guarded([this](auto& req, auto& res, auto& p, auto& by) {
               if (!by.manages_every_site())
                 throw StoreError(403, "only an admin of every site issues tokens");
               const double days = valid_days(parse_body(req));
               const std::string token = store_.rotate_token(p.at("name"), by.name, days);
               send_json(res, 201, {{"name", p.at("name")}, {"token", token}});
             }));
  // Events that belong to no slide: users added, granted sites, given a new token or removed;
  // purges.
  router.add("GET", "/api/v1/audit", guarded([this](auto&, auto& res, auto&, auto& by) {
               if (!by.manages_every_site())
                 throw StoreError(403,
                                  "only an admin of every site reads the administrative audit");
               json events = json::array();
               for (const auto& e : store_.admin_audit()) events.push_back(e.to_json());
               send_json(res, 200, {{"events", events}});
             }));
}

void SlideApi::sign(HttpResponse& res, const std::string& id, const User& by) {
  const Slide slide = store_.sign_slide(id, by);  // refused while flagged cells are unreviewed
  send_json(res, 200, slide_record_json(slide, store_.fields(slide.id, by)));
}

// The token is shown once, in this answer; only its hash is kept.
void SlideApi::add_user(const HttpRequest& req, HttpResponse& res, const User& by) {
  if (!by.manages_every_site()) throw StoreError(403, "only an admin of every site adds users");
  const json body = parse_body(req);
  std::vector<std::string> sites;
  if (body.contains("sites")) {
    if (!body["sites"].is_array()) throw StoreError(400, "'sites' must be a list");
    for (const auto& site : body["sites"]) {
      if (!site.is_string()) throw StoreError(400, "'sites' must be strings");
      sites.push_back(site.get<std::string>());
    }
  }
  const std::string name = string_field(body, "name"), role = string_field(body, "role");
  const std::string token = store_.add_user(name, role, sites, by.name, valid_days(body));
  send_json(res, 201, {{"name", name}, {"role", role}, {"sites", sites}, {"token", token}});
}

void SlideApi::create_slide(const HttpRequest& req, HttpResponse& res, const User& by) {
  const std::string key = req.header("Idempotency-Key");
  if (key.size() > 200 || printable(key, 200) != key)
    throw StoreError(400, "Idempotency-Key must be at most 200 printable characters");
  const Slide slide = store_.create_slide(SlideInfo::from_json(parse_body(req)), by, key);
  res.set_header("Location", "/api/v1/slides/" + slide.id);
  send_json(res, 201, slide.to_json());
}

void SlideApi::list_slides(const HttpRequest& req, HttpResponse& res, const User& by) {
  SlideFilter filter;
  filter.status = query_text(req, "status");
  filter.site = query_text(req, "site");
  filter.from = query_text(req, "from");
  filter.to = query_text(req, "to");
  filter.limit = query_number(req, "limit", 50, 500);
  filter.offset = query_number(req, "offset", 0, 1u << 30);
  for (const std::string* date : {&filter.from, &filter.to})
    if (!date->empty() && (date->size() != 10 || (*date)[4] != '-' || (*date)[7] != '-'))
      throw StoreError(400, "'from' and 'to' are dates, YYYY-MM-DD");
  size_t total = 0;
  json slides = json::array();
  for (const auto& s : store_.list_slides(filter, by, &total)) slides.push_back(s.to_json());
  send_json(
      res, 200,
      {{"slides", slides}, {"total", total}, {"limit", filter.limit}, {"offset", filter.offset}});
}

void SlideApi::get_slide(const HttpRequest&, HttpResponse& res, const std::string& id,
                         const User& by) {
  const Slide slide = store_.slide(id, by);
  send_json(res, 200, slide_record_json(slide, store_.fields(id, by)));
}

// Each file is screened and then stored in its own transaction. With an Idempotency-Key, the
// i-th file of a retried request is found under KEY#i and answered from the records, not
// screened again.
void SlideApi::add_fields(const HttpRequest& req, HttpResponse& res, const std::string& id,
                          const User& by) {
  store_.slide(id, by);  // 404 before any screening
  const std::string key = req.header("Idempotency-Key");
  if (key.size() > 200 || printable(key, 200) != key)
    throw StoreError(400, "Idempotency-Key must be at most 200 printable characters");
  std::vector<const FormPart*> files;
  for (const auto& part : req.parts)
    if (part.name == "file") files.push_back(&part);
  if (files.empty()) throw StoreError(400, "no field image: send multipart field 'file'");
  if (files.size() > opt_.max_files) throw StoreError(413, "too many files in one request");
  json stored_ids = json::array(), errors = json::array();
  bool replayed = !key.empty();
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string file_key = key.empty() ? "" : key + "#" + std::to_string(i);
    if (auto existing = store_.field_for_key(id, file_key, files[i]->data)) {
      stored_ids.push_back(*existing);
      continue;
    }
    replayed = false;
    const std::string name =
        files[i]->filename.empty() ? "field" : printable(files[i]->filename, 200);
    const ScreenedUpload screened = screen_(name, files[i]->data, req);
    if (screened.status != 200) {
      errors.push_back(
          {{"filename", name}, {"error", screened.error}, {"status", screened.status}});
      continue;
    }
    stored_ids.push_back(store_.add_field(id, screened.field, file_key, by));
  }
  const Slide slide = store_.slide(id, by);
  const std::vector<StoredField> fields = store_.fields(id, by);
  json answer = {
      {"slide_id", id}, {"fields", json::array()}, {"errors", errors}, {"slide", slide.to_json()}};
  answer["slide"]["summary"] = slide_summary(slide, fields);
  for (const auto& f : fields)
    if (std::find(stored_ids.begin(), stored_ids.end(), f.id) != stored_ids.end())
      answer["fields"].push_back(f.to_json());
  if (replayed) res.set_header("Idempotent-Replayed", "true");
  int status = replayed ? 200 : 201;
  if (stored_ids.empty()) {
    status = errors.empty() ? 400 : errors[0]["status"].get<int>();
    answer["error"] = "no field could be screened";
  }
  send_json(res, status, answer);
}

void SlideApi::review(const HttpRequest& req, HttpResponse& res, const std::string& cell,
                      const User& by) {
  const json body = parse_body(req);
  const StoredCell reviewed =
      store_.review_cell(cell, string_field(body, "decision"), string_field(body, "stage"),
                         string_field(body, "reason"), by);
  send_json(res, 200, reviewed.to_json());
}

void SlideApi::report(const HttpRequest& req, HttpResponse& res, const std::string& id,
                      const User& by) {
  const std::string format = query_text(req, "format").empty() ? "html" : query_text(req, "format");
  if (format != "html" && format != "pdf" && format != "fhir")
    throw StoreError(400, "format must be html, pdf or fhir");
  const Slide slide = store_.slide(id, by);
  const std::vector<StoredField> fields = store_.fields(id, by);
  ReportContext context{opt_.model_facts, now_iso8601(), ""};
  if (format == "fhir") {
    res.content_type = "application/fhir+json";
    res.body = slide_report_fhir(slide, fields, context).dump(2);
    return;
  }
  std::map<std::string, std::string> images;
  for (const auto& f : fields) {
    if (!f.image_kept) continue;
    try {
      images[f.id] = store_.field_image(f.id, by).second;
    } catch (const StoreError&) {  // purged meanwhile: no thumbnails from it
    }
  }
  const std::string html = slide_report_html(slide, fields, images, context);
  if (format == "html") {
    res.content_type = "text/html; charset=utf-8";
    res.set_header("Content-Security-Policy",
                   "default-src 'none'; img-src data:; style-src 'unsafe-inline'");
    res.body = html;
    return;
  }
  try {
    res.body = html_to_pdf(html);
  } catch (const std::runtime_error& e) {
    throw StoreError(503, std::string("the PDF could not be made: ") + e.what());
  }
  res.content_type = "application/pdf";
  res.set_header("Content-Disposition", "inline; filename=\"" + slide.id + ".pdf\"");
}

}  // namespace malaria
