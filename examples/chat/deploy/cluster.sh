#!/usr/bin/env bash
# Start or stop a demo chat cluster on loopback: N chat-server nodes sharing
# one PostgreSQL schema and one RabbitMQ namespace, behind nginx.
#
#   examples/chat/deploy/cluster.sh start [N]   # N nodes (default 3, at most 9)
#   examples/chat/deploy/cluster.sh status
#   examples/chat/deploy/cluster.sh stop
#
# Then: web client at http://127.0.0.1:8080, native TCP on 7000, legacy
# msgid-json on 6000, type-data on 8889, token-json on 9998, Thrift on 9999 —
# all through nginx.
#
# Environment:
#   DATABASE_URL   PostgreSQL (default postgres://postgres:postgres@127.0.0.1:5432/test)
#   AMQP_URL       RabbitMQ (default amqp://guest:guest@127.0.0.1:5672/%2f)
#   CHAT_SCHEMA    PostgreSQL schema for the cluster's data (default chat_demo)
#   CHAT_AMQP_NAMESPACE  RabbitMQ namespace (default chat_demo)
#   CLUSTER_DIR    where logs, pids and nginx's prefix go (default /tmp/chat-cluster)
#   PROFILE        cargo profile to build: release (default) or dev
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
dir=${CLUSTER_DIR:-/tmp/chat-cluster}
db=${DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/test}
amqp=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
schema=${CHAT_SCHEMA:-chat_demo}
ns=${CHAT_AMQP_NAMESPACE:-chat_demo}
profile=${PROFILE:-release}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The shipped nginx.conf, with its upstreams rewritten for n nodes.
nginx_conf() {
    local n=$1
    awk -v n="$n" '
        /upstream chat_http/       { base = 8080 }
        /upstream chat_native/     { base = 7000 }
        /upstream chat_msgid_json/ { base = 6000 }
        /upstream chat_type_data/  { base = 8890 }
        /upstream chat_token_json/ { base = 10010 }
        /upstream chat_thrift/     { base = 10000 }
        /^[ \t]*server 127\.0\.0\.1:[0-9]+ max_fails/ {
            if (base) {
                for (i = 1; i <= n; i++)
                    printf "        server 127.0.0.1:%d max_fails=1 fail_timeout=5s;\n", base + i
                base = 0
            }
            next
        }
        { print }
    ' "$here/nginx.conf"
}

with_schema() {
    case $db in
        *\?*) echo "$db&schema=$schema" ;;
        *) echo "$db?schema=$schema" ;;
    esac
}

start() {
    local n=${1:-3}
    [[ $n =~ ^[1-9]$ ]] || die "N must be 1..9"
    command -v nginx >/dev/null || die "nginx is missing: sudo apt-get install -y nginx libnginx-mod-stream"
    [[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] ||
        die "nginx's stream module is missing: sudo apt-get install -y libnginx-mod-stream"
    [[ -e $dir/nginx/nginx.pid ]] && die "a cluster is running from $dir; stop it first"
    say "building chat-server ($profile)"
    local flag=()
    [[ $profile == release ]] && flag=(--release)
    (cd "$root" && cargo build "${flag[@]}" -p chat --bin chat-server)
    local sub=$profile
    [[ $profile == dev ]] && sub=debug
    local bin=${CARGO_TARGET_DIR:-$root/target}/$sub/chat-server
    mkdir -p "$dir/nginx/logs" "$dir/nginx/temp"
    local store
    store=$(with_schema)
    for i in $(seq 1 "$n"); do
        say "node $i: http 127.0.0.1:$((8080 + i)), tcp $((7000 + i)), msgid-json $((6000 + i)), type-data $((8890 + i)), token-json $((10010 + i)), thrift $((10000 + i))"
        # The URLs (passwords included) go in the environment, not in
        # arguments that every user of the machine sees in `ps`.
        CHAT_STORE="$store" CHAT_AMQP="$amqp" NO_COLOR=1 "$bin" --node-id "node$i" --amqp-namespace "$ns" \
            --http "127.0.0.1:$((8080 + i))" --tcp "127.0.0.1:$((7000 + i))" \
            --msgid-json "127.0.0.1:$((6000 + i))" --type-data "127.0.0.1:$((8890 + i))" \
            --token-json "127.0.0.1:$((10010 + i))" \
            --thrift "127.0.0.1:$((10000 + i))" \
            --trusted-proxy 127.0.0.2 --proxy-protocol \
            >"$dir/node$i.log" 2>&1 &
        echo $! >"$dir/node$i.pid"
    done
    for i in $(seq 1 "$n"); do
        for _ in $(seq 1 100); do
            # The machine-readable readiness line (docs/chat.md, "Readiness").
            grep -q '^READY {' "$dir/node$i.log" && break
            kill -0 "$(cat "$dir/node$i.pid")" 2>/dev/null || die "node $i exited; see $dir/node$i.log"
            sleep 0.2
        done
    done
    nginx_conf "$n" >"$dir/nginx/nginx.conf"
    say "nginx on 127.0.0.1:8080 (HTTP/WS/SSE), 7000, 6000, 8889, 9998, 9999"
    nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf"
    say "open http://127.0.0.1:8080 — logs in $dir; stop with: $0 stop"
}

stop() {
    if [[ -e $dir/nginx/nginx.pid ]]; then
        nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -s quit || true
        for _ in $(seq 1 50); do [[ -e $dir/nginx/nginx.pid ]] || break; sleep 0.1; done
    fi
    for f in "$dir"/node*.pid; do
        [[ -e $f ]] || continue
        kill -INT "$(cat "$f")" 2>/dev/null || true
        rm -f "$f"
    done
    say "stopped"
}

status() {
    [[ -e $dir/nginx/nginx.pid ]] && echo "nginx: pid $(cat "$dir/nginx/nginx.pid")" || echo "nginx: stopped"
    for f in "$dir"/node*.pid; do
        [[ -e $f ]] || continue
        local pid
        pid=$(cat "$f")
        kill -0 "$pid" 2>/dev/null && echo "$(basename "$f" .pid): pid $pid" || echo "$(basename "$f" .pid): dead"
    done
}

case ${1:-} in
    start) start "${2:-3}" ;;
    stop) stop ;;
    status) status ;;
    nginx-conf) nginx_conf "${2:-3}" ;;
    *) die "usage: $0 start [N] | status | stop | nginx-conf [N]" ;;
esac
