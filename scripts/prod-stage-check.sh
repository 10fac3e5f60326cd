#!/usr/bin/env bash
# Runs Dockerfile.dev's `prod` image steps on this host, without a Docker
# engine: the build stage's cargo command, then share-server started the way
# the image starts it (its ENTRYPOINT, scripts/prod-entrypoint.sh, with its CMD
# and ENV, a temp dir in place of /data and the secret from the environment).
# As root the data dir is made root-owned first, as Fly mounts a volume: the
# entrypoint must chown it and the server must end up running as the image's
# PS_RUN_AS uid, writing its database there. Its HEALTHCHECK command must
# pass, a login, an upload and a byte-exact download must work, and SIGTERM
# must stop it cleanly. Every command line is read from Dockerfile.dev, so
# the two cannot drift apart unnoticed. (Litestream's path through the
# entrypoint is server/tests/litestream.rs's.)
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
    elif word == "COPY" and rest.startswith("scripts/prod-entrypoint.sh "):
        out["copy_entrypoint"] = rest
    elif word == "COPY" and "--from=litestream" in rest:
        out["copy_litestream"] = rest.replace("--from=litestream", "").strip()
for key in ("build", "entrypoint", "cmd", "healthcheck", "env_PORT", "env_PS_DB", "env_PS_RUN_AS",
            "copy", "copy_entrypoint", "copy_litestream"):
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
# The entrypoint starts as root to chown the volume, then drops to PS_RUN_AS.
[ -z "$(step user)" ] || fail "the prod stage sets USER $(step user): the entrypoint must start as root to chown a root-owned volume"
run_as=$(step env_PS_RUN_AS)
uid=${run_as%%:*}
gid=${run_as#*:}
[[ $uid =~ ^[0-9]+$ && $gid =~ ^[0-9]+$ ]] || fail "PS_RUN_AS=$run_as: give it as numeric UID:GID"
[ "$uid" != 0 ] || fail "PS_RUN_AS=$run_as: the server must not run as root"
image_db=$(step env_PS_DB)
[[ $image_db == /data/* ]] || fail "PS_DB=$image_db is not on the /data volume"
image_port=$(step env_PORT)
read -r copy_src copy_dst <<<"$(step copy)"
read -r entry_src entry_dst <<<"$(step copy_entrypoint)"
read -r _ litestream_dst <<<"$(step copy_litestream)"
[ "${entrypoint[0]}" = "$entry_dst" ] || fail "ENTRYPOINT ${entrypoint[0]} is not the entrypoint the prod stage copies ($entry_dst)"
[ "${cmd[0]}" = "$copy_dst" ] || fail "CMD ${cmd[0]} is not the binary the prod stage copies ($copy_dst)"
[ "$copy_src" = /out/share-server ] || fail "the prod stage copies $copy_src, not the build stage's /out/share-server"
[ "$litestream_dst" = /usr/local/bin/litestream ] || fail "litestream is copied to $litestream_dst, not onto the entrypoint's PATH"
echo "== prod stage (base $(step base)): server as $run_as, PORT $image_port, PS_DB $image_db"
echo "   build:      $build_cmd"
echo "   entrypoint: ${entrypoint[*]} ($entry_src)"
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
install -D -m 0755 "$entry_src" "$root$entry_dst"
# Root-owned, as Fly mounts a volume (the image's own /data is 10001's).
install -d -m 0755 "$root/data"
chmod 0755 "$tmp" "$root"
# Every argument under /data points into the temp dir instead.
args=()
for a in "${cmd[@]:1}"; do
  case "$a" in /data | /data/*) args+=("$root$a") ;; *) args+=("$a") ;; esac
done
if [ "$(id -u)" = 0 ]; then
  echo "== as root, data dir owned by root: the entrypoint must hand it to uid $uid"
else
  # Not root: the entrypoint cannot switch users; it runs the server as us.
  uid=$(id -u) gid=$(id -g) run_as="$uid:$gid"
  echo "== running as uid $uid (not root, so not checking the switch to PS_RUN_AS)"
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
secret="prod-check-$RANDOM$RANDOM"
base="http://127.0.0.1:$port"

# --- start it as the image does ---------------------------------------------
echo "== ${entrypoint[*]} ${cmd[*]}  (PORT=$port, PS_DB=$root$image_db)"
env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/data PORT="$port" \
  PS_DB="$root$image_db" PS_RUN_AS="$run_as" \
  PS_SHARED_SECRET="$secret" PS_DEBUG_LISTEN=127.0.0.1:0 \
  "$root${entrypoint[0]}" "${entrypoint[@]:1}" "$root${cmd[0]}" "${args[@]}" \
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

# The entrypoint execs (setpriv, itself again, the server): one pid throughout.
echo "== the server process: $root${cmd[0]} as uid $uid, gid $gid, no supplementary groups"
[ "$(readlink "/proc/$server_pid/exe")" = "$root${cmd[0]}" ] ||
  fail "pid $server_pid is $(readlink "/proc/$server_pid/exe"), not the server"
read -r _ ruid euid _ < <(grep '^Uid:' "/proc/$server_pid/status")
read -r _ rgid egid _ < <(grep '^Gid:' "/proc/$server_pid/status")
[ "$ruid:$euid:$rgid:$egid" = "$uid:$uid:$gid:$gid" ] ||
  fail "the server runs as uid $ruid/$euid gid $rgid/$egid, not $uid:$gid"
[ -z "$(grep '^Groups:' "/proc/$server_pid/status" | cut -d: -f2 | tr -d '[:space:]')" ] ||
  fail "the server kept supplementary groups: $(grep '^Groups:' "/proc/$server_pid/status")"
[ "$(stat -c %u:%g "$root/data")" = "$uid:$gid" ] || fail "the data dir is owned by $(stat -c %u:%g "$root/data"), not $uid:$gid"

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
[ -s "$root$image_db" ] || fail "no database at the image's PS_DB ($image_db)"
[ "$(stat -c %u "$root$image_db")" = "$uid" ] || fail "$image_db is not owned by uid $uid"

echo "== SIGTERM"
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=""
[ "$status" = 0 ] || { cat "$tmp/stderr" >&2; fail "share-server exited with $status on SIGTERM"; }
echo "ok: the prod stage's build and start work (entry $id, $UPLOAD_BYTES bytes back intact, clean stop)"
