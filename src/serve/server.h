// `malaria serve`: the HTTP server (upload page, JSON API, OpenAPI docs, health and metrics).
#pragma once

#include <cstddef>
#include <string>

namespace malaria {

struct ServerOptions {
  std::string model_path;
  std::string field_model_path;  // for POST /api/v1/screen; empty: that route answers 404
  std::string host = "127.0.0.1";
  int port = 8000;
  int compute_threads = 0;       // LibTorch threads; 0: all cores
  int max_connections = 1000;    // open connections at once; each has its own thread
  size_t max_batch = 32;         // images per forward pass
  int batch_wait_ms = 0;         // extra wait to fill a batch; 0 batches whatever is queued
  size_t queue_capacity = 1024;  // images waiting for inference before 503
  int header_timeout_s = 10;     // a request's headers must arrive within this (slow clients)
  double max_upload_mb = 64;     // a request; smear-field photos may be up to 20 MB each
  size_t max_files = 64;
  std::string api_key;          // when set, /api/ routes need "Authorization: Bearer KEY"
  std::string cors_origin;      // when set, allowed cross-origin caller of the API
  std::string operating_point;  // empty: the model file's default
};

// Loads the model, serves until SIGINT or SIGTERM, finishes requests in flight, returns 0.
// Throws on a bad model file or a port that cannot be bound.
int run_server(const ServerOptions& options);

}  // namespace malaria
