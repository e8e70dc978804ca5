#include "serve/server.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#include "data/dataset.h"
#include "data/image.h"
#include "eval/cell_check.h"
#include "eval/decision.h"
#include "explain/explanation.h"
#include "field/screening.h"
#include "model/classifier.h"
#include "serve/assets.h"
#include "serve/http_server.h"
#include "serve/http_util.h"
#include "serve/prometheus.h"
#include "serve/render.h"
#include "serve/router.h"
#include "serve/slide_api.h"
#include "serve/work_queue.h"
#include "store/slide_store.h"
#include "util/files.h"
#include "util/text.h"

namespace malaria {

using json = nlohmann::json;

namespace {

struct Upload {
  std::string filename;  // valid UTF-8, safe to echo
  const std::string* bytes;
};

struct FileOutcome {
  std::string filename;
  int status = 200;  // 415 not an image, 422 undecodable or refused
  std::string error;
  float probability = 0;
  float atypicality = 0;  // the model's typicality check: above 1 is Rejected
  CellCheck check;        // the cheap checks on the decoded image, made before the model runs
  std::string format;
  CellDecision decision;  // set once classified
  cv::Mat preview;        // with ?explain=1: the image, at most kPreviewSide px, for the overlay
  nlohmann::json explanation;
};

// Overlays are drawn on a copy no larger than this: enough to see, small to send.
constexpr int kPreviewSide = 256;

bool query_flag(const HttpRequest& req, const std::string& name) {
  const auto it = req.query.find(name);
  return it != req.query.end() && (it->second == "1" || it->second == "true");
}

// The `file` fields of a multipart form, or the raw body as one image.
std::vector<Upload> uploads_of(const HttpRequest& req) {
  std::vector<Upload> uploads;
  if (req.multipart) {
    for (const auto& part : req.parts)
      if (part.name == "file")
        uploads.push_back(
            {part.filename.empty() ? "upload" : printable(part.filename), &part.data});
  } else if (!req.body.empty()) {
    uploads.push_back({"upload", &req.body});
  }
  return uploads;
}

// At most `slots` holders at once; the others wait. Bounds the memory of decoded uploads
// (up to 4096x4096x3 bytes each) however many connections are open.
class Gate {
 public:
  explicit Gate(int slots) : free_(slots) {}
  // Held for as long as it lives.
  class Slot {
   public:
    explicit Slot(Gate& gate) : gate_(&gate) { gate.enter(); }
    Slot(Slot&& other) noexcept : gate_(std::exchange(other.gate_, nullptr)) {}
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    Slot& operator=(Slot&&) = delete;
    ~Slot() {
      if (gate_) gate_->leave();
    }

   private:
    Gate* gate_;
  };

 private:
  void enter() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return free_ > 0; });
    --free_;
  }
  void leave() {
    {
      std::lock_guard lock(mutex_);
      ++free_;
    }
    cv_.notify_one();
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  int free_;
};

// A refused upload: the status to answer it with and a message naming the file.
struct UploadError {
  int status;
  std::string message;
};

// The one upload step of every route: size check, sniff, decode within `limits`, holding a slot
// of `gate` for as long as the decoded image lives.
struct DecodedUpload {
  Gate::Slot slot;
  cv::Mat bgr;
  std::string format;
};
DecodedUpload decode_upload(const Upload& upload, ImageLimits limits, size_t max_bytes,
                            Gate& gate) {
  const std::string& bytes = *upload.bytes;
  const std::string format = sniff_image_format(bytes.data(), bytes.size());
  if (format.empty())
    throw UploadError{415, upload.filename + ": not a PNG, JPEG, BMP or TIFF image"};
  if (bytes.size() > max_bytes)
    throw UploadError{413,
                      upload.filename + ": larger than " + std::to_string(max_bytes >> 20) + " MB"};
  Gate::Slot slot(gate);
  try {
    cv::Mat bgr = decode_image(bytes, upload.filename, limits);
    return {std::move(slot), std::move(bgr), format};
  } catch (const ImageError& e) {
    throw UploadError{422, e.what()};
  }
}

