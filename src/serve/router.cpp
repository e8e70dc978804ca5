#include "serve/router.h"

#include "util/text.h"

namespace malaria {

void Router::add(const std::string& method, const std::string& path, Handler handler) {
  routes_[path][method] = std::move(handler);
}

void Router::dispatch(const HttpRequest& req, HttpResponse& res,
                      const HttpServer::ErrorRenderer& on_error) const {
  const auto route = routes_.find(req.path);
  if (route == routes_.end())
    return on_error(req, res, 404, "no such route: " + printable(req.path));
  const auto handler = route->second.find(req.method);
  if (handler != route->second.end()) return handler->second(req, res);
  std::string allow;
  for (const auto& [method, unused] : route->second) allow += (allow.empty() ? "" : ", ") + method;
  on_error(req, res, 405,
           "method " + printable(req.method, 20) + " not allowed on " + req.path +
               " (allowed: " + allow + ")");
  res.set_header("Allow", allow);
}

std::string Router::route_label(const std::string& path) const {
  return routes_.count(path) ? path : "other";
}

}  // namespace malaria
