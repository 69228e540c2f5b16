#!/usr/bin/env bash
# System tools the test suite needs that are not Python packages:
# openssh-server/openssh-client (real sshd on 127.0.0.1 for SSH tests) and tmux
# (end-to-end terminal tests), slurm-wlm and munge (a real single-node Slurm cluster for the Slurm launcher's
# tests), a C compiler (the data check's C scans, engine/data/_fastscan.c: built by pip install, tested in CI).
# Installs with apt-get when missing (needs root).
set -euo pipefail
need=()
command -v tmux >/dev/null 2>&1 || need+=(tmux)
{ command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ]; } || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
{ command -v slurmctld >/dev/null 2>&1 || [ -x /usr/sbin/slurmctld ]; } || need+=(slurm-wlm)
{ command -v munged >/dev/null 2>&1 || [ -x /usr/sbin/munged ]; } || need+=(munge)
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1; then
  echo "install-test-deps: need root (or sudo) to apt-get install ${need[*]}" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "install-test-deps: installed ${need[*]}"
