#!/usr/bin/env bash
# A throwaway Redis on loopback for tests, CI and the benchmark: `start DIR` prints its URL, `stop DIR` ends it.
# AOF is on with `appendfsync always` (an acknowledged write is on disk) and RDB snapshots are off.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

case "$action" in
start)
    command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install -y redis-server)" >&2; exit 1; }
    port=$(free_port)
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
        --appendonly yes --appendfsync always --save "" --protected-mode yes >/dev/null
    # Wait for the server to answer, not for a fixed time.
    for _ in $(seq 1 300); do
        if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
            echo "$port" >"$dir/redis.port"
            echo "redis://127.0.0.1:$port/0"
            exit 0
        fi
        sleep 0.1
    done
    echo "redis did not answer on port $port; see $dir/redis.log" >&2
    exit 1
    ;;
stop)
    if [ -f "$dir/redis.pid" ]; then
        pid=$(cat "$dir/redis.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$dir/redis.pid"
    fi
    ;;
*) usage ;;
esac
