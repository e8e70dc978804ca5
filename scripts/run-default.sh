#!/usr/bin/env bash
# `make run`: serve the bundled model (models/) with the upload page, the JSON API and the docs.
set -euo pipefail
bin=${1:-build/malaria}
model=${2:-models/malaria-cellnet-64.pt}
port=${PORT:-8000}
echo "Serving $model"
echo "Open http://127.0.0.1:$port/  (API docs: http://127.0.0.1:$port/docs). Ctrl-C stops the server."
exec "$bin" serve --model "$model" --host 127.0.0.1 --port "$port"
