#!/usr/bin/env bash
# Runs the dev image's CMD (scripts/sharerig-dev.sh serve) here with
# fly.dev.toml's [env], and checks what the dev VM relies on: the server
# answers the health check path on PORT, the debug listener bound as
# PS_DEBUG_LISTEN says serves the [metrics] path, `hold` stops the server and
# keeps it stopped, `release` brings it back, a killed server (an OOM kill) is
# restarted, `repro` runs a machine-mode scenario with the server stepped
# aside, and SIGTERM stops everything cleanly.
#
# Usage: scripts/dev-entrypoint-check.sh   (builds share-server in release mode
# and the rig in debug mode if needed)
#
# Differences from the VM, printed: the ports are free ones (this host is
# shared; PS_DEBUG_LISTEN keeps its address, [::]), /data is a temp dir, and the
# server is the default release build, not the image's jemalloc-prof one.
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
  command -v "$1" >/dev/null || { echo "dev-entrypoint-check: needs $1: $2" >&2; exit 2; }
}
need cargo "install Rust with rustup (https://rustup.rs)"
need curl "apt-get install -y curl"
need python3 "apt-get install -y python3 (3.11 or later, for tomllib)"

fail() { echo "FAIL: $*" >&2; exit 1; }

# fly.dev.toml's [env], the health check path and the metrics path, as shell assignments.
facts=$(python3 - <<'PY'
import shlex, tomllib
t = tomllib.load(open("fly.dev.toml", "rb"))
for k, v in t["env"].items():
    print(f"env_{k}={shlex.quote(str(v))}")
print(f"health_path={shlex.quote(t['http_service']['checks'][0]['path'])}")
print(f"metrics_path={shlex.quote(t['metrics']['path'])}")
print(f"metrics_port={int(t['metrics']['port'])}")
PY
) || fail "could not read fly.dev.toml"
env_PORT="" env_PS_DB="" env_PS_DEBUG_LISTEN="" env_PS_BEHIND_PROXY="" health_path="" metrics_path="" metrics_port=""
eval "$facts"
[ "${env_PS_DEBUG_LISTEN##*:}" = "$metrics_port" ] ||
  fail "[metrics] port $metrics_port is not PS_DEBUG_LISTEN's ($env_PS_DEBUG_LISTEN)"

cargo build --release --locked -p share-server
# The rig in a debug build: `cargo test --workspace` has built most of it.
cargo build --locked -p profiling --bin rig
target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
bin="$target_dir/release/share-server"
rig="$target_dir/debug/rig"

tmp=$(mktemp -d /tmp/dev-entrypoint.XXXXXX)
serve_pid=""
cleanup() {
  if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
    kill -TERM "$serve_pid"
    wait "$serve_pid" || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
debug_listen="${env_PS_DEBUG_LISTEN%:*}:0"
db="$tmp/data${env_PS_DB#/data}"
base="http://127.0.0.1:$port"
echo "== sharerig-dev serve: PORT=$port (VM: $env_PORT), PS_DEBUG_LISTEN=$debug_listen (VM: $env_PS_DEBUG_LISTEN), PS_DB=$db, PS_BEHIND_PROXY=$env_PS_BEHIND_PROXY"

export SHARERIG_DATA="$tmp/data" SHARERIG_STATE="$tmp/run" SHARERIG_SERVER_BIN="$bin"
PORT=$port PS_DB=$db PS_DEBUG_LISTEN=$debug_listen PS_BEHIND_PROXY=$env_PS_BEHIND_PROXY \
  PS_SHARED_SECRET="dev-check-$RANDOM$RANDOM" \
  scripts/sharerig-dev.sh serve >"$tmp/stdout" 2>"$tmp/stderr" &
serve_pid=$!

# Waits (up to 30 s) until the server with a pid other than $1 answers; prints its pid.
wait_serving() {
  local old=$1 pid
  for _ in $(seq 1 150); do
    kill -0 "$serve_pid" 2>/dev/null || { cat "$tmp/stderr" >&2; fail "sharerig-dev serve exited"; }
    pid=$(cat "$SHARERIG_STATE/server.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$pid" != "$old" ] && curl -fsS -o /dev/null "$base$health_path" 2>/dev/null; then
      echo "$pid"
      return 0
    fi
    sleep 0.2
  done
  cat "$tmp/stderr" >&2
  fail "no server answered $health_path within 30 s"
}

pid1=$(wait_serving none)
echo "== serving (pid $pid1): $health_path answers"
debug_url=$(sed -n 's/^share-server debug listening on //p' "$tmp/stdout" | tail -n 1)
case "$debug_url" in "http://[::]:"*) ;; *) fail "the debug listener is on $debug_url, not on [::] as PS_DEBUG_LISTEN says" ;; esac
# Over IPv6, as Fly's scraper reaches it on the private network.
curl -fsS -o "$tmp/metrics" "http://[::1]:${debug_url##*:}$metrics_path" ||
  fail "no answer on $metrics_path over IPv6"
grep -q '^# TYPE ' "$tmp/metrics" || fail "no Prometheus text on $metrics_path"
echo "== $metrics_path answers on [::1]:${debug_url##*:}"

