#!/usr/bin/env bash
# Builds what the rig's `vm` machine mode boots, from Debian packages, into a
# cache directory:
#
#   vm-assets.sh check                   the host tools are there (else the apt-get line, exit 3)
#   vm-assets.sh build SERVER AGENT      kernel + initramfs for these binaries; prints their directory
#   vm-assets.sh initramfs INIT [NAME=]BIN...
#                                        the same recipe with INIT as /init and each BIN in /bin
#                                        (as NAME if given): the cgroup v2 test's guest
#   vm-assets.sh disk IMAGE SIZE FROM    a fresh ext4 image of SIZE holding FROM's files
#
# Cache: $SHARERIG_VM_CACHE, else /var/cache/sharerig/vm as root, else
# ${XDG_CACHE_HOME:-~/.cache}/sharerig/vm. The kernel is Debian's current
# linux-image-amd64 (fetched once with `apt-get download`, never installed);
# the initramfs (busybox-static, the kernel modules, /init, the agent and the
# server, or the given binaries, with the libraries `ldd` names) is keyed by
# the hash of all of them,
# so a new server binary gets a new initramfs. See docs/vm-mode.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
guest="$here/vm"
# Modules the guest needs beyond the built-in ones (Debian 12's kernel):
# virtio PCI transport, disk, network, serial ports, and ext4 with its checksum.
modules=(virtio_pci virtio_blk virtio_net virtio_console crc32c_generic ext4)
apt_line="apt-get install -y qemu-system-x86 busybox-static cpio e2fsprogs binutils"
# How many initramfs builds the cache keeps (each ~10 MB).
keep_initramfs=5

die() {
  echo "vm-assets: $*" >&2
  exit 1
}

cache_dir() {
  if [ -n "${SHARERIG_VM_CACHE:-}" ]; then
    echo "$SHARERIG_VM_CACHE"
  elif [ "$(id -u)" = 0 ]; then
    echo /var/cache/sharerig/vm
  else
    echo "${XDG_CACHE_HOME:-$HOME/.cache}/sharerig/vm"
  fi
}

check() {
  local missing=() tool
  for tool in qemu-system-x86_64 cpio mkfs.ext4 strip readelf gzip apt-get dpkg-deb ldd; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  if [ ! -x /bin/busybox ] || ! file_is_static /bin/busybox; then
    missing+=("a static /bin/busybox")
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    echo "vm-assets: missing ${missing[*]}; install them with: $apt_line" >&2
    exit 3
  fi
}

# busybox-static's binary has no program interpreter (no PT_INTERP).
file_is_static() {
  ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'program interpreter'
}

