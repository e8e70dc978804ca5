#include "serve/server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "data/dataset.h"
#include "data/image.h"
#include "eval/decision.h"
#include "model/classifier.h"
#include "serve/assets.h"
#include "serve/http_util.h"
#include "serve/inference_queue.h"
#include "serve/prometheus.h"
#include "util/files.h"

namespace malaria {

using json = nlohmann::json;

namespace {

constexpr const char* kPageCsp =
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
// Swagger UI sets inline styles on its elements.
constexpr const char* kDocsCsp =
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src "
    "'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

thread_local std::chrono::steady_clock::time_point t_request_start;

struct Upload {
  std::string filename;
  const std::string* bytes;
};

struct FileOutcome {
  std::string filename;
  int status = 200;  // 415 not an image, 422 undecodable
  std::string error;
  float probability = 0;
  std::string format;
};

class App {
 public:
  explicit App(const ServerOptions& options)
      : opt_(options), model_(Classifier::load(options.model_path)) {
    const std::string bytes = read_text(options.model_path);
    model_id_ = model_.arch() + "-" + fnv1a_hex(bytes).substr(0, 12);
    band_ = opt_.inconclusive_band >= 0
                ? opt_.inconclusive_band
                : model_.metadata().value("inconclusive_band", kDefaultInconclusiveBand);
    describe_metrics();
    // One forward pass before listening: the first request should not pay for lazy initialisation.
    const int side = model_.image_size();
    std::vector<float> warmup(3ull * side * side, 0.5f);
    model_.predict(warmup.data(), 1);
    queue_ = std::make_unique<InferenceQueue>(
        model_, opt_.max_batch, opt_.queue_capacity, opt_.batch_wait_ms,
        [this](size_t n) { metrics_.observe("malaria_inference_batch_size", "", n); });
    setup_routes();
  }

  httplib::Server& server() { return svr_; }
  void set_ready(bool ready) { ready_ = ready; }
  const std::string& model_id() const { return model_id_; }

 private:
  void describe_metrics() {
    metrics_.describe("malaria_http_requests_total", "HTTP requests by route and status.",
                      "counter");
    metrics_.describe("malaria_http_request_duration_seconds",
                      "Time to answer a request, by route.", "histogram",
                      {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5});
    metrics_.describe("malaria_predictions_total", "Classified cells by decision.", "counter");
    metrics_.describe("malaria_inference_batch_size", "Images per forward pass (dynamic batching).",
                      "histogram", {1, 2, 4, 8, 16, 32, 64, 128});
    metrics_.describe("malaria_model_info", "The loaded model.", "gauge");
    metrics_.count("malaria_model_info", "id=\"" + model_id_ + "\",arch=\"" + model_.arch() + "\"",
                   1);
    for (const char* d : {"Parasitized", "Uninfected", "Inconclusive"})
      metrics_.count("malaria_predictions_total", std::string("decision=\"") + d + "\"", 0);
  }

  static bool is_api(const httplib::Request& req) { return req.path.rfind("/api/", 0) == 0; }

  // Route label for metrics: the registered pattern, so unknown paths cannot blow up cardinality.
  std::string route_of(const httplib::Request& req) const {
    if (routes_.count(req.path)) return req.path;
    if (req.path == "/predict") return "/predict/";
    return "other";
  }

  void send_json(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(body.dump(), "application/json");
    res.set_header("Cache-Control", "no-store");
  }

  void send_page(httplib::Response& res, int status, const std::string& html) {
    res.status = status;
    res.set_content(html, "text/html; charset=utf-8");
    res.set_header("Content-Security-Policy", kPageCsp);
    res.set_header("Cache-Control", "no-store");
  }

