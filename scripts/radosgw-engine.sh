#!/usr/bin/env bash
# A throwaway S3 server on loopback for tests, CI and the benchmark: Ceph radosgw on one monitor and one in-memory
# OSD, without cephx. `start DIR` prints endpoint=, access_key= and secret_key= lines; `stop DIR` ends every daemon.
# Needs the Debian packages ceph-mon, ceph-osd, radosgw (and ceph-common). Takes about a minute on an idle machine.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
conf="$dir/ceph.conf"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ceph_cli() { timeout 120 ceph -c "$conf" "$@"; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds
    local limit=$1 what=$2; shift 2
    for _ in $(seq 1 $((limit * 2))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    echo "radosgw-engine: timed out waiting for $what (logs in $dir/log)" >&2
    return 1
}

stop_all() {
    for pidfile in "$dir"/run/*.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$pidfile"
    done
}

case "$action" in
start)
    # A step that fails (a timeout on a loaded machine, say) must not leave half a cluster running, nor fail silently.
    trap 'echo "radosgw-engine: start failed at line $LINENO (logs in $dir/log)" >&2; stop_all' ERR
    for cmd in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph; do
        command -v "$cmd" >/dev/null || { echo "$cmd is not installed (apt-get install -y ceph-mon ceph-osd radosgw)" >&2; exit 1; }
    done
    rm -rf "$dir/mon" "$dir/osd" "$dir/run" "$dir/log"
    mkdir -p "$dir/mon/a" "$dir/osd/0" "$dir/run" "$dir/log" "$dir/rgw"
    fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
    mon_port=$(free_port)
    rgw_port=$(free_port)
    cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$mon_port
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
run dir = $dir/run
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
keyring = /dev/null
ms bind ipv4 = true
ms bind ipv6 = false
ms bind msgr2 = false
[mon.a]
mon data = $dir/mon/a
[osd.0]
osd data = $dir/osd/0
osd objectstore = memstore
# The OSD's own crush update at start is refused by this build without cephx ("wrong fsid"); the script adds it.
osd crush update on start = false
osd class update on start = false
memstore device bytes = 2147483648
osd max object name len = 460
osd max object namespace len = 64
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $dir/rgw
rgw dns name = localhost
rgw enable usage log = false
CONF
    monmaptool --create --clobber --fsid "$fsid" --addv a "[v1:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null
    ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" >"$dir/log/mkfs-mon.out" 2>&1
    ceph-mon -c "$conf" -i a 2>>"$dir/log/daemons.err"
    wait_for 120 "the monitor" ceph_cli -s
    osd_uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
    osd_id=$(ceph_cli osd new "$osd_uuid")
    ceph-osd -c "$conf" -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" >"$dir/log/mkfs-osd.out" 2>&1
    ceph_cli osd crush add "osd.$osd_id" 1 root=default host=localhost >/dev/null 2>&1
    ceph-osd -c "$conf" -i "$osd_id" 2>>"$dir/log/daemons.err"
    wait_for 180 "the OSD" sh -c "ceph -c '$conf' osd stat | grep -q '1 up'"
    radosgw -c "$conf" -n client.rgw 2>>"$dir/log/daemons.err"
    wait_for 300 "radosgw" python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$rgw_port/', timeout=5)"
    access=$(python3 -c 'import secrets; print(secrets.token_hex(10).upper())')
    secret=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
    timeout 300 radosgw-admin -c "$conf" -n client.rgw user create --uid=engram --display-name=engram \
        --access-key="$access" --secret-key="$secret" >"$dir/log/user.out" 2>&1
    echo "endpoint=http://127.0.0.1:$rgw_port"
    echo "access_key=$access"
    echo "secret_key=$secret"
    ;;
stop)
    stop_all
    ;;
*) usage ;;
esac
