#!/usr/bin/env bash
# On the dev VM (installed as /usr/local/bin/sharerig-dev by Dockerfile.dev's
# `dev` image, whose CMD is `sharerig-dev serve`): keeps share-server serving,
# steps it aside for a repro, and rebuilds from the workspace on the volume.
# See docs/dev-vm.md.
set -euo pipefail

DATA=${SHARERIG_DATA:-/data}
STATE=${SHARERIG_STATE:-/run/sharerig}
IMAGE_WS=${SHARERIG_IMAGE_WORKSPACE:-/opt/sharerig}
WS="$DATA/work"
BIN="$DATA/bin"
# rustc peaked at 472 MB (RSS) rebuilding share-server after a one-line change
# (thin LTO, docs/dev-vm.md); below this MemTotal a build would be OOM-killed.
BUILD_MIN_MEM_KB=$((900 * 1024))
# share-server drains for up to 10 s on SIGTERM, then checkpoints SQLite.
STOP_WAIT_S=30

# The rust image's toolchain, also in shells that did not get the image's
# environment (an ssh session may not).
if [ -d /usr/local/cargo/bin ]; then
  export RUSTUP_HOME=${RUSTUP_HOME:-/usr/local/rustup} CARGO_HOME=${CARGO_HOME:-/usr/local/cargo}
  case ":$PATH:" in *:/usr/local/cargo/bin:*) ;; *) PATH="/usr/local/cargo/bin:$PATH" ;; esac
fi

