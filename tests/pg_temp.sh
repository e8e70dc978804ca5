#!/usr/bin/env bash
# A throwaway PostgreSQL for tests: Debian's server, initdb and pg_ctl in DIR, on loopback only.
#   pg_temp.sh start DIR        prints the URL of database "malaria"
#   pg_temp.sh createdb DIR NAME  prints the URL of a new, empty database NAME
#   pg_temp.sh stop DIR
#   pg_temp.sh resume DIR        starts a stopped server again, same data and port
# PostgreSQL refuses to run as root: as root, the server runs as the "postgres" user.
set -euo pipefail
cmd=$1
dir=$2
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg=()
[ "$(id -u)" -eq 0 ] && as_pg=(runuser -u postgres --)
port_of() { sed -n 's/^port=//p' "$dir/port"; }
case $cmd in
  start)
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    "${as_pg[@]}" "$bin/initdb" -D "$dir/data" -U malaria --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
    # A free loopback port: bind to port 0 and let the kernel choose.
    port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    echo "port=$port" >"$dir/port"
    "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 120 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200" start >/dev/null
    "${as_pg[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U malaria malaria
    echo "postgresql://malaria@127.0.0.1:$port/malaria"
    ;;
  createdb)
    "${as_pg[@]}" "$bin/createdb" -h 127.0.0.1 -p "$(port_of)" -U malaria "$3"
    echo "postgresql://malaria@127.0.0.1:$(port_of)/$3"
    ;;
  stop)
    "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
  resume)
    "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 120 \
      -o "-c listen_addresses=127.0.0.1 -p $(port_of) -k $dir -c max_connections=200" start >/dev/null
    ;;
  *)
    echo "usage: pg_temp.sh start|createdb|stop|resume DIR [NAME]" >&2
    exit 2
    ;;
esac
