#!/usr/bin/env bash
# Host packages the lab needs: podman (with runc: crun cannot run on every host's cgroup
# layout), debootstrap to build the node image, rsync for the ansible-test tree.
# Installs only what is missing; needs root or passwordless sudo for that.
set -euo pipefail
need=()
for pkg_cmd in podman:podman runc:runc debootstrap:debootstrap rsync:rsync; do
  pkg=${pkg_cmd%%:*} cmd=${pkg_cmd##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup-host: installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
podman --version