// Megapixels a field upload will decode to, from its header (1 to the largest field we decode):
// its screening cost. A header claiming more is refused when decoded; it must not cost more.
size_t field_megapixels(const Upload& upload) {
  constexpr size_t kLargest =
      (size_t(kFieldImageLimits.max_width) * kFieldImageLimits.max_height + 999'999) / 1'000'000;
  try {
    const ImageSize size = read_image_size(*upload.bytes, upload.filename);
    return std::clamp<size_t>((size_t(size.width) * size_t(size.height) + 999'999) / 1'000'000, 1,
                              kLargest);
  } catch (const ImageError&) {
    return 1;  // refused when decoded
  }
}

// "cellnet-6ced267f98d9": the architecture and a digest of the file's bytes (read once more at
// start; the file was read with the same rules by Classifier::load).
// tcmalloc keeps freed pages for reuse; after a large screening they are handed back so that a
// burst does not stay resident. Weak: sanitizer builds use another allocator.
extern "C" void MallocExtension_ReleaseFreeMemory() __attribute__((weak));
void give_memory_back() {
  if (MallocExtension_ReleaseFreeMemory) MallocExtension_ReleaseFreeMemory();
}

class App {
 public:
  explicit App(const ServerOptions& options)
      : opt_(options),
        model_(Classifier::load(options.model_path)),
        queue_(options.work,
               [this](WorkKind kind, size_t n) {
                 metrics_.observe("malaria_inference_batch_size",
                                  std::string("kind=\"") + work_kind_name(kind) + "\"", double(n));
               }),
        http_(options.http, {[this](const auto& req, auto& res) { handle(req, res); },
                             [this](const auto& req, auto& res, int status, const auto& msg) {
                               on_error(req, res, status, msg);
                             },
                             [this](const auto& req, auto& res) { return early(req, res); },
                             [this](const auto& req, const auto& res, double s, size_t in) {
                               observe(req, res, s, in);
                             }}) {
    model_id_ = model_file_id(model_.arch(), options.model_path);
    default_point_ = &model_.operating_point(opt_.operating_point);
    if (!options.field_model_path.empty()) {
      field_model_ = std::make_unique<Classifier>(Classifier::load(options.field_model_path));
      field_model_id_ = model_file_id(field_model_->arch(), options.field_model_path);
      default_field_point_ = &field_model_->operating_point(field_operating_point(*field_model_));
      field_error_rates_ = FieldErrorRates::from_json(field_model_->metadata());
      if (!options.detector_path.empty()) {
        detector_ = std::make_unique<CellDetector>(CellDetector::load(options.detector_path));
        detector_id_ =
            "detector-" +
            fnv1a_hex(read_regular_file(options.detector_path, kMaxModelFileBytes)).substr(0, 12);
      }
    }
    if (!options.store_url.empty()) open_store();
    describe_metrics();
    warm_up();
    add_routes();
  }

  HttpServer& http() { return http_; }
  WorkQueue& queue() { return queue_; }
  void set_ready(bool ready) { ready_ = ready; }
  const std::string& model_id() const { return model_id_; }

 private:
  void open_store() {
    store_ = std::make_unique<SlideStore>(opt_.store_url);
    const bool loopback =
        opt_.host == "127.0.0.1" || opt_.host == "localhost" || opt_.host == "::1";
    if (!loopback && opt_.api_key.empty() && store_->user_count() == 0)
      throw std::runtime_error(
          "records served on " + opt_.host +
          " with nobody to sign in: add a user first (malaria users add NAME --role admin "
          "--store URL) or give --api-key");
    spdlog::info("records: {} (schema version {}, {} users)", store_->database().describe(),
                 store_->schema_version(), store_->user_count());
    SlideApiOptions options;
    options.api_key = opt_.api_key;
    options.max_files = opt_.http.max_parts;
    options.model_facts = field_model_ ? field_model_json() : json::object();
    if (field_model_) {
      json validated = json::array();
      if (field_error_rates_) {
        char line[256];
        std::snprintf(line, sizeof line,
                      "infected cells found %.1f%%, uninfected cells called infected %.2f%% "
                      "(held-out fields: %s)",
                      100 * field_error_rates_->sensitivity(),
                      100 * field_error_rates_->false_positive_rate(),
                      field_error_rates_->measured_on.c_str());
        validated.push_back(line);
      }
      options.model_facts["validated"] = validated;
    }
    slides_ = std::make_unique<SlideApi>(
        *store_, options,
        [this](const std::string& name, const std::string& bytes, const HttpRequest& req) {
          return screen_for_records(name, bytes, req);
        },
        [this](const std::string& image, const StoredCell& cell) {
          return explain_stored_cell(image, cell);
        },
        [this](const auto& req, auto& res, int status, const auto& msg) {
          on_error(req, res, status, msg);
        });
  }

  // One field screened for the records: the same steps as /api/v1/screen, one field.
  ScreenedUpload screen_for_records(const std::string& name, const std::string& bytes,
                                    const HttpRequest&) {
    ScreenedUpload out;
    if (!field_model_) {
      out.status = 404;
      out.error = "no field model loaded: start the server with --field-model FILE";
      return out;
    }
    const Upload upload{name, &bytes};
    std::optional<WorkQueue::Ticket> ticket =
        queue_.admit(WorkKind::screen, field_megapixels(upload));
    if (!ticket) throw WorkCancelled("server busy: too many fields are being screened");
    try {
      const DecodedUpload image =
          decode_upload(upload, kFieldImageLimits, kMaxFieldFileBytes, field_gate_);
      const ScreenedField field =
          screen_field(*field_model_, *default_field_point_, queue_segmenter(*ticket), image.bgr,
                       name, queue_scorer(*ticket));
      metrics_.count("malaria_fields_screened_total", "verdict=\"" + field.quality.verdict + "\"");
      out.field = field_record(field, bytes, image.format,
                               field_model_id_ + (detector_ ? "+" + detector_id_ : ""));
    } catch (const UploadError& e) {
      out.status = e.status;
      out.error = e.message;
    }
    return out;
  }

  // Grad-CAM of the field model on a stored cell: its box cut from the kept field image, black
  // outside an inscribed ellipse (the screening's exact mask is not kept), as a PNG overlay.
  std::string explain_stored_cell(const std::string& image, const StoredCell& cell) {
    if (!field_model_) throw StoreError(404, "no field model loaded: no explanation");
    std::optional<WorkQueue::Ticket> ticket = queue_.admit(WorkKind::explain, 1);
    if (!ticket) throw WorkCancelled("server busy: too many explanations waiting");
    std::string bytes = image;
    const Upload upload{"field", &bytes};
    std::optional<DecodedUpload> decoded;
    try {
      decoded.emplace(decode_upload(upload, kFieldImageLimits, kMaxFieldFileBytes, field_gate_));
    } catch (const UploadError& e) {
      throw StoreError(422, "the kept field image cannot be explained: " + e.message);
    }
    const DecodedUpload& field = *decoded;
    const cv::Rect box = cv::Rect(cell.x, cell.y, cell.width, cell.height) &
                         cv::Rect(0, 0, field.bgr.cols, field.bgr.rows);
    if (box.area() <= 0) throw StoreError(422, "the cell's box lies outside its field image");
    cv::Mat crop = cv::Mat::zeros(box.size(), field.bgr.type());
    cv::Mat mask = cv::Mat::zeros(box.size(), CV_8U);
    cv::ellipse(mask, cv::Point(box.width / 2, box.height / 2),
                cv::Size(box.width / 2, box.height / 2), 0, 0, 360, cv::Scalar(255), cv::FILLED);
    field.bgr(box).copyTo(crop, mask);
    const int side = field_model_->image_size();
    std::vector<float> pixels(3ull * side * side);
    to_chw_float(resize_rgb(crop, side), pixels.data());
    const auto explanations = queue_.explain(*ticket, *field_model_, std::move(pixels), 1).get();
    cv::Mat large;
    cv::resize(crop, large, cv::Size(kPreviewSide, kPreviewSide), 0, 0, cv::INTER_CUBIC);
    return encode_png(heatmap_overlay(large, explanations.at(0).heatmap));
  }

  // One forward pass before listening: the first request should not pay for lazy initialisation.
  void warm_up() {
    const int side = model_.image_size();
    std::vector<float> pixels(3ull * side * side, 0.5f);
    model_.predict(pixels.data(), 1);
  }

  void describe_metrics() {
    metrics_.describe("malaria_http_requests_total", "HTTP requests by route and status.",
                      "counter");
    metrics_.describe("malaria_http_request_duration_seconds",
                      "Time to answer a request, by route.", "histogram",
                      {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5});
    metrics_.describe("malaria_predictions_total", "Classified cells by decision.", "counter");
    metrics_.describe("malaria_fields_screened_total", "Smear fields screened, by quality verdict.",
                      "counter");
    metrics_.describe("malaria_inference_batch_size",
                      "Images per forward pass, by kind of work (dynamic batching).", "histogram",
                      {1, 2, 4, 8, 16, 32, 64, 128});
    metrics_.describe("malaria_model_info", "The loaded model.", "gauge");
    metrics_.describe("malaria_work_admitted",
                      "Work admitted and not finished, by kind (images; megapixels for screen).",
                      "gauge");
    metrics_.describe("malaria_work_waiting_images",
                      "Images waiting for the model worker, by kind.", "gauge");
    metrics_.describe("malaria_work_batches_total", "Forward passes run by the model worker.",
                      "counter");
    metrics_.describe("malaria_http_connections_open", "Open client connections.", "gauge");
    metrics_.describe("malaria_http_request_timeouts_total",
                      "Requests answered 408 because their body stopped arriving.", "counter");
    metrics_.describe("malaria_http_requests_in_flight",
                      "Requests whose headers arrived and that are not answered yet (this one "
                      "included).",
                      "gauge");
    metrics_.describe("malaria_http_body_bytes_held", "Request body bytes held in memory.",
                      "gauge");
    metrics_.set("malaria_model_info", "id=\"" + model_id_ + "\",arch=\"" + model_.arch() + "\"",
                 1);
    for (const char* d : {"Parasitized", "Uninfected", "Inconclusive", "Rejected"})
      metrics_.count("malaria_predictions_total", std::string("decision=\"") + d + "\"", 0);
  }

  // The state gauges, read when /metrics is asked for.
  void update_state_metrics() {
    const WorkQueue::Stats work = queue_.stats();
    for (size_t k = 0; k < kWorkKinds; ++k) {
      const std::string label =
          std::string("kind=\"") + work_kind_name(static_cast<WorkKind>(k)) + "\"";
      metrics_.set("malaria_work_admitted", label, double(work.admitted[k]));
      metrics_.set("malaria_work_waiting_images", label, double(work.waiting_images[k]));
    }
    metrics_.set("malaria_work_batches_total", "", double(work.batches));
    const HttpServer::Stats net = http_.stats();
    metrics_.set("malaria_http_connections_open", "", double(net.connections_open));
    metrics_.set("malaria_http_request_timeouts_total", "", double(net.requests_timed_out));
    metrics_.set("malaria_http_requests_in_flight", "", double(net.requests_in_flight));
    metrics_.set("malaria_http_body_bytes_held", "", double(net.body_bytes_held));
  }

  // --- transport callbacks --------------------------------------------------------------------

  void add_default_headers(HttpResponse& res) const {
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("X-Frame-Options", "DENY");
    res.set_header("Referrer-Policy", "no-referrer");
    if (!opt_.cors_origin.empty()) {
      res.set_header("Access-Control-Allow-Origin", opt_.cors_origin);
      res.set_header("Vary", "Origin");
    }
  }

  void handle(const HttpRequest& req, HttpResponse& res) {
    try {
      router_.dispatch(req, res, [this](const auto& rq, auto& rs, int status, const auto& msg) {
        render_error(rq, rs, status, msg);
      });
    } catch (const WorkCancelled& e) {
      res = HttpResponse{};
      on_error(req, res, 503, e.what());
      return;
    }
    add_default_headers(res);
  }

  void on_error(const HttpRequest& req, HttpResponse& res, int status, const std::string& msg) {
    render_error(req, res, status, msg);
    if (status == 503) res.set_header("Retry-After", "1");
    add_default_headers(res);
  }

  // Before the body is read: CORS preflight and the API key, so strangers cannot upload.
  bool early(const HttpRequest& req, HttpResponse& res) {
    if (req.method == "OPTIONS" && !opt_.cors_origin.empty()) {
      res.status = 204;
      res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
      res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
      res.set_header("Access-Control-Max-Age", "600");
      add_default_headers(res);
      return true;
    }
    if (!is_api_route(req.path)) return false;
    if (slides_) {  // with records: the API key or a user's token (see SlideApi::user_of)
      try {
        if (slides_->user_of(req)) return false;
      } catch (const StoreError& e) {  // an expired token: say so
        res.set_header("WWW-Authenticate", "Bearer error=\"invalid_token\"");
        on_error(req, res, e.status, e.what());
        return true;
      } catch (const std::exception& e) {  // this runs inside libmicrohttpd: nothing may escape
        spdlog::error("records: authentication failed: {}", e.what());
        on_error(req, res, 503, "the record database is unavailable, retry shortly");
        return true;
      }
      res.set_header("WWW-Authenticate", "Bearer");
      on_error(req, res, 401, "missing or wrong token (Authorization: Bearer TOKEN)");
      return true;
    }
    if (opt_.api_key.empty()) return false;
    if (constant_time_equal(bearer_token(req.header("Authorization")), opt_.api_key)) return false;
    res.set_header("WWW-Authenticate", "Bearer");
    on_error(req, res, 401, "missing or wrong API key (Authorization: Bearer KEY)");
    return true;
  }

  void observe(const HttpRequest& req, const HttpResponse& res, double seconds, size_t bytes_in) {
    const std::string route = router_.route_label(req.path);
    metrics_.count("malaria_http_requests_total",
                   "route=\"" + route + "\",status=\"" + std::to_string(res.status) + "\"");
    metrics_.observe("malaria_http_request_duration_seconds", "route=\"" + route + "\"", seconds);
    spdlog::info("{} {} {} {:.1f}ms {}B in {}B out {}", printable(req.method, 16),
                 printable(req.path), res.status, seconds * 1e3, bytes_in, res.body.size(),
                 req.remote_addr);
  }

  // --- classification -------------------------------------------------------------------------

  // Decodes, preprocesses and classifies (or explains) each upload through the work queue; bad
  // files get an error, not an exception. Returns false when that kind of work is full.
  bool classify(const std::vector<Upload>& uploads, std::vector<FileOutcome>& out, bool explain) {
    auto ticket = queue_.admit(explain ? WorkKind::explain : WorkKind::classify, uploads.size());
    if (!ticket) return false;
    const int s = model_.image_size();
    const size_t plane = 3ull * s * s;
    std::vector<size_t> good;
    std::vector<float> pixels;
    out.resize(uploads.size());
    for (size_t i = 0; i < uploads.size(); ++i) {
      auto& o = out[i];
      o.filename = uploads[i].filename;
      try {
        const DecodedUpload image = decode_upload(uploads[i], kCellImageLimits, SIZE_MAX,
                                                  explain ? explain_gate_ : cell_gate_);
        o.format = image.format;
        o.check = check_cell_image(image.bgr);
        if (!o.check.ok) continue;  // Rejected before the model: no work for the queue
        if (explain) o.preview = fit_within(image.bgr, kPreviewSide);
        pixels.resize((good.size() + 1) * plane);
        to_chw_float(resize_rgb(image.bgr, s), pixels.data() + good.size() * plane);
        good.push_back(i);
      } catch (const UploadError& e) {
        o.status = e.status;
        o.error = e.message;
      }
    }
    if (good.empty()) return true;
    if (!explain) {
      const Classifier::Scores scores =
          queue_.predict(*ticket, model_, std::move(pixels), good.size()).get();
      for (size_t k = 0; k < good.size(); ++k) {
        out[good[k]].probability = scores.probability[k];
        if (!scores.atypicality.empty()) out[good[k]].atypicality = scores.atypicality[k];
      }
      return true;
    }
    const auto explanations = queue_.explain(*ticket, model_, std::move(pixels), good.size()).get();
    for (size_t k = 0; k < good.size(); ++k) {
      auto& o = out[good[k]];
      o.probability = explanations[k].probability;
      o.atypicality = explanations[k].atypicality;
      o.explanation = {
          {"heatmap", heatmap_json(explanations[k].heatmap)},
          {"overlay_png",
           base64_encode(encode_png(heatmap_overlay(o.preview, explanations[k].heatmap)))},
          {"method", "Grad-CAM, last convolution stage"}};
      o.preview.release();
    }
    return true;
  }

  // The image scaled down (never up) to fit a side x side square.
  static cv::Mat fit_within(const cv::Mat& bgr, int side) {
    const double scale = std::min(1.0, double(side) / std::max(bgr.cols, bgr.rows));
    if (scale >= 1.0) return bgr.clone();
    cv::Mat small;
    cv::resize(bgr, small,
               cv::Size(std::max(1, int(bgr.cols * scale)), std::max(1, int(bgr.rows * scale))), 0,
               0, cv::INTER_AREA);
    return small;
  }

  // A model output that is not a number is never turned into a label.
  static void refuse_non_finite(FileOutcome& o) {
    if (o.error.empty() && o.check.ok && !std::isfinite(o.probability)) {
      o.status = 500;
      o.error = o.filename + ": the model produced no valid probability (not a number)";
    }
  }

  json result_json(const FileOutcome& o) const {
    if (!o.error.empty())
      return {{"filename", o.filename}, {"error", o.error}, {"status", o.status}};
    const CellDecision& d = o.decision;
    if (d.rejected())  // no label, no probability: nothing that could be read as an answer
      return {{"filename", o.filename},
              {"label", nullptr},
              {"probability_parasitized", nullptr},
              {"confidence", nullptr},
              {"decision", d.decision},
              {"reason", d.reason},
              {"screen_instead", d.whole_field}};
    json r = {{"filename", o.filename},
              {"label", d.label},
              {"probability_parasitized", o.probability},
              {"confidence", d.confidence},
              {"decision", d.decision}};
    if (!o.explanation.is_null()) r["explanation"] = o.explanation;
    return r;
  }

  // The operating point a request asks for with ?operating_point=NAME, or `fallback`; nullptr
  // (and the error answered) for a name the model does not have.
  const OperatingPoint* point_of(const HttpRequest& req, HttpResponse& res, const Classifier& model,
                                 const OperatingPoint* fallback) {
    const auto it = req.query.find("operating_point");
    if (it == req.query.end()) return fallback;
    try {
      return &model.operating_point(it->second);
    } catch (const std::invalid_argument&) {
      on_error(req, res, 400,
               "unknown operating point '" + printable(it->second, 64) +
                   "'; this model has: " + model.info().operating_point_names());
      return nullptr;
    }
  }

  // The uploads of a request, or the request's error answered (empty).
  std::vector<Upload> uploads_or_error(const HttpRequest& req, HttpResponse& res,
                                       const std::string& what) {
    std::vector<Upload> uploads = uploads_of(req);
    if (uploads.empty()) {
      on_error(req, res, 400, "no " + what + ": send multipart field 'file' or an image body");
    } else if (uploads.size() > opt_.http.max_parts) {
      on_error(req, res, 413,
               "too many files: " + std::to_string(uploads.size()) + " (limit " +
                   std::to_string(opt_.http.max_parts) + ")");
      uploads.clear();
    }
    return uploads;
  }

  // Classifies the request's uploads, or answers the request's error itself (returns false).
  bool classify_request(const HttpRequest& req, HttpResponse& res, std::vector<Upload>& uploads,
                        std::vector<FileOutcome>& outcomes) {
    const OperatingPoint* point = point_of(req, res, model_, default_point_);
    if (!point) return false;
    uploads = uploads_or_error(req, res, "file");
    if (uploads.empty()) return false;
    if (!classify(uploads, outcomes, query_flag(req, "explain"))) {
      on_error(req, res, 503, "server busy: too much work of this kind is waiting, retry shortly");
      return false;
    }
    for (auto& o : outcomes) {
      refuse_non_finite(o);
      if (!o.error.empty()) continue;
      o.decision = decide_cell(o.check, o.probability, o.atypicality, *point);
      if (o.decision.rejected()) o.explanation = nullptr;  // no evidence map for a non-cell
      metrics_.count("malaria_predictions_total", "decision=\"" + o.decision.decision + "\"");
    }
    return true;
  }

  void handle_api_predict(const HttpRequest& req, HttpResponse& res) {
    std::vector<Upload> uploads;
    std::vector<FileOutcome> outcomes;
    if (!classify_request(req, res, uploads, outcomes)) return;
    json results = json::array();
    size_t parasitized = 0, uninfected = 0, inconclusive = 0, rejected = 0, errors = 0;
    std::set<int> error_statuses;
    for (const auto& o : outcomes) {
      json r = result_json(o);
      if (!o.error.empty()) {
        errors++;
        error_statuses.insert(o.status);
      } else if (o.decision.rejected()) {
        rejected++;
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
                   {"rejected", rejected},
                   {"errors", errors},
                   {"parasitized_percent", cells ? 100.0 * parasitized / cells : 0.0}}}};
    int status = 200;
    if (cells == 0 && rejected == 0) {
      status = error_statuses.count(500)   ? 500
               : error_statuses.count(422) ? 422
               : error_statuses.count(413) ? 413
                                           : 415;
      body["error"] = "no file could be classified";
    }
    send_json(res, status, body);
  }

  // The original app's form target: HTML in, HTML out, no JavaScript needed.
  void handle_form_predict(const HttpRequest& req, HttpResponse& res) {
    std::vector<Upload> uploads;
    std::vector<FileOutcome> outcomes;
    if (!classify_request(req, res, uploads, outcomes)) return;
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
      if (o.decision.rejected()) {
        html << "<p class=\"badge Rejected\">Rejected: " << html_escape(o.decision.reason)
             << "</p></article>";
        continue;
      }
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

  // Screens each uploaded field with the field model; its cells go through the work queue in
  // fixed batches. Bad files get an error entry each; failed fields get no parasitemia.
  // The crops go to the queue in forward passes of at most --max-batch, all submitted at once,
  // so the worker can interleave other kinds of work between them.
  CellScorer queue_scorer(const WorkQueue::Ticket& ticket) {
    return [this, &ticket](std::vector<float> pixels, size_t n) {
      const size_t batch = std::max<size_t>(1, opt_.work.max_batch);
      const size_t plane = n ? pixels.size() / n : 0;
      std::vector<std::future<Classifier::Scores>> parts;
      for (size_t first = 0; first < n; first += batch) {
        const size_t count = std::min(batch, n - first);
        parts.push_back(queue_.predict(ticket, *field_model_,
                                       std::vector<float>(pixels.begin() + first * plane,
                                                          pixels.begin() + (first + count) * plane),
                                       count));
      }
      std::vector<float> probabilities;
      for (auto& part : parts) {
        const std::vector<float> p = part.get().probability;
        probabilities.insert(probabilities.end(), p.begin(), p.end());
      }
      return probabilities;
    };
  }

  // The detector's forward pass goes through the queue too, under the screening's ticket.
  FieldSegmenter queue_segmenter(const WorkQueue::Ticket& ticket) {
    if (!detector_) return classic_segmenter();
    return detector_segmenter(*detector_, [this, &ticket](std::vector<float> input, cv::Size size) {
      return queue_.detect(ticket, *detector_, std::move(input), size).get();
    });
  }

  // How the slide's figures are reported: the correction's rates and how this screening runs,
  // and ?rbc_per_ul=. Answers 400 and returns nullopt for a bad count.
  std::optional<SlideOptions> slide_options_of(const HttpRequest& req, HttpResponse& res) {
    SlideOptions options;
    options.error_rates = field_error_rates_;
    options.segmenter = detector_ ? "detector" : "classic";
    const auto asked_point = req.query.find("operating_point");
    options.operating_point =
        asked_point != req.query.end() ? asked_point->second : field_operating_point(*field_model_);
    if (const auto rbc = req.query.find("rbc_per_ul"); rbc != req.query.end()) {
      double value = 0;
      const char* end = rbc->second.data() + rbc->second.size();
      const auto parsed = std::from_chars(rbc->second.data(), end, value);
      if (parsed.ec != std::errc() || parsed.ptr != end || !(value >= 1e5 && value <= 1e7)) {
        on_error(req, res, 400,
                 "rbc_per_ul must be a number of red cells per microlitre "
                 "between 100000 and 10000000");
        return std::nullopt;
      }
      options.rbc_per_ul = value;
      options.rbc_assumed = false;
    }
    return options;
  }

  void handle_api_screen(const HttpRequest& req, HttpResponse& res) {
    if (!field_model_) {
      on_error(req, res, 404, "no field model loaded: start the server with --field-model FILE");
      return;
    }
    const OperatingPoint* point = point_of(req, res, *field_model_, default_field_point_);
    if (!point) return;
    const std::optional<SlideOptions> slide_options = slide_options_of(req, res);
    if (!slide_options) return;
    const std::vector<Upload> uploads = uploads_or_error(req, res, "field image");
    if (uploads.empty()) return;
    size_t megapixels = 0;
    for (const Upload& upload : uploads) megapixels += field_megapixels(upload);
    std::optional<WorkQueue::Ticket> ticket = queue_.admit(WorkKind::screen, megapixels);
    if (!ticket) {
      on_error(req, res, 503, "server busy: too many fields are being screened, retry shortly");
      return;
    }
    const CellScorer scorer = queue_scorer(*ticket);
    const FieldSegmenter segmenter = queue_segmenter(*ticket);
    const bool overlays = query_flag(req, "overlay");
    std::vector<ScreenedField> fields;
    json overlay_images = json::array(), errors = json::array();
    std::set<int> statuses;
    for (const Upload& upload : uploads) {
      try {
        // Past the drain time, fields not yet begun are not decoded and segmented for nothing.
        if (queue_.cancelled()) throw WorkCancelled("server is shutting down");
        const DecodedUpload image =
            decode_upload(upload, kFieldImageLimits, kMaxFieldFileBytes, field_gate_);
        if (queue_.cancelled()) throw WorkCancelled("server is shutting down");
        fields.push_back(
            screen_field(*field_model_, *point, segmenter, image.bgr, upload.filename, scorer));
        if (overlays)
          overlay_images.push_back(base64_encode(
              encode_png(fit_within(draw_screening_overlay(image.bgr, fields.back()), 1024))));
        metrics_.count("malaria_fields_screened_total",
                       "verdict=\"" + fields.back().quality.verdict + "\"");
      } catch (const UploadError& e) {
        errors.push_back(
            {{"filename", upload.filename}, {"error", e.message}, {"status", e.status}});
        statuses.insert(e.status);
      }
    }
    ticket.reset();
    if (queue_.stats().admitted[static_cast<size_t>(WorkKind::screen)] == 0) give_memory_back();
    const auto slide = req.query.find("slide");
    json body = screening_json(
        fields, slide == req.query.end() ? "slide" : printable(slide->second, 100), *slide_options);
    for (size_t i = 0; i < overlay_images.size(); ++i)
      body["fields"][i]["overlay_png"] = std::move(overlay_images[i]);
    body["errors"] = errors;
    body["model"] = field_model_json();
    int status = 200;
    if (fields.empty()) {
      status = statuses.count(422) ? 422 : statuses.count(413) ? 413 : 415;
      body["error"] = "no field could be screened";
    }
    send_json(res, status, body);
  }

  json field_model_json() const {
    json j = {{"id", field_model_id_},
              {"name", field_model_->metadata().value("name", "")},
              {"operating_point", field_operating_point(*field_model_)},
              {"segmenter", detector_ ? "detector" : "classic"}};
    if (detector_)
      j["detector"] = {{"id", detector_id_}, {"name", detector_->metadata().value("name", "")}};
    return j;
  }

  json model_json() const {
    json j = model_.metadata();
    j["id"] = model_id_;
    if (j.contains("typicality")) {  // the rule, not its matrices (a few hundred KB)
      j["typicality"].erase("means");
      j["typicality"].erase("precision");
    }
    if (field_model_) j["field_model"] = field_model_json();
    // The decision rule as the server applies it (older files store only a threshold and band).
    const json rule = model_.info().to_metadata();
    for (const char* key : {"temperature", "operating_points"}) j[key] = rule[key];
    j["operating_point"] = opt_.operating_point.empty() ? rule["operating_point"].get<std::string>()
                                                        : opt_.operating_point;
    return j;
  }

  // --- routes ---------------------------------------------------------------------------------

  void add_asset_routes() {
    for (const auto& asset : web_assets()) {
      router_.add("GET", asset.path, [&asset](const HttpRequest&, HttpResponse& res) {
        const bool text = asset.content_type.rfind("text/", 0) == 0;
        res.content_type = asset.content_type + (text ? "; charset=utf-8" : "");
        res.body = std::string(asset.content);
        if (asset.path == "/openapi.json") return;
        res.set_header("Content-Security-Policy",
                       asset.path.rfind("/docs", 0) == 0 ? kDocsCsp : page_csp());
        res.set_header("Cache-Control", asset.path == "/" ? "no-cache" : "public, max-age=3600");
      });
    }
  }

  void add_routes() {
    add_asset_routes();
    auto api_predict = [this](const auto& req, auto& res) { handle_api_predict(req, res); };
    auto form_predict = [this](const auto& req, auto& res) { handle_form_predict(req, res); };
    router_.add("POST", "/api/v1/predict", api_predict);
    router_.add("POST", "/api/v1/screen",
                [this](const auto& req, auto& res) { handle_api_screen(req, res); });
    router_.add("POST", "/predict/", form_predict);
    router_.add("POST", "/predict", form_predict);
    router_.add("GET", "/api/v1/model",
                [this](const auto&, auto& res) { send_json(res, 200, model_json()); });
    if (slides_)
      slides_->add_routes(router_);
    else  // the page asks before showing its Slides section
      router_.add("GET", "/api/v1/me", [](const auto&, auto& res) {
        send_json(res, 200, {{"records", false}});
      });
    router_.add("GET", "/health", [](const auto&, auto& res) {
      send_json(res, 200, {{"status", "ok"}});
    });
    // With records, ready also means the database answers: a balancer then sends uploads only
    // to replicas that can store them.
    router_.add("GET", "/ready", [this](const auto& req, auto& res) {
      if (!ready_) return on_error(req, res, 503, "not ready");
      if (store_) {
        try {
          store_->schema_version();
        } catch (const std::exception& e) {
          return on_error(req, res, 503,
                          std::string("the record database does not answer: ") + e.what());
        }
      }
      send_json(res, 200, {{"ready", true}, {"model", model_id_}});
    });
    router_.add("GET", "/metrics", [this](const auto&, auto& res) {
      update_state_metrics();
      res.content_type = "text/plain; version=0.0.4";
      res.body = metrics_.render();
      res.set_header("Cache-Control", "no-store");
    });
  }

  ServerOptions opt_;
  Classifier model_;
  const OperatingPoint* default_point_ = nullptr;
  std::unique_ptr<Classifier> field_model_;
  std::unique_ptr<CellDetector> detector_;
  std::optional<FieldErrorRates> field_error_rates_;
  std::string detector_id_;
  const OperatingPoint* default_field_point_ = nullptr;
  std::string field_model_id_;
  std::unique_ptr<SlideStore> store_;
  std::unique_ptr<SlideApi> slides_;
  Router router_;
  std::string model_id_;
  MetricsRegistry metrics_;
  // Decoded images held at once, per kind of upload, so that one kind cannot starve another.
  Gate cell_gate_{4}, explain_gate_{2}, field_gate_{2};
  std::atomic<bool> ready_{false};
  WorkQueue queue_;
  // Last: destroyed first, so its threads stop before anything their handlers use is gone.
  HttpServer http_;
};

// Libraries start threads before main (OpenBLAS, OpenMP), so the stop signals cannot be kept for
// one thread with a mask: the handler, whichever thread runs it, writes to a pipe that the main
// thread reads (the self-pipe pattern; write() is async-signal-safe).
int g_stop_pipe[2] = {-1, -1};
extern "C" void on_server_signal(int sig) {
  const char c = static_cast<char>(sig);
  [[maybe_unused]] auto n = ::write(g_stop_pipe[1], &c, 1);
}

int wait_for_stop_signal() {
  if (::pipe(g_stop_pipe) != 0) throw std::runtime_error("cannot create the shutdown pipe");
  struct sigaction action {};
  action.sa_handler = on_server_signal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  char sig = 0;
  while (::read(g_stop_pipe[0], &sig, 1) < 0 && errno == EINTR) {
  }
  return sig;
}

}  // namespace

int run_server(const ServerOptions& options) {
  spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%^%l%$] %v");  // a server log wants times
  set_compute_threads(options.compute_threads);
  App app(options);
  app.http().start(options.host, options.port);
  app.set_ready(true);
  spdlog::info("serving model {} at http://{}:{}/ ({} compute threads)", app.model_id(),
               options.host, app.http().port(), compute_threads());
  const int sig = wait_for_stop_signal();
  spdlog::info("received {}, finishing requests in flight", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  app.set_ready(false);
  app.queue().flush();  // batches stop waiting to fill: answer what is there
  app.http().stop([&app] {
    spdlog::warn("drain time over: answering the requests still working with 503");
    app.queue().cancel();
  });
  spdlog::info("stopped");
  return 0;
}

}  // namespace malaria
