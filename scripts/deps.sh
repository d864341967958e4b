#!/usr/bin/env bash
# Installs the Debian packages Joblet's tests need, when they are missing.
set -euo pipefail
need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
[ -e /usr/include/google/protobuf/timestamp.proto ] || need+=(libprotobuf-dev)
command -v ip >/dev/null || need+=(iproute2)
command -v ps >/dev/null || need+=(procps)
command -v iptables >/dev/null || need+=(iptables)
# mkfs.ext4 makes the /work disk of jobs with --max-iobps (isolator/sandbox).
command -v mkfs.ext4 >/dev/null || [ -x /sbin/mkfs.ext4 ] || need+=(e2fsprogs)
# cc builds the job's reaper (isolator/sandbox/reaper: no libc, so no libc6-dev).
command -v cc >/dev/null || need+=(gcc)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing packages: ${need[*]} (run as root, or: apt-get install ${need[*]})" >&2
  exit 1
fi
echo "installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
