// `malaria serve`: the HTTP server (upload page, JSON API, OpenAPI docs, health and metrics).
#pragma once

#include <string>

#include "serve/http_server.h"
#include "serve/work_queue.h"

namespace malaria {

struct ServerOptions {
  std::string model_path;
  std::string field_model_path;  // for POST /api/v1/screen; empty: that route answers 404
  // The cell detector screening finds cells with; empty: the classical segmentation.
  std::string detector_path;
  std::string host = "127.0.0.1";
  int port = 8000;
  int compute_threads = 0;      // LibTorch threads; 0: all cores
  HttpLimits http;              // connections, body size, files per request, deadlines, drain time
  WorkLimits work;              // batching and what each kind of model work may hold at once
  std::string api_key;          // when set, /api/ routes need "Authorization: Bearer KEY"
  std::string cors_origin;      // when set, allowed cross-origin caller of the API
  std::string operating_point;  // empty: the model file's default
  // Where slides, fields, reviews and users are kept (sqlite:PATH or postgresql://...); empty:
  // nothing is kept and the /api/v1/slides routes answer 404.
  std::string store_url;
};

// Loads the model, serves until SIGINT or SIGTERM, then answers every request it accepted
// (finished within the drain time, or 503 with Retry-After after it) and returns 0.
// Throws on a bad model file or a port that cannot be bound.
int run_server(const ServerOptions& options);

}  // namespace malaria
