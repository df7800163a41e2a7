#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster on loopback for the tests and benchmarks (Debian's postgresql-15),
# owned by the postgres user, password authentication (scram-sha-256) for TCP, nothing else listening.
#
#   scripts/postgres/cluster.sh start [--durable]   # prints host=… port=… user=… password_file=…
#   scripts/postgres/cluster.sh stop
#
# Idempotent and safe from two callers at once (flock): a cluster already running in $MEETPUNT_PG_DIR
# (default /var/tmp/meetpunt-pg) is reused. Without --durable it runs with fsync off (tests: a crash of
# the test machine loses nothing that matters); --durable (benchmarks) keeps PostgreSQL's defaults. A
# running cluster started the other way is restarted. Needs root (initdb runs as postgres via runuser).
source "$(dirname "$0")/../lib.sh"

DIR=${MEETPUNT_PG_DIR:-/var/tmp/meetpunt-pg}
PORT=${MEETPUNT_PG_PORT:-55432}
BIN=/usr/lib/postgresql/15/bin
mode=fast
action=${1:-start}
[ "${2:-}" = "--durable" ] && mode=durable

[ "$(id -u)" -eq 0 ] || { echo "cluster.sh: needs root (runs PostgreSQL as the postgres user)" >&2; exit 2; }

as_pg() { runuser -u postgres -- "$@"; }
running() { [ -f "$DIR/data/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; }

mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
flock 9
[ -x "$BIN/pg_ctl" ] || [ "$action" = stop ] || ensure_packages postgresql-15

case "$action" in
stop)
    running && as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null
    exit 0
    ;;
start) ;;
*) echo "usage: cluster.sh start [--durable] | stop" >&2; exit 2 ;;
esac

if [ ! -f "$DIR/data/PG_VERSION" ]; then
    # Only a folder this script made (its marker) or an empty one is cleared: MEETPUNT_PG_DIR could
    # name anything, and this runs as root.
    if [ -d "$DIR" ] && [ ! -f "$DIR/.meetpunt-pg" ] && [ -n "$(ls -A "$DIR")" ]; then
        echo "cluster.sh: $DIR is not empty and not a cluster this script made; choose another MEETPUNT_PG_DIR" >&2
        exit 2
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR"
    touch "$DIR/.meetpunt-pg"
    chown postgres:postgres "$DIR"
    chmod 700 "$DIR"
    # A fresh random password each time the cluster is made; only its file, mode 0600, holds it.
    head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$DIR/password"
    chown postgres:postgres "$DIR/password"
    chmod 600 "$DIR/password"
    as_pg "$BIN/initdb" -D "$DIR/data" -U meetpunt --pwfile="$DIR/password" --auth-local=peer --auth-host=scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; exit 1; }
fi

if running && ! grep -qx "$mode" "$DIR/mode" 2>/dev/null; then
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null
fi
if ! running; then
    opts="-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DIR -c max_connections=200 -c shared_buffers=512MB"
    [ "$mode" = fast ] && opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    echo "$mode" > "$DIR/mode"
    # 9>&-: the server must not inherit the lock (it would hold it for as long as it runs).
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -o "$opts" -w -t 60 start >/dev/null 9>&- \
        || { tail -20 "$DIR/server.log" >&2; exit 1; }
fi
# The collector reads the password file as root; the tests read it as root too.
echo "host=127.0.0.1 port=$PORT user=meetpunt password_file=$DIR/password mode=$mode"
