#!/usr/bin/env bash
# Installs every Debian package the project needs. Idempotent; run as root (or via sudo).
set -euo pipefail

packages=(
  build-essential cmake pkg-config git ca-certificates clang-format
  libtorch-dev libopenblas-dev libopenblas0-openmp
  libopencv-dev libgoogle-perftools-dev
  libcpp-httplib-dev libmicrohttpd-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-dev
  gnuplot-nox python3 python3-prometheus-client
  nodejs chromium wrk graphviz fonts-dejavu-core
  libcurl4-openssl-dev libarchive-dev libssl-dev
  libsqlite3-dev libpqxx-dev libsodium-dev postgresql haproxy
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# The machine image ships npm outside dpkg; Debian's npm package conflicts with it.
command -v npm >/dev/null 2>&1 || missing+=(npm)

if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# LibTorch links whatever libblas.so.3 is selected; the reference BLAS is ~30x slower.
openblas=$(update-alternatives --list libblas.so.3-x86_64-linux-gnu 2>/dev/null | grep openblas | head -1 || true)
if [ -n "$openblas" ]; then
  current=$(readlink -f /etc/alternatives/libblas.so.3-x86_64-linux-gnu 2>/dev/null || true)
  if [ "$current" != "$(readlink -f "$openblas")" ]; then
    ${SUDO:-} update-alternatives --set libblas.so.3-x86_64-linux-gnu "$openblas" >/dev/null
  fi
fi
# Front-end packages (Swagger UI, Playwright, OpenAPI validator), pinned by web/package-lock.json.
here=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$here/web/node_modules/swagger-ui-dist" ] || [ "$here/web/package-lock.json" -nt "$here/web/node_modules/.package-lock.json" ]; then
  (cd "$here/web" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "install-deps: all packages present"
