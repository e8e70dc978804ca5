// Maps (method, path) to a handler; unknown paths are 404, known paths with another method 405.
// A path may hold {name} segments ("/api/v1/slides/{id}/sign"): each matches one non-empty
// segment, handed to the handler by name.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "serve/http_server.h"

namespace malaria {

using PathParams = std::map<std::string, std::string>;

class Router {
 public:
  using Handler = std::function<void(const HttpRequest&, HttpResponse&)>;
  using ParamHandler = std::function<void(const HttpRequest&, HttpResponse&, const PathParams&)>;

  void add(const std::string& method, const std::string& path, Handler handler);
  void add(const std::string& method, const std::string& pattern, ParamHandler handler);
  // Runs the route's handler, or answers 404 / 405 (with Allow) through on_error.
  void dispatch(const HttpRequest& req, HttpResponse& res,
                const HttpServer::ErrorRenderer& on_error) const;
  // The registered path or pattern, or "other": a metrics label that cannot grow without bound.
  std::string route_label(const std::string& path) const;

 private:
  struct Pattern {
    std::string text;
    std::vector<std::string> segments;
    std::map<std::string, ParamHandler> methods;
  };
  const Pattern* match(const std::string& path, PathParams* params) const;

  std::map<std::string, std::map<std::string, Handler>> routes_;  // path -> method -> handler
  std::vector<Pattern> patterns_;
};

}  // namespace malaria