  // Decodes, preprocesses and classifies each upload; bad files get an error, not an exception.
  // Returns false when the inference queue is full.
  bool classify(const std::vector<Upload>& uploads, std::vector<FileOutcome>& out) {
    const int s = model_.image_size();
    const size_t plane = 3ull * s * s;
    std::vector<size_t> good;
    std::vector<float> pixels;
    out.resize(uploads.size());
    for (size_t i = 0; i < uploads.size(); ++i) {
      auto& o = out[i];
      o.filename = uploads[i].filename;
      const std::string& bytes = *uploads[i].bytes;
      o.format = sniff_image_format(bytes.data(), bytes.size());
      if (o.format.empty()) {
        o.status = 415;
        o.error = o.filename + ": not a PNG, JPEG, BMP or TIFF image";
        continue;
      }
      try {
        const cv::Mat bgr = decode_image(bytes, o.filename);
        pixels.resize((good.size() + 1) * plane);
        to_chw_float(resize_rgb(bgr, s), pixels.data() + good.size() * plane);
        good.push_back(i);
      } catch (const ImageError& e) {
        o.status = 422;
        o.error = e.what();
      }
    }
    if (good.empty()) return true;
    auto future = queue_->submit(std::move(pixels), good.size());
    if (!future) return false;
    const std::vector<float> prob = future->get();
    for (size_t k = 0; k < good.size(); ++k) out[good[k]].probability = prob[k];
    return true;
  }

  json result_json(const FileOutcome& o) {
    if (!o.error.empty())
      return {{"filename", o.filename}, {"error", o.error}, {"status", o.status}};
    const CellDecision d = decide(o.probability, model_.threshold(), band_);
    metrics_.count("malaria_predictions_total", "decision=\"" + d.decision + "\"");
    return {{"filename", o.filename},
            {"label", d.label},
            {"probability_parasitized", o.probability},
            {"confidence", d.confidence},
            {"decision", d.decision}};
  }

  // Gathers the `file` fields of a multipart form, or the raw body as one image.
  static std::vector<Upload> uploads_of(const httplib::Request& req) {
    std::vector<Upload> uploads;
    if (req.is_multipart_form_data()) {
      auto range = req.files.equal_range("file");
      for (auto it = range.first; it != range.second; ++it)
        uploads.push_back(
            {it->second.filename.empty() ? "upload" : it->second.filename, &it->second.content});
    } else if (!req.body.empty()) {
      uploads.push_back({"upload", &req.body});
    }
    return uploads;
  }

  void handle_api_predict(const httplib::Request& req, httplib::Response& res) {
    const auto uploads = uploads_of(req);
    if (uploads.empty())
      return send_json(res, 400,
                       json_error("no file: send multipart field 'file' or an image body", 400));
    if (uploads.size() > opt_.max_files)
      return send_json(res, 413,
                       json_error("too many files: " + std::to_string(uploads.size()) + " (limit " +
                                      std::to_string(opt_.max_files) + ")",
                                  413));
    std::vector<FileOutcome> outcomes;
    if (!classify(uploads, outcomes)) {
      res.set_header("Retry-After", "1");
      return send_json(res, 503,
                       json_error("server busy: inference queue is full, retry shortly", 503));
    }
    json results = json::array();
    size_t parasitized = 0, uninfected = 0, inconclusive = 0, errors = 0;
    std::set<int> error_statuses;
    for (const auto& o : outcomes) {
      json r = result_json(o);
      if (!o.error.empty()) {
        errors++;
        error_statuses.insert(o.status);
      } else {
        (r["label"] == kClassNames[kParasitized] ? parasitized : uninfected)++;
        inconclusive += r["decision"] == kInconclusive;
      }
      results.push_back(std::move(r));
    }
    const size_t cells = parasitized + uninfected;
    json body = {{"model",
                  {{"id", model_id_},
                   {"name", model_.metadata().value("name", "")},
                   {"arch", model_.arch()}}},
                 {"results", results},
                 {"summary",
                  {{"cells", cells},
                   {"parasitized", parasitized},
                   {"uninfected", uninfected},
                   {"inconclusive", inconclusive},
                   {"errors", errors},
                   {"parasitized_percent", cells ? 100.0 * parasitized / cells : 0.0}}}};
    int status = 200;
    if (cells == 0) {
      status = error_statuses.count(422) ? 422 : 415;
      body["error"] = "no file could be classified";
    }
    send_json(res, status, body);
  }