# Downloads and unpacks Debian's kernel once; prints its directory.
kernel() {
  local cache="$1" package version dir tmp
  package="$(apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n 1)"
  [ -n "$package" ] || die "apt-cache knows no linux-image-amd64; run apt-get update"
  version="${package#linux-image-}"
  dir="$cache/kernel/$version"
  if [ ! -f "$dir/ready" ]; then
    echo "vm-assets: fetching $package" >&2
    tmp="$(mktemp -d "$cache/kernel/.fetch-XXXXXX")"
    # _apt must be able to write the download directory.
    chmod 755 "$tmp"
    (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$package" >&2) ||
      die "apt-get download $package failed (is the package index current? apt-get update)"
    dpkg-deb -x "$tmp"/"$package"_*.deb "$tmp/root"
    busybox depmod -b "$tmp/root" "$version"
    rm -rf "$dir"
    mkdir -p "$dir"
    mv "$tmp/root/boot/vmlinuz-$version" "$dir/vmlinuz"
    mkdir -p "$dir/lib/modules"
    mv "$tmp/root/lib/modules/$version" "$dir/lib/modules/$version"
    rm -rf "$tmp"
    touch "$dir/ready"
  fi
  echo "$dir"
}

# The modules to load and their dependencies, dependencies first (paths
# relative to /lib/modules/VERSION), from modules.dep.
module_order() {
  local dep="$1" name
  local -A seen=()
  visit() {
    local path="$1" line d
    [ -n "${seen[$path]:-}" ] && return 0
    seen[$path]=1
    line="$(grep -m 1 "^$path:" "$dep")" || die "$path is not in $dep"
    for d in ${line#*:}; do
      visit "$d"
    done
    echo "$path"
  }
  for name in "${modules[@]}"; do
    local path
    path="$(grep -m 1 -o "^[^:]*/$name\.ko:" "$dep")" || die "module $name is not in $dep"
    visit "${path%:}"
  done
}

build() {
  local binary="$1" agent="$2"
  [ -x "$binary" ] || die "no server binary at $binary"
  [ -x "$agent" ] || die "no agent binary at $agent"
  initramfs "$guest/init" "share-server=$binary" "sharerig-agent=$agent"
}

# Kernel + an initramfs with INIT as /init and each binary in /bin, as NAME
# when given as NAME=PATH, else under its own name; prints the directory
# holding vmlinuz and initramfs.cpio.gz.
initramfs() {
  local init="$1" cache kdir version key out stage lib ko bin
  local -a paths=() names=()
  shift
  [ -f "$init" ] || die "no init script at $init"
  for bin in "$@"; do
    if [[ "$bin" =~ ^([^/=]+)=(.+)$ ]]; then
      names+=("${BASH_REMATCH[1]}")
      paths+=("${BASH_REMATCH[2]}")
    else
      names+=("$(basename "$bin")")
      paths+=("$bin")
    fi
    [ -x "${paths[-1]}" ] || die "no binary at ${paths[-1]}"
  done
  set -- "${paths[@]}"
  check
  cache="$(cache_dir)"
  mkdir -p "$cache/kernel" "$cache/initramfs"
  kdir="$(kernel "$cache")"
  version="$(basename "$kdir")"

  # Everything that goes into the initramfs names it.
  key="$(
    {
      echo "$version"
      echo "${names[*]}"
      sha256sum "$@" "$init" /bin/busybox "${BASH_SOURCE[0]}" | cut -d' ' -f1
      for lib in $(libraries "$@"); do sha256sum "$lib" | cut -d' ' -f1; done
    } | sha256sum | cut -c1-16
  )"
  out="$cache/initramfs/$key"
  if [ ! -f "$out/ready" ]; then
    echo "vm-assets: building initramfs $key for $*" >&2
    stage="$(mktemp -d "$cache/initramfs/.stage-XXXXXX")"
    # It becomes the guest's /: mktemp's 0700 would lock every user but root out.
    chmod 755 "$stage"
    mkdir -p "$stage/bin" "$stage/lib/modules/$version"
    cp /bin/busybox "$stage/bin/busybox"
    ln -s busybox "$stage/bin/sh"
    install -m 755 "$init" "$stage/init"
    # Debug info stripped: the initramfs lives in the guest's RAM.
    local i
    for i in "${!paths[@]}"; do
      strip --strip-debug -o "$stage/bin/${names[$i]}" "${paths[$i]}"
    done
    for lib in $(libraries "$@"); do
      mkdir -p "$stage$(dirname "$lib")"
      cp -L "$lib" "$stage$lib"
    done
    module_order "$kdir/lib/modules/$version/modules.dep" > "$stage/lib/modules/$version/modules.load"
    while read -r ko; do
      mkdir -p "$stage/lib/modules/$version/$(dirname "$ko")"
      cp "$kdir/lib/modules/$version/$ko" "$stage/lib/modules/$version/$ko"
    done < "$stage/lib/modules/$version/modules.load"
    mkdir -p "$out.tmp"
    (cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$out.tmp/initramfs.cpio.gz"
    ln -sf "$kdir/vmlinuz" "$out.tmp/vmlinuz"
    echo "$version" > "$out.tmp/kernel-version"
    rm -rf "$stage" "$out"
    mv "$out.tmp" "$out"
    touch "$out/ready"
    prune "$cache/initramfs"
  fi
  touch "$out/ready"
  echo "$out"
}

# The shared libraries dynamically linked binaries load (none for static ones).
libraries() {
  local binary
  for binary in "$@"; do
    ldd "$binary" 2>/dev/null | grep -o '/[^ ]*' || true
  done | sort -u
}

# Keeps the newest builds.
prune() {
  local dir="$1" old
  # shellcheck disable=SC2012 # names are our own hex keys
  for old in $(ls -1t "$dir"/*/ready 2>/dev/null | tail -n +"$((keep_initramfs + 1))"); do
    rm -rf "$(dirname "$old")"
  done
}

# A fresh ext4 image: sparse, so SIZE costs only what is written.
disk() {
  local image="$1" size="$2" from="$3"
  command -v mkfs.ext4 >/dev/null || {
    echo "vm-assets: missing mkfs.ext4; install it with: $apt_line" >&2
    exit 3
  }
  rm -f "$image"
  truncate -s "$size" "$image"
  mkfs.ext4 -q -F -E root_owner=0:0 -d "$from" "$image" >&2
}

case "${1:-}" in
  check) check ;;
  build)
    [ $# -eq 3 ] || die "usage: $0 build SERVER_BINARY AGENT_BINARY"
    build "$2" "$3"
    ;;
  initramfs)
    [ $# -ge 3 ] || die "usage: $0 initramfs INIT [NAME=]BINARY..."
    shift
    initramfs "$@"
    ;;
  disk)
    [ $# -eq 4 ] || die "usage: $0 disk IMAGE SIZE FROM_DIR"
    disk "$2" "$3" "$4"
    ;;
  *) die "usage: $0 check | build SERVER_BINARY AGENT_BINARY | initramfs INIT [NAME=]BINARY... | disk IMAGE SIZE FROM_DIR" ;;
esac
