#!/usr/bin/env bash
# A throwaway round-robin load balancer on loopback for tests and the benchmark:
# `start DIR PORT BACKEND_PORT...` listens on 127.0.0.1:PORT; `stop DIR` ends it. Needs Debian's haproxy.
set -euo pipefail

usage() { echo "usage: $0 start DIR PORT BACKEND_PORT... | stop DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)

case "$action" in
start)
    [ $# -ge 4 ] || usage
    port=$3; shift 3
    command -v haproxy >/dev/null || { echo "haproxy is not installed (apt-get install -y haproxy)" >&2; exit 1; }
    {
        echo "global"
        echo "    maxconn 1000"
        echo "defaults"
        echo "    mode http"
        echo "    timeout connect 2s"
        echo "    timeout client 120s"
        echo "    timeout server 120s"
        echo "    retries 2"
        echo "    option redispatch"
        # Engram's calls are idempotent (content-addressed writes, forgets by id): a request a dying replica never
        # answered may go to another one.
        echo "    retry-on conn-failure empty-response"
        echo "    option http-buffer-request"
        echo "frontend engram"
        echo "    bind 127.0.0.1:$port"
        echo "    default_backend replicas"
        echo "backend replicas"
        echo "    balance roundrobin"
        echo "    option httpchk GET /healthz"
        # A replica is taken out after three failed checks in a row (one slow answer on a loaded machine is not death).
        echo "    timeout check 10s"
        echo "    default-server inter 1s fall 3 rise 1"
        n=0
        for backend in "$@"; do
            echo "    server r$n 127.0.0.1:$backend check"
            n=$((n + 1))
        done
    } >"$dir/haproxy.cfg"
    haproxy -f "$dir/haproxy.cfg" -D -p "$dir/haproxy.pid" >"$dir/haproxy.log" 2>&1
    echo "http://127.0.0.1:$port"
    ;;
stop)
    if [ -f "$dir/haproxy.pid" ]; then
        for pid in $(cat "$dir/haproxy.pid"); do kill "$pid" 2>/dev/null || true; done
        rm -f "$dir/haproxy.pid"
    fi
    ;;
*) usage ;;
esac