  std::string result_page(const std::string& body_html) const {
    return "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
           "<title>Malaria cell classifier: result</title><link rel=\"stylesheet\" "
           "href=\"/style.css\"></head><body>"
           "<header><h1>Malaria cell classifier</h1></header>"
           "<p class=\"notice\" role=\"note\"><strong>Assistive tool.</strong> This software "
           "assists and does not "
           "replace a trained microscopist.</p><main><section>" +
           body_html +
           "<p><a href=\"/\">Classify another image</a></p></section></main></body></html>";
  }

  // The original app's form target: HTML in, HTML out, no JavaScript needed.
  void handle_form_predict(const httplib::Request& req, httplib::Response& res) {
    const auto uploads = uploads_of(req);
    if (uploads.empty())
      return send_page(
          res, 400,
          result_page("<h2>No file</h2><p class=\"error\">Choose a cell image to upload.</p>"));
    if (uploads.size() > opt_.max_files)
      return send_page(res, 413,
                       result_page("<h2>Too many files</h2><p class=\"error\">At most " +
                                   std::to_string(opt_.max_files) + " images per upload.</p>"));
    std::vector<FileOutcome> outcomes;
    if (!classify(uploads, outcomes)) {
      res.set_header("Retry-After", "1");
      return send_page(
          res, 503,
          result_page(
              "<h2>Busy</h2><p class=\"error\">The server is busy; try again in a moment.</p>"));
    }
    std::ostringstream html;
    int status = 200;
    bool any_ok = false;
    for (size_t i = 0; i < outcomes.size(); ++i) {
      const auto& o = outcomes[i];
      html << "<article class=\"result\"><h2>" << html_escape(o.filename) << "</h2>";
      if (!o.error.empty()) {
        html << "<p class=\"error\">" << html_escape(o.error) << "</p></article>";
        status = o.status;
        continue;
      }
      any_ok = true;
      const json r = result_json(o);
      char confidence[32];
      std::snprintf(confidence, sizeof confidence, "%.2f", 100.0 * r["confidence"].get<double>());
      html << "<img class=\"result-image\" alt=\"uploaded cell\" src=\"data:"
           << mime_for_format(o.format) << ";base64," << base64_encode(*uploads[i].bytes) << "\">"
           << "<p class=\"prediction\">Prediction: " << r["label"].get<std::string>()
           << " (Confidence: " << confidence << "%)</p>";
      if (r["decision"] == kInconclusive)
        html << "<p class=\"badge Inconclusive\">Inconclusive: close to the decision threshold, "
                "refer to a microscopist.</p>";
      html << "</article>";
    }
    send_page(res, any_ok ? 200 : status, result_page(html.str()));
  }

  json model_json() const {
    json j = model_.metadata();
    j["id"] = model_id_;
    j["inconclusive_band"] = band_;
    return j;
  }

  // httplib routes are regular expressions; our paths are literal apart from their dots.
  static std::string pattern_for(const std::string& path) {
    std::string pattern;
    for (char c : path) pattern += (c == '.' ? std::string("\\.") : std::string(1, c));
    return path == "/predict/" ? "/predict/?" : pattern;
  }

  void route(const std::string& path, const std::string& method, httplib::Server::Handler handler) {
    routes_.insert(path);
    allowed_[path].insert(method);
    const std::string pattern = pattern_for(path);
    if (method == "GET") svr_.Get(pattern, handler);
    if (method == "POST") svr_.Post(pattern, handler);
  }