scripts/sharerig-dev.sh hold
[ "$(scripts/sharerig-dev.sh status)" = held ] || fail "status after hold: $(scripts/sharerig-dev.sh status)"
kill -0 "$pid1" 2>/dev/null && fail "hold left server $pid1 running"
sleep 2 # serve polls the hold file every second: two polls, and it must still be held
curl -fsS -o /dev/null "$base$health_path" 2>/dev/null && fail "a server answers while held"
echo "== hold: stopped and stays stopped"

scripts/sharerig-dev.sh release
pid2=$(wait_serving "$pid1")
echo "== release: serving again (pid $pid2)"

kill -KILL "$pid2"
pid3=$(wait_serving "$pid2")
grep -q "server exited with status 137; restarting" "$tmp/stderr" || fail "no restart logged after SIGKILL"
echo "== SIGKILL (as an OOM kill): restarted (pid $pid3)"

# `sharerig-dev repro`: the resident server steps aside for a machine-mode
# run and comes back. A small load: this checks the plumbing, not memory.
cat >"$tmp/small-vm.toml" <<'TOML'
name = "dev-entrypoint-check"
[machine]
mode = "machine"
[[phases]]
name = "upload"
[phases.loadgen]
scenario = "upload"
users = 1
iterations = 1
size = "4MB"
[[phases]]
name = "download"
[phases.loadgen]
scenario = "download"
users = 1
iterations = 1
TOML
# With the VM's environment, as an ssh session on the VM may have it, and a
# server setting the scenario does not make: the rig's server must not see it.
SHARERIG_RIG="$rig" SHARERIG_IMAGE_WORKSPACE="$PWD" PORT=$port PS_DB=$db \
  PS_DEBUG_LISTEN=$debug_listen PS_BEHIND_PROXY=$env_PS_BEHIND_PROXY PS_SHARED_SECRET=vm-secret \
  PS_CHUNK_SIZE=4096 scripts/sharerig-dev.sh repro "$tmp/small-vm.toml" >"$tmp/repro.out" 2>"$tmp/repro.err" ||
  { cat "$tmp/repro.out" "$tmp/repro.err" >&2; fail "sharerig-dev repro failed"; }
run_dir=$(sed -n 's/^run-dir: //p' "$tmp/repro.out")
[ -n "$run_dir" ] || { cat "$tmp/repro.out" >&2; fail "sharerig-dev repro printed no run-dir line"; }
case "$run_dir" in "$SHARERIG_DATA/runs/dev-entrypoint-check-"*) ;; *) fail "run dir $run_dir is not under $SHARERIG_DATA/runs" ;; esac
python3 -c 'import json, sys; o = json.load(open(sys.argv[1])); sys.exit(0 if o["passed"] else 1)' "$run_dir/outcome.json" ||
  fail "the repro's outcome.json does not say passed"
grep -q '"mode": *"machine"' "$run_dir/meta.json" || fail "the repro did not run in machine mode"
sed 's/\x1b\[[0-9;]*m//g' "$run_dir/server.log" >"$tmp/rig-server.log" # without colours
grep -q 'chunk_size=327680' "$tmp/rig-server.log" || fail "the VM's PS_* environment reached the rig's server"
kill -0 "$pid3" 2>/dev/null && fail "server $pid3 kept running during the repro"
pid4=$(wait_serving "$pid3")
echo "== repro: ran in machine mode ($run_dir), the resident server came back (pid $pid4)"

# `sharerig-dev workspace` seeds the volume's workspace from the image once,
# as a git repository (a stand-in image workspace: the real one is GBs).
mkdir -p "$tmp/image-ws/src"
printf '[workspace]\n' >"$tmp/image-ws/Cargo.toml"
printf '/target\n' >"$tmp/image-ws/.gitignore"
echo 'fn main() {}' >"$tmp/image-ws/src/main.rs"
ws=$(SHARERIG_IMAGE_WORKSPACE="$tmp/image-ws" scripts/sharerig-dev.sh workspace 2>/dev/null)
[ "$ws" = "$SHARERIG_DATA/work" ] || fail "workspace printed $ws"
[ -f "$ws/src/main.rs" ] || fail "the workspace was not seeded"
[ -z "$(git -C "$ws" status --porcelain)" ] || fail "the seeded workspace is not a clean git checkout"
echo 'fn main() { println!("edited"); }' >"$ws/src/main.rs"
SHARERIG_IMAGE_WORKSPACE="$tmp/image-ws" scripts/sharerig-dev.sh workspace >/dev/null 2>&1
grep -q edited "$ws/src/main.rs" || fail "a second 'workspace' overwrote an edit"
echo "== workspace: seeded once as a git checkout, edits kept"

kill -TERM "$serve_pid"
status=0
wait "$serve_pid" || status=$?
serve_pid=""
[ "$status" = 0 ] || { cat "$tmp/stderr" >&2; fail "sharerig-dev serve exited with $status on SIGTERM"; }
kill -0 "$pid4" 2>/dev/null && fail "server $pid4 outlived sharerig-dev serve"
grep -q "stopped (server exit status 0)" "$tmp/stderr" || fail "the server did not stop cleanly on SIGTERM"
echo "ok: the dev image's entrypoint serves, holds, releases, restarts, steps aside for a repro and stops cleanly"
