// serve: the upload page, JSON API and docs over HTTP.
#include <memory>

#include "commands.h"
#include "serve/server.h"

namespace malaria::cli {

namespace {

void add_limit_options(CLI::App* sub, ServerOptions& o, double& max_upload_mb) {
  add_number(sub, "--max-batch", o.work.max_batch, 1, 1024, "images per forward pass");
  add_number(sub, "--batch-wait-ms", o.work.batch_wait_ms, 0, 600000, "extra wait to fill a batch");
  add_number(sub, "--queue", o.work.capacity[size_t(WorkKind::classify)], 1, 1e6,
             "cell images admitted for classification at once; more is 503");
  add_number(sub, "--explain-queue", o.work.capacity[size_t(WorkKind::explain)], 1, 1e6,
             "cell images admitted for ?explain=1 at once; more is 503");
  add_number(sub, "--screen-queue-mp", o.work.capacity[size_t(WorkKind::screen)], 1, 1e6,
             "megapixels of smear fields admitted for screening at once; more is 503");
  add_number(sub, "--max-connections", o.http.max_connections, 1, 100000,
             "open connections at once (more are refused)");
  add_number(sub, "--max-connections-per-ip", o.http.max_connections_per_ip, 0, 100000,
             "open connections from one address (0: no limit; behind a balancer every client "
             "has its address)");
  add_number(sub, "--header-timeout", o.http.header_deadline_s, 1, 3600,
             "seconds a client has to send a request's headers");
  add_number(sub, "--drain-seconds", o.http.drain_timeout_s, 0, 3600,
             "on SIGTERM, seconds the requests in flight get to finish; then they get 503");
  add_number(sub, "--max-upload-mb", max_upload_mb, 0.01, 1024, "largest request body");
  add_number(sub, "--max-files", o.http.max_parts, 1, 10000, "most images in one request");
}

Command add_serve(CLI::App& app, const GlobalOptions& global) {
  auto o = std::make_shared<ServerOptions>();
  auto* sub = app.add_subcommand("serve", "Serve the upload page, JSON API and API docs over HTTP");
  sub->add_option("--model", o->model_path, "model file")->required();
  sub->add_option("--field-model", o->field_model_path,
                  "model for POST /api/v1/screen (smear fields); default: the bundled one if "
                  "present, 'none' for no field screening");
  auto segmenter = std::make_shared<SegmenterChoice>();
  add_segmenter_options(sub, *segmenter);
  sub->add_option("--host", o->host, "address to bind (loopback unless told otherwise)")
      ->capture_default_str();
  add_number(sub, "--port", o->port, 0, 65535);
  auto max_upload_mb = std::make_shared<double>(o->http.max_body_bytes / double(1 << 20));
  add_limit_options(sub, *o, *max_upload_mb);
  sub->add_option("--api-key", o->api_key, "require 'Authorization: Bearer KEY' on /api/ routes");
  sub->add_option(
      "--store", o->store_url,
      "keep slides, fields, reviews and users: sqlite:PATH or postgresql://USER@HOST/DB "
      "(without it the server keeps nothing)");
  sub->add_option("--cors-origin", o->cors_origin,
                  "allow this origin to call the API from a browser");
  add_operating_point_option(sub, o->operating_point,
                             "the file's own; a request may ask for another with "
                             "?operating_point=NAME");
  return {sub, [o, max_upload_mb, segmenter, &global] {
            ServerOptions options = *o;
            options.http.max_body_bytes = static_cast<size_t>(*max_upload_mb * (1 << 20));
            if (options.field_model_path.empty()) options.field_model_path = default_field_model();
            if (options.field_model_path == "none") options.field_model_path.clear();
            // The detector is needed only where fields are screened.
            if (!options.field_model_path.empty() && segmenter->segmenter == "detector") {
              options.detector_path =
                  segmenter->detector.empty() ? default_detector_model() : segmenter->detector;
              if (options.detector_path.empty())
                throw std::runtime_error(
                    "no cell detector: pass --detector FILE, or --segmenter classic (this build "
                    "has no bundled detector)");
            }
            options.compute_threads = global.threads;
            return run_server(options);
          }};
}

}  // namespace

std::vector<Command> add_serve_commands(CLI::App& app, const GlobalOptions& global) {
  return {add_serve(app, global)};
}

}  // namespace malaria::cli
