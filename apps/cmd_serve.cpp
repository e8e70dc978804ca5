// serve: the upload page, JSON API and docs over HTTP.
#include <memory>

#include "commands.h"
#include "serve/server.h"

namespace malaria::cli {

namespace {

void add_limit_options(CLI::App* sub, ServerOptions& o) {
  sub->add_option("--max-batch", o.max_batch, "images per forward pass")
      ->check(number_in(1, 1024))
      ->capture_default_str();
  sub->add_option("--batch-wait-ms", o.batch_wait_ms, "extra wait to fill a batch")
      ->check(number_in(0, 10000))
      ->capture_default_str();
  sub->add_option("--queue", o.queue_capacity, "images allowed to wait before 503")
      ->check(number_in(1, 1e6))
      ->capture_default_str();
  sub->add_option("--max-connections", o.max_connections,
                  "open connections at once (more are refused)")
      ->check(number_in(1, 100000))
      ->capture_default_str();
  sub->add_option("--header-timeout", o.header_timeout_s,
                  "seconds a client has to send a request's headers")
      ->check(number_in(1, 3600))
      ->capture_default_str();
  sub->add_option("--max-upload-mb", o.max_upload_mb, "largest request body")
      ->check(number_in(0.01, 1024))
      ->capture_default_str();
  sub->add_option("--max-files", o.max_files, "most images in one request")
      ->check(number_in(1, 10000))
      ->capture_default_str();
}

Command add_serve(CLI::App& app, const GlobalOptions& global) {
  auto o = std::make_shared<ServerOptions>();
  auto* sub = app.add_subcommand("serve", "Serve the upload page, JSON API and API docs over HTTP");
  sub->add_option("--model", o->model_path, "model file")->required();
  sub->add_option("--host", o->host, "address to bind (loopback unless told otherwise)")
      ->capture_default_str();
  sub->add_option("--port", o->port)->check(number_in(0, 65535))->capture_default_str();
  add_limit_options(sub, *o);
  sub->add_option("--api-key", o->api_key, "require 'Authorization: Bearer KEY' on /api/ routes");
  sub->add_option("--cors-origin", o->cors_origin,
                  "allow this origin to call the API from a browser");
  sub->add_option("--inconclusive-band", o->inconclusive_band,
                  "|p - threshold| below this is Inconclusive (default: the model file's)")
      ->check(number_in(0, 0.5));
  return {sub, [o, &global] {
            ServerOptions options = *o;
            options.compute_threads = global.threads;
            return run_server(options);
          }};
}

}  // namespace

std::vector<Command> add_serve_commands(CLI::App& app, const GlobalOptions& global) {
  return {add_serve(app, global)};
}

}  // namespace malaria::cli
