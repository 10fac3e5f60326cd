#!/usr/bin/env bash
# Runs Dockerfile.dev's `prod` image steps on this host, without a Docker
# engine: the build stage's cargo command, then share-server started the way
# the image starts it (its ENTRYPOINT, CMD, ENV PORT and USER, with a temp dir
# in place of /data and the secret from the environment); its HEALTHCHECK
# command must pass, a login, an upload and a byte-exact download must work,
# and SIGTERM must stop it cleanly. Every command line is read from
# Dockerfile.dev, so the two cannot drift apart unnoticed.
#
# Usage: scripts/prod-stage-check.sh   (from anywhere; CARGO_TARGET_DIR is honoured)
#
# Two differences from the image, both environment and both printed: PORT is a
# free port (this host is shared), and PS_DEBUG_LISTEN is 127.0.0.1:0 (the
# image's default 127.0.0.1:6060 is private to its container; here another
# process may hold it).
set -euo pipefail
cd "$(dirname "$0")/.."

# PROD_STAGE_DOCKERFILE: another file to check (the default is the one we ship).
DOCKERFILE=${PROD_STAGE_DOCKERFILE:-Dockerfile.dev}
# A few chunks (320 KiB each) and a partial one.
UPLOAD_BYTES=3500001

need() {
  local tool=$1 hint=$2
  command -v "$tool" >/dev/null || { echo "prod-stage-check: needs $tool: $hint" >&2; exit 2; }
}
need cargo "install Rust with rustup (https://rustup.rs)"
need curl "apt-get install -y curl"
need python3 "apt-get install -y python3"
need ldd "apt-get install -y libc-bin"
need setpriv "apt-get install -y util-linux"
need cmp "apt-get install -y diffutils"

fail() { echo "FAIL: $*" >&2; exit 1; }

# --- read the steps from the Dockerfile ------------------------------------
# One fact per line, "key<TAB>value"; list values are JSON arrays.
steps=$(python3 - "$DOCKERFILE" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
# Join continuation lines, keeping the comments that mark steps.
lines, cur = [], ""
for raw in text.splitlines():
    if raw.lstrip().startswith("#") and not cur:
        lines.append(raw.strip())
        continue
    if raw.rstrip().endswith("\\"):
        cur += raw.rstrip()[:-1] + " "
        continue
    lines.append((cur + raw).strip())
    cur = ""
out = {}
for i, line in enumerate(lines):
    if line == "# prod-stage-check: build":
        run = lines[i + 1]
        if not run.startswith("RUN "):
            sys.exit("the line after '# prod-stage-check: build' is not a RUN")
        out["build"] = run[4:].split("&&")[0].strip()
stage = None
for line in lines:
    m = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.I)
    if m:
        stage = m.group(2).lower()
        if stage == "prod":
            out["base"] = m.group(1)
        continue
    if stage != "prod":
        continue
    word, _, rest = line.partition(" ")
    word = word.upper()
    if word in ("ENTRYPOINT", "CMD"):
        out[word.lower()] = json.dumps(json.loads(rest))
    elif word == "HEALTHCHECK":
        out["healthcheck"] = json.dumps(json.loads(rest[rest.index("CMD") + 3:]))
    elif word == "USER":
        out["user"] = rest.strip()
    elif word == "ENV":
        for k, v in re.findall(r"(\w+)=(\S+)", rest):
            out["env_" + k] = v
    elif word == "COPY" and "--from=build" in rest:
        out["copy"] = rest.replace("--from=build", "").strip()
for key in ("build", "entrypoint", "cmd", "healthcheck", "user", "env_PORT", "copy"):
    if key not in out:
        sys.exit(f"{sys.argv[1]}: no {key} found for the prod stage")
for k, v in out.items():
    print(f"{k}\t{v}")
PY
) || fail "could not read the prod stage from $DOCKERFILE"
step() { awk -F'\t' -v k="$1" '$1 == k { sub(/^[^\t]*\t/, ""); print }' <<<"$steps"; }
json_lines() { python3 -c 'import json,sys; [print(a) for a in json.loads(sys.argv[1])]' "$1"; }

build_cmd=$(step build)
[[ $build_cmd == "cargo build "* ]] || fail "the build step is not a cargo build: $build_cmd"
mapfile -t entrypoint < <(json_lines "$(step entrypoint)")
mapfile -t cmd < <(json_lines "$(step cmd)")
mapfile -t healthcheck < <(json_lines "$(step healthcheck)")
user=$(step user)
uid=${user%%:*}
gid=${user#*:}
case "$uid" in 0 | root | "") fail "the prod stage runs as root (USER $user); it must not" ;; esac
[[ $uid =~ ^[0-9]+$ && $gid =~ ^[0-9]+$ ]] || fail "USER $user: give it as numeric UID:GID"
image_port=$(step env_PORT)
read -r copy_src copy_dst <<<"$(step copy)"
[ "${entrypoint[0]}" = "$copy_dst" ] || fail "ENTRYPOINT ${entrypoint[0]} is not the binary the prod stage copies ($copy_dst)"
[ "$copy_src" = /out/share-server ] || fail "the prod stage copies $copy_src, not the build stage's /out/share-server"
echo "== prod stage (base $(step base)): user $user, PORT $image_port"
echo "   build:      $build_cmd"
echo "   entrypoint: ${entrypoint[*]}"
echo "   cmd:        ${cmd[*]}"