usage() {
  cat <<EOF
Usage: sharerig-dev COMMAND

Commands:
  serve            run share-server and restart it when it exits, unless held
                   (the image's CMD; stops it and exits on SIGTERM/SIGINT)
  hold             stop the resident server and keep it stopped
  release          let 'serve' start it again
  status           the server's pid, or "held"
  workspace        seed $WS from the image (once, as a git repository) and
                   print its path
  build            rebuild share-server (jemalloc and jemalloc-prof), rig and
                   loadgen in the workspace into $BIN (needs >= 900 MB: resize first)
  repro SCENARIO   hold the server, 'rig run SCENARIO' into $DATA/runs, release;
                   prints "run-dir: PATH" last

Environment: SHARERIG_DATA (default /data), SHARERIG_SERVER_BIN (default
$BIN/share-server-prof, else /usr/local/bin/share-server-prof), SHARERIG_RIG
(default $BIN/rig, else /usr/local/bin/rig); share-server reads PORT, PS_DB,
PS_SHARED_SECRET, PS_BEHIND_PROXY and PS_DEBUG_LISTEN itself.
EOF
}

log() { echo "sharerig-dev: $*" >&2; }
die() { log "$*"; exit 1; }

# The newest build: one made on the VM wins over the image's.
pick() {
  local name=$1
  if [ -x "$BIN/$name" ]; then echo "$BIN/$name"; else echo "/usr/local/bin/$name"; fi
}

server_pid() {
  local pid
  [ -f "$STATE/server.pid" ] || return 1
  pid=$(cat "$STATE/server.pid")
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

cmd_serve() {
  mkdir -p "$STATE"
  local bin pid="" status stopping=0 interrupted=0
  # On SIGTERM/SIGINT: pass it to the server, let it drain, then exit.
  trap 'stopping=1; interrupted=1; [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true' TERM INT
  while [ "$stopping" = 0 ]; do
    if [ -e "$STATE/hold" ]; then
      sleep 1 &
      wait $! || true
      continue
    fi
    bin=${SHARERIG_SERVER_BIN:-$(pick share-server-prof)}
    log "starting $bin"
    "$bin" &
    pid=$!
    echo "$pid" >"$STATE/server.pid"
    # A trapped signal interrupts `wait` before the server has exited: wait
    # again, which returns the server's own status.
    while :; do
      interrupted=0
      status=0
      wait "$pid" || status=$?
      [ "$interrupted" = 1 ] || break
    done
    rm -f "$STATE/server.pid"
    pid=""
    if [ "$stopping" = 1 ]; then
      log "stopped (server exit status $status)"
      exit 0
    fi
    if [ -e "$STATE/hold" ]; then
      log "held (server exit status $status)"
    else
      log "server exited with status $status; restarting in 2 s"
      sleep 2 &
      wait $! || true
    fi
  done
}

cmd_hold() {
  mkdir -p "$STATE"
  touch "$STATE/hold"
  local pid waited=0
  if pid=$(server_pid); then
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do
      [ "$waited" -lt $((STOP_WAIT_S * 10)) ] || die "server $pid still running after ${STOP_WAIT_S} s"
      sleep 0.1
      waited=$((waited + 1))
    done
    log "server $pid stopped; held"
  else
    log "held (no server was running)"
  fi
}

cmd_release() {
  rm -f "$STATE/hold"
  log "released: serve starts the server within a second"
}

cmd_status() {
  local pid
  if pid=$(server_pid); then
    echo "serving: pid $pid"
  elif [ -e "$STATE/hold" ]; then
    echo "held"
  else
    echo "not running"
  fi
}

cmd_workspace() {
  if [ ! -f "$WS/Cargo.toml" ]; then
    [ -f "$IMAGE_WS/Cargo.toml" ] || die "no workspace in the image at $IMAGE_WS"
    log "seeding $WS from $IMAGE_WS (source and prebuilt target; once per volume)"
    mkdir -p "$WS"
    cp -a "$IMAGE_WS/." "$WS/"
    # The image has no .git: a local repository makes every run record which
    # edit it ran (meta.json: revision and dirty flag) and `git diff` shows them.
    git -C "$WS" init -q
    git -C "$WS" add -A
    git -C "$WS" -c user.name=sharerig-dev -c user.email=sharerig-dev@localhost \
      commit -qm "the dev image's source"
  fi
  echo "$WS"
}

cmd_build() {
  command -v cargo >/dev/null || die "no cargo: this runs in Dockerfile.dev's dev image"
  local mem_kb
  mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
  if [ "$mem_kb" -lt "$BUILD_MIN_MEM_KB" ]; then
    die "this VM has $((mem_kb / 1024)) MiB; building needs about 900: run 'scripts/dev-vm.sh resize 1024' from your machine, build, then 'resize 256' for the repro"
  fi
  cmd_workspace >/dev/null
  mkdir -p "$BIN"
  cd "$WS"
  cargo build --release --locked -p share-server --features jemalloc-prof
  install -m 0755 target/release/share-server "$BIN/share-server-prof"
  cargo build --release --locked -p profiling --bin rig -p loadgen
  install -m 0755 target/release/rig target/release/loadgen "$BIN/"
  # Last, so target/release/share-server is the build `rig run` uses.
  cargo build --release --locked -p share-server
  install -m 0755 target/release/share-server "$BIN/share-server"
  log "built into $BIN; 'sharerig-dev hold && sharerig-dev release' restarts the server on it"
}

cmd_repro() {
  local scenario=${1:?usage: sharerig-dev repro SCENARIO.toml} ws rig status
  [ -f "$scenario" ] || die "no scenario file $scenario"
  if [ -f "$WS/Cargo.toml" ]; then ws=$WS; else ws=$IMAGE_WS; fi
  rig=${SHARERIG_RIG:-$(pick rig)}
  # The server's database goes to the rig's temp dir: on the volume, like
  # production's, not on the VM's root filesystem.
  mkdir -p "$DATA/tmp"
  # Global: the EXIT trap runs after this function's locals are gone.
  repro_out=$(mktemp)
  cmd_hold
  # Whatever happens to the run, the resident server comes back.
  trap 'cmd_release; rm -f "$repro_out"' EXIT
  # The VM's environment configures the resident server (fly.dev.toml's
  # [env], the secret). The rig's server must take its configuration from the
  # scenario only, or a stray PS_CHUNK_SIZE would change the run unrecorded.
  local var
  for var in PORT $(compgen -e | grep '^PS_' || true); do unset "$var"; done
  log "rig run $scenario (workspace $ws)"
  status=0
  TMPDIR="$DATA/tmp" "$rig" run "$scenario" --workspace "$ws" --runs-dir "$DATA/runs" --no-progress |
    tee "$repro_out" || status=$?
  # rig's last line: "PASS: ... in DIR" or "FAIL: ... in DIR".
  sed -nE 's/^(PASS|FAIL): .* in (.*)$/run-dir: \2/p' "$repro_out" | tail -n 1
  return "$status"
}

case "${1:-}" in
  serve) cmd_serve ;;
  hold) cmd_hold ;;
  release) cmd_release ;;
  status) cmd_status ;;
  workspace) cmd_workspace ;;
  build) cmd_build ;;
  repro) shift; cmd_repro "$@" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
