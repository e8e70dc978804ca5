// Maps (method, path) to a handler; unknown paths are 404, known paths with another method 405.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "serve/http_server.h"

namespace malaria {

class Router {
 public:
  using Handler = std::function<void(const HttpRequest&, HttpResponse&)>;

  void add(const std::string& method, const std::string& path, Handler handler);
  // Runs the route's handler, or answers 404 / 405 (with Allow) through on_error.
  void dispatch(const HttpRequest& req, HttpResponse& res,
                const HttpServer::ErrorRenderer& on_error) const;
  // The registered path, or "other": a metrics label whose values cannot grow without bound.
  std::string route_label(const std::string& path) const;

 private:
  std::map<std::string, std::map<std::string, Handler>> routes_;  // path -> method -> handler
};

}  // namespace malaria
