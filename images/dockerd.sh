#!/usr/bin/env bash
# A private Docker daemon for building and running vega3d's images on a machine without one.
#   images/dockerd.sh start   start one on its own socket and data root, or reuse the one already answering there
#   images/dockerd.sh stop    stop it, only when `start` started it (a reused daemon is left running)
#   images/dockerd.sh env     print the DOCKER_HOST line to export
#   images/dockerd.sh run CMD...   start (or reuse), run CMD with DOCKER_HOST set, then stop the daemon if this
#                                  call started it
# Never the machine's default socket: everything lives under VEGA3D_DOCKER_DIR (default /var/tmp/vega3d-docker),
# whose data root keeps the layer cache between builds. Needs root (dockerd does) and Debian's docker.io.
set -euo pipefail

DIR="${VEGA3D_DOCKER_DIR:-/var/tmp/vega3d-docker}"
SOCK="$DIR/docker.sock"
PIDFILE="$DIR/dockerd.pid"
STARTED="$DIR/started-by-make"   # present only while a daemon we started runs
LOG="$DIR/dockerd.log"
export DOCKER_HOST="unix://$SOCK"
DOCKER=/usr/bin/docker  # Debian's client: the first docker on PATH may lack BuildKit's `build` support

answers() { "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

start() {
    if [[ ! -x /usr/sbin/dockerd || ! -x "$DOCKER" ]]; then
        echo "dockerd.sh: /usr/sbin/dockerd or $DOCKER missing: apt-get install docker.io (make images-setup)" >&2
        exit 1
    fi
    mkdir -p "$DIR"
    if answers; then
        echo "dockerd.sh: reusing the daemon on $SOCK"
        return
    fi
    rm -f "$SOCK" "$STARTED"
    # No bridge or iptables (containers use the host network); overlay2 keeps the layers under the data root.
    nohup /usr/sbin/dockerd -H "$DOCKER_HOST" --data-root "$DIR/data" --exec-root "$DIR/exec" \
        --pidfile "$PIDFILE" --iptables=false --ip-masq=false --bridge=none --storage-driver=overlay2 \
        >"$LOG" 2>&1 &
    for _ in $(seq 1 60); do
        if answers; then
            touch "$STARTED"
            STARTED_NOW=1
            echo "dockerd.sh: started dockerd (pid $(cat "$PIDFILE")) on $SOCK"
            return
        fi
        sleep 1
    done
    echo "dockerd.sh: dockerd did not answer on $SOCK within 60 s; see $LOG" >&2
    tail -n 20 "$LOG" >&2
    exit 1
}

stop() {
    if [[ ! -f "$STARTED" ]]; then
        echo "dockerd.sh: the daemon on $SOCK was not started by us (or is not running): left alone"
        return
    fi
    local pid
    pid="$(cat "$PIDFILE")"
    kill "$pid"
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    rm -f "$STARTED"
    echo "dockerd.sh: stopped dockerd (pid $pid)"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    env) echo "export DOCKER_HOST=$DOCKER_HOST" ;;
    run)
        shift
        STARTED_NOW=0
        start
        trap '[[ $STARTED_NOW == 1 ]] && stop' EXIT
        "$@"
        ;;
    *) echo "usage: $0 start|stop|env|run CMD..." >&2; exit 2 ;;
esac