  // Every other method on a known path is 405 with an Allow header, not 404.
  void refuse_other_methods() {
    for (const auto& [path, methods] : allowed_) {
      std::string allow;
      for (const auto& m : methods) allow += (allow.empty() ? "" : ", ") + m;
      const std::string pattern = pattern_for(path);
      auto refuse = [allow](const httplib::Request&, httplib::Response& res) {
        res.status = 405;
        res.set_header("Allow", allow);
      };
      if (!methods.count("GET")) svr_.Get(pattern, refuse);
      if (!methods.count("POST")) svr_.Post(pattern, refuse);
      svr_.Put(pattern, refuse);
      svr_.Patch(pattern, refuse);
      svr_.Delete(pattern, refuse);
    }
  }

  void setup_routes() {
    httplib::Headers defaults = {{"X-Content-Type-Options", "nosniff"},
                                 {"X-Frame-Options", "DENY"},
                                 {"Referrer-Policy", "no-referrer"}};
    if (!opt_.cors_origin.empty()) {
      defaults.emplace("Access-Control-Allow-Origin", opt_.cors_origin);
      defaults.emplace("Vary", "Origin");
    }
    svr_.set_default_headers(defaults);
    svr_.set_payload_max_length(static_cast<size_t>(opt_.max_upload_mb * 1024 * 1024));
    svr_.set_tcp_nodelay(
        true);  // small JSON answers must not wait 40 ms for Nagle and delayed ACKs
    svr_.set_read_timeout(10);
    svr_.set_write_timeout(30);
    const int http_threads = std::max(2, opt_.http_threads);
    svr_.new_task_queue = [http_threads] { return new httplib::ThreadPool(http_threads); };

    svr_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      t_request_start = std::chrono::steady_clock::now();
      if (req.method == "OPTIONS" && !opt_.cors_origin.empty()) {
        res.status = 204;
        res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
        res.set_header("Access-Control-Max-Age", "600");
        return httplib::Server::HandlerResponse::Handled;
      }
      if (!opt_.api_key.empty() && is_api(req)) {
        const std::string auth = req.get_header_value("Authorization");
        if (!constant_time_equal(auth, "Bearer " + opt_.api_key)) {
          res.set_header("WWW-Authenticate", "Bearer");
          send_json(res, 401,
                    json_error("missing or wrong API key (Authorization: Bearer KEY)", 401));
          return httplib::Server::HandlerResponse::Handled;
        }
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });

