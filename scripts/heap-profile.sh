#!/usr/bin/env bash
# Take a jemalloc heap profile from share-server's debug listener
# (/debug/pprof/heap, jemalloc-prof builds) and open it with Go's pprof. From
# the dev VM through `fly proxy` (the default), or from a local server.
# See docs/profiling.md for reading profiles, docs/dev-vm.md for the VM.
set -euo pipefail

# Paths given by the user stay relative to where it was called from.
CONFIG="$(cd "$(dirname "$0")/.." && pwd)/fly.dev.toml"
REMOTE_PORT=6060 # PS_DEBUG_LISTEN's port in fly.dev.toml
PROXY_WAIT_S=60  # fly proxy sets up a WireGuard tunnel first

usage() {
  cat <<EOF
Usage: scripts/heap-profile.sh [--app NAME | --local [HOST:PORT]] [-o FILE] [--view top|traces|web|none]

  --app NAME        the dev VM's Fly app (default: 'app' in fly.dev.toml), reached
                    through 'fly proxy' to its debug port $REMOTE_PORT
  --local HOST:PORT a debug listener here instead (default 127.0.0.1:6060)
  -o FILE           where the profile goes (default heap-<UTC time>.pb.gz)
  --view MODE       top (default): the biggest holders; traces: every sampled
                    stack; web: pprof's web UI (graph, flame graph); none: just save

The server must be a jemalloc-prof build (on the dev VM it is); other builds
answer 501. Needs curl, Go's pprof ('go tool pprof', Debian: golang-go) for
viewing, and flyctl for the VM.
EOF
}

die() { echo "heap-profile: $*" >&2; exit 2; }
need() { command -v "$1" >/dev/null || die "needs $1: $2"; }

app="" local_addr="" out="" view=top
while [ $# -gt 0 ]; do
  case "$1" in
    --app) app=${2:?--app needs a name}; shift 2 ;;
    --local)
      if [ $# -gt 1 ] && [[ $2 != -* ]]; then local_addr=$2; shift 2; else local_addr=127.0.0.1:6060; shift; fi ;;
    -o) out=${2:?-o needs a file}; shift 2 ;;
    --view) view=${2:?--view needs top, traces, web or none}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument $1" ;;
  esac
done
case "$view" in top | traces | web | none) ;; *) die "--view is top, traces, web or none, not $view" ;; esac
[ -z "$app" ] || [ -z "$local_addr" ] || die "--app and --local exclude each other"
out=${out:-heap-$(date -u +%Y%m%dT%H%M%SZ).pb.gz}

need curl "apt-get install -y curl"
# pprof: Go's bundled one, or the standalone binary (go install github.com/google/pprof@latest).
pprof=()
if [ "$view" != none ]; then
  if command -v go >/dev/null; then pprof=(go tool pprof)
  elif command -v pprof >/dev/null; then pprof=(pprof)
  else die "needs Go's pprof to view the profile: apt-get install -y golang-go (or --view none to only save it)"
  fi
fi

proxy_pid=""
cleanup() {
  if [ -n "$proxy_pid" ] && kill -0 "$proxy_pid" 2>/dev/null; then kill "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

if [ -n "$local_addr" ]; then
  base="http://$local_addr"
else
  if command -v fly >/dev/null; then fly=fly
  elif command -v flyctl >/dev/null; then fly=flyctl
  else die "needs flyctl for the dev VM: curl -L https://fly.io/install.sh | sh (or --local HOST:PORT)"
  fi
  need python3 "apt-get install -y python3 (picks a free local port)"
  local_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  proxy_args=(proxy "$local_port:$REMOTE_PORT" --config "$CONFIG" --quiet)
  [ -z "$app" ] || proxy_args+=(--app "$app")
  "$fly" "${proxy_args[@]}" >&2 &
  proxy_pid=$!
  base="http://127.0.0.1:$local_port"
  echo "heap-profile: fly proxy 127.0.0.1:$local_port -> the VM's :$REMOTE_PORT" >&2
  for _ in $(seq 1 $((PROXY_WAIT_S * 5))); do
    kill -0 "$proxy_pid" 2>/dev/null || die "fly proxy exited (is the VM deployed? scripts/dev-vm.sh status)"
    curl -fsS -o /dev/null "$base/debug/stats" 2>/dev/null && break
    sleep 0.2
  done
fi

# Into a temp file first: an error answer never replaces an earlier profile.
part=$(mktemp "${out}.part.XXXXXX")
code=$(curl -sS -o "$part" -w '%{http_code}' "$base/debug/pprof/heap") || { rm -f "$part"; die "no answer from $base"; }
if [ "$code" != 200 ]; then
  message=$(cat "$part")
  rm -f "$part"
  die "$base/debug/pprof/heap answered $code: $message"
fi
mv "$part" "$out"
echo "heap-profile: saved $out ($(wc -c <"$out") bytes)" >&2

# -symbolize=none: the server names its frames itself; pprof would otherwise
# re-symbolize from whatever binary now sits at the profile's path.
case "$view" in
  top) "${pprof[@]}" -symbolize=none -top "$out" ;;
  traces) "${pprof[@]}" -symbolize=none -traces "$out" ;;
  web) "${pprof[@]}" -symbolize=none -http=: -no_browser "$out" ;;
  none) ;;
esac
