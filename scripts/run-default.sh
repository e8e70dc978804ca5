#!/usr/bin/env bash
# `make run`: serve the bundled models (models/) with the upload page, the slides workflow, the JSON
# API and the docs; records are kept in the embedded default store (SQLite under the user's data
# folder, or $MALARIA_STORE).
set -euo pipefail
bin=${1:-build/malaria}
model=${2:-models/malaria-cellnet-64.pt}
port=${PORT:-8000}
if [ -z "${MALARIA_STORE:-}" ]; then
  data_home=${XDG_DATA_HOME:-$HOME/.local/share}
  mkdir -p "$data_home/malaria"
  MALARIA_STORE="sqlite:$data_home/malaria/records.db"
fi
echo "Serving $model; records in $MALARIA_STORE"
echo "Open http://127.0.0.1:$port/  (slides: http://127.0.0.1:$port/#slides, API docs: http://127.0.0.1:$port/docs). Ctrl-C stops the server."
exec "$bin" serve --model "$model" --host 127.0.0.1 --port "$port" --store "$MALARIA_STORE"