    // Errors raised by httplib itself (404, 405, 413, 400) get a body in the route's language.
    svr_.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req,
                                                                       httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      std::string message = "request failed with status " + std::to_string(res.status);
      if (res.status == 413)
        message = "upload too large (limit " +
                  std::to_string(static_cast<int>(opt_.max_upload_mb)) + " MB)";
      else if (res.status == 405)
        message = "method " + req.method + " not allowed on " + req.path +
                  " (allowed: " + res.get_header_value("Allow") + ")";
      else if (res.status == 404)
        message = "no such route: " + req.path;
      if (is_api(req) || req.get_header_value("Accept").find("text/html") == std::string::npos) {
        res.set_content(json_error(message, res.status).dump(), "application/json");
      } else {
        res.set_content(result_page("<h2>" + std::to_string(res.status) +
                                    "</h2><p class=\"error\">" + html_escape(message) + "</p>"),
                        "text/html; charset=utf-8");
        res.set_header("Content-Security-Policy", kPageCsp);
      }
      return httplib::Server::HandlerResponse::Handled;
    }));

    svr_.set_exception_handler(
        [this](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
          std::string what = "internal error";
          try {
            std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          spdlog::error("{} {}: {}", req.method, req.path, what);
          send_json(res, 500, json_error("internal error", 500));
        });

    svr_.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t_request_start).count();
      const std::string route = route_of(req);
      metrics_.count("malaria_http_requests_total",
                     "route=\"" + route + "\",status=\"" + std::to_string(res.status) + "\"");
      metrics_.observe("malaria_http_request_duration_seconds", "route=\"" + route + "\"", seconds);
      spdlog::info(
          "{} {} {} {:.1f}ms {}B in {}B out {}", req.method, req.path, res.status, seconds * 1e3,
          req.get_header_value("Content-Length").empty() ? "0"
                                                         : req.get_header_value("Content-Length"),
          res.body.size(), req.remote_addr);
    });

    for (const auto& asset : web_assets()) {
      if (asset.path == "/openapi.json") continue;
      route(asset.path, "GET", [this, &asset](const httplib::Request&, httplib::Response& res) {
        const bool text = asset.content_type.rfind("text/", 0) == 0;
        res.set_content(std::string(asset.content),
                        asset.content_type + (text ? "; charset=utf-8" : ""));
        res.set_header("Content-Security-Policy",
                       asset.path.rfind("/docs", 0) == 0 ? kDocsCsp : kPageCsp);
        res.set_header("Cache-Control", asset.path == "/" ? "no-cache" : "public, max-age=3600");
      });
    }
    route("/openapi.json", "GET", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(find_asset("/openapi.json")->content), "application/json");
    });
    route("/api/v1/predict", "POST",
          [this](const auto& req, auto& res) { handle_api_predict(req, res); });
    route("/predict/", "POST",
          [this](const auto& req, auto& res) { handle_form_predict(req, res); });
    route("/api/v1/model", "GET",
          [this](const auto&, auto& res) { send_json(res, 200, model_json()); });
    route("/health", "GET", [this](const auto&, auto& res) {
      send_json(res, 200, {{"status", "ok"}});
    });
    route("/ready", "GET", [this](const auto&, auto& res) {
      if (ready_)
        send_json(res, 200, {{"ready", true}, {"model", model_id_}});
      else
        send_json(res, 503, json_error("not ready", 503));
    });
    route("/metrics", "GET", [this](const auto&, auto& res) {
      res.set_content(metrics_.render(), "text/plain; version=0.0.4");
      res.set_header("Cache-Control", "no-store");
    });
    refuse_other_methods();
  }

  ServerOptions opt_;
  Classifier model_;
  std::string model_id_;
  double band_ = kDefaultInconclusiveBand;
  MetricsRegistry metrics_;
  std::unique_ptr<InferenceQueue> queue_;
  httplib::Server svr_;
  std::set<std::string> routes_;
  std::map<std::string, std::set<std::string>> allowed_;
  std::atomic<bool> ready_{false};
};

}  // namespace

namespace {
// Libraries start threads before main (OpenBLAS, OpenMP), so the stop signals cannot be kept for
// one thread with a mask: the handler, whichever thread runs it, writes to a pipe that a
// watcher thread reads (the self-pipe pattern; write() is async-signal-safe).
int g_stop_pipe[2] = {-1, -1};
extern "C" void on_server_signal(int sig) {
  const char c = static_cast<char>(sig);
  [[maybe_unused]] auto n = ::write(g_stop_pipe[1], &c, 1);
}
}  // namespace

int run_server(const ServerOptions& options) {
  set_compute_threads(options.compute_threads);
  App app(options);
  auto& svr = app.server();
  if (!svr.bind_to_port(options.host, options.port))
    throw std::runtime_error("cannot listen on " + options.host + ":" +
                             std::to_string(options.port) + " (address in use or not allowed)");
  if (::pipe(g_stop_pipe) != 0) throw std::runtime_error("cannot create the shutdown pipe");
  struct sigaction action {};
  action.sa_handler = on_server_signal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  std::thread stopper([&] {
    char sig = 0;
    while (::read(g_stop_pipe[0], &sig, 1) < 0 && errno == EINTR) {
    }
    if (sig == 0) return;  // the pipe was closed: the server stopped by itself
    spdlog::info("received {}, finishing requests in flight",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT");
    app.set_ready(false);
    svr.stop();
  });
  app.set_ready(true);
  spdlog::info("serving model {} at http://{}:{}/ ({} compute threads)", app.model_id(),
               options.host, options.port, compute_threads());
  const bool ok = svr.listen_after_bind();
  ::close(g_stop_pipe[1]);  // releases the watcher if no signal came
  stopper.join();
  ::close(g_stop_pipe[0]);
  spdlog::info("stopped");
  return ok ? 0 : 1;
}

}  // namespace malaria
