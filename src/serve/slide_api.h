// The lab-records routes: slides, their fields (screened through the server's work queue and
// stored), reviews, signing, the audit trail, reports and corrections, and who may do what.
// Torch-free: the screening itself is a callback into the server.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "serve/http_server.h"
#include "serve/router.h"
#include "store/slide_store.h"

namespace malaria {

struct ScreenedUpload {
  int status = 200;   // otherwise the upload's error status: nothing is stored
  std::string error;  // why
  FieldInput field;   // what to store
};
// Screens one uploaded field image (bytes as received); throws WorkCancelled or similar for
// a server that must answer 503.
using FieldScreener = std::function<ScreenedUpload(
    const std::string& filename, const std::string& bytes, const HttpRequest& req)>;

// A stored cell's Grad-CAM overlay as PNG bytes, from its field's kept image.
using CellExplainer =
    std::function<std::string(const std::string& field_image, const StoredCell& cell)>;

struct SlideApiOptions {
  std::string api_key;  // when set, it acts as an admin ("api-key")
  // The models that make the calls, for reports: {"id", "name", "validated": [lines]}.
  nlohmann::json model_facts;
  size_t max_files = 64;
};

class SlideApi {
 public:
  SlideApi(SlideStore& store, SlideApiOptions options, FieldScreener screen, CellExplainer explain,
           HttpServer::ErrorRenderer on_error);
  void add_routes(Router& router);

  // Who sends this request: the API key's holder, a user's token, or, while no user exists and
  // no API key is set, the single local user "local" (an admin). nullopt: not allowed in.
  std::optional<User> user_of(const HttpRequest& req);

 private:
  using Handler =
      std::function<void(const HttpRequest&, HttpResponse&, const PathParams&, const User&)>;
  // Wraps a handler: finds the user (401 without one) and turns StoreError and database
  // failures into their answers.
  Router::ParamHandler guarded(Handler handler);

  void add_slide_routes(Router& router);
  void add_review_routes(Router& router);  // review, sign, audit, reports, corrections
  void add_user_routes(Router& router);
  void create_slide(const HttpRequest& req, HttpResponse& res, const User& by);
  void sign(HttpResponse& res, const std::string& id, const User& by);
  void add_user(const HttpRequest& req, HttpResponse& res, const User& by);
  void list_slides(const HttpRequest& req, HttpResponse& res, const User& by);
  void get_slide(const HttpRequest& req, HttpResponse& res, const std::string& id, const User& by);
  void add_fields(const HttpRequest& req, HttpResponse& res, const std::string& id, const User& by);
  void review(const HttpRequest& req, HttpResponse& res, const std::string& cell, const User& by);
  void report(const HttpRequest& req, HttpResponse& res, const std::string& id, const User& by);

  SlideStore& store_;
  SlideApiOptions opt_;
  FieldScreener screen_;
  CellExplainer explain_;
  HttpServer::ErrorRenderer on_error_;
};

}  // namespace malaria