tmp=$(mktemp -d /tmp/prod-stage.XXXXXX)
tmp_ldd="$tmp/ldd"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$server_pid"; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# --- the build stage's command ----------------------------------------------
read -ra build_argv <<<"$build_cmd"
echo "== $build_cmd"
"${build_argv[@]}"
built="${CARGO_TARGET_DIR:-target}/release/share-server"
[ -x "$built" ] || fail "no $built after the build"

# The runtime image has only glibc and libgcc (debian-slim's essentials).
echo "== shared libraries (must all be in $(step base))"
ldd "$built" >"$tmp_ldd"
while read -r lib _; do
  echo "   $lib"
  case "$lib" in
    linux-vdso.so.* | libc.so.* | libm.so.* | libgcc_s.so.* | libpthread.so.* | libdl.so.* | librt.so.* | /lib64/ld-linux-*.so.*) ;;
    *) fail "share-server needs $lib, which the prod image does not have" ;;
  esac
done <"$tmp_ldd"

# --- the image's filesystem and user ----------------------------------------
root="$tmp/root"                    # stands for the image's /
install -D -m 0755 "$built" "$root$copy_dst"
install -d -m 0750 "$root/data"
chmod 0755 "$tmp" "$root"
# Every argument under /data points into the temp dir instead.
args=()
for a in "${cmd[@]}"; do
  case "$a" in /data | /data/*) args+=("$root$a") ;; *) args+=("$a") ;; esac
done
run_as=()
if [ "$(id -u)" = 0 ]; then
  chown "$uid:$gid" "$root/data"
  run_as=(setpriv --reuid="$uid" --regid="$gid" --clear-groups)
  echo "== running as uid $uid (the image's USER)"
else
  echo "== running as uid $(id -u) (not root, so not switching to the image's USER $uid)"
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
secret="prod-check-$RANDOM$RANDOM"
base="http://127.0.0.1:$port"

# --- start it as the image does ---------------------------------------------
echo "== ${entrypoint[*]} ${args[*]}  (PORT=$port)"
env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/data PORT="$port" \
  PS_SHARED_SECRET="$secret" PS_DEBUG_LISTEN=127.0.0.1:0 \
  "${run_as[@]}" "$root${entrypoint[0]}" "${entrypoint[@]:1}" "${args[@]}" \
  >"$tmp/stdout" 2>"$tmp/stderr" &
server_pid=$!

# Readiness: the printed address, then /healthz (up to 30 s on a loaded host).
for _ in $(seq 1 150); do
  kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/stderr" >&2; fail "share-server exited at start"; }
  curl -fsS -o /dev/null "$base/healthz" 2>/dev/null && break
  sleep 0.2
done
grep -q "^share-server listening on http://0.0.0.0:$port$" "$tmp/stdout" ||
  { cat "$tmp/stdout" "$tmp/stderr" >&2; fail "share-server did not listen on 0.0.0.0:$port"; }

echo "== the image's HEALTHCHECK: ${healthcheck[*]}"
PORT=$port "${healthcheck[@]}" || fail "the HEALTHCHECK command failed"

echo "== log in, upload $UPLOAD_BYTES bytes, download, compare"
head -c "$UPLOAD_BYTES" /dev/urandom >"$tmp/upload.bin"
curl -fsS -c "$tmp/jar" -H 'Content-Type: application/json' \
  -d "{\"sharedSecret\":\"$secret\"}" "$base/api/auth" >/dev/null || fail "login failed"
curl -fsS -b "$tmp/jar" -F "file=@$tmp/upload.bin" -F note=prod-stage-check \
  "$base/api/entry" >"$tmp/entry.json" || fail "upload failed"
id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$tmp/entry.json")
curl -fsS -o "$tmp/download.bin" "$base/-$id" || fail "download of $id failed"
cmp "$tmp/upload.bin" "$tmp/download.bin" || fail "the download differs from the upload"
[ -s "$root/data/store.db" ] || fail "no database under the image's /data (CMD's --db)"
if [ "$(id -u)" = 0 ]; then
  [ "$(stat -c %u "$root/data/store.db")" = "$uid" ] || fail "store.db is not owned by uid $uid"
fi

echo "== SIGTERM"
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=""
[ "$status" = 0 ] || { cat "$tmp/stderr" >&2; fail "share-server exited with $status on SIGTERM"; }
echo "ok: the prod stage's build and start work (entry $id, $UPLOAD_BYTES bytes back intact, clean stop)"
