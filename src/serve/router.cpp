#include "serve/router.h"

#include "util/text.h"

namespace malaria {

namespace {

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> segments;
  size_t start = 1;
  while (start <= path.size()) {
    const size_t end = std::min(path.find('/', start), path.size());
    segments.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  return segments;
}

bool is_param(const std::string& segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

}  // namespace

void Router::add(const std::string& method, const std::string& path, Handler handler) {
  routes_[path][method] = std::move(handler);
}

void Router::add(const std::string& method, const std::string& pattern, ParamHandler handler) {
  for (auto& p : patterns_)
    if (p.text == pattern) {
      p.methods[method] = std::move(handler);
      return;
    }
  patterns_.push_back({pattern, split_path(pattern), {{method, std::move(handler)}}});
}

const Router::Pattern* Router::match(const std::string& path, PathParams* params) const {
  if (path.empty() || path[0] != '/') return nullptr;
  const std::vector<std::string> segments = split_path(path);
  for (const auto& p : patterns_) {
    if (p.segments.size() != segments.size()) continue;
    PathParams found;
    bool ok = true;
    for (size_t i = 0; ok && i < segments.size(); ++i) {
      if (is_param(p.segments[i]))
        ok = !segments[i].empty() &&
             (found[p.segments[i].substr(1, p.segments[i].size() - 2)] = segments[i], true);
      else
        ok = p.segments[i] == segments[i];
    }
    if (ok) {
      if (params) *params = std::move(found);
      return &p;
    }
  }
  return nullptr;
}

void Router::dispatch(const HttpRequest& req, HttpResponse& res,
                      const HttpServer::ErrorRenderer& on_error) const {
  std::string allow;
  if (const auto route = routes_.find(req.path); route != routes_.end()) {
    const auto handler = route->second.find(req.method);
    if (handler != route->second.end()) return handler->second(req, res);
    for (const auto& [method, unused] : route->second)
      allow += (allow.empty() ? "" : ", ") + method;
  } else if (PathParams params; const Pattern* p = match(req.path, &params)) {
    const auto handler = p->methods.find(req.method);
    if (handler != p->methods.end()) return handler->second(req, res, params);
    for (const auto& [method, unused] : p->methods) allow += (allow.empty() ? "" : ", ") + method;
  } else {
    return on_error(req, res, 404, "no such route: " + printable(req.path));
  }
  on_error(req, res, 405,
           "method " + printable(req.method, 20) + " not allowed on " + printable(req.path) +
               " (allowed: " + allow + ")");
  res.set_header("Allow", allow);
}

std::string Router::route_label(const std::string& path) const {
  if (routes_.count(path)) return path;
  const Pattern* p = match(path, nullptr);
  return p ? p->text : "other";
}

}  // namespace malaria
