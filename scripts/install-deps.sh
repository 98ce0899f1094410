#!/usr/bin/env bash
# Installs the Debian packages that building, running and testing bulwark
# need, and only those that are missing. Safe to run repeatedly; quiet when
# everything is present.
set -euo pipefail

PKGS=(
  gcc make clang libclang-rt-14-dev   # compilers, sanitizers, libFuzzer
  libyaml-dev                         # main config and rulesets
  libvectorscan-dev                   # linear-time regex for `matches`
  libjansson-dev                      # admin API request bodies
  libssl-dev openssl                  # TLS; test certificates
  liburing-dev                        # io_uring for worker sockets
  python3 python3-pytest              # integration tests
  curl nginx-light                    # test clients, a real origin
  clang-format                        # make check's formatting check
)
if [ "${BULWARK_BENCH:-0}" = 1 ]; then
  # nginx + Lua (the OpenResty-style comparison target: lua-nginx-module
  # pulls in ndk and lua-resty-core) and gnuplot for the bench's charts.
  PKGS+=(haproxy wrk libnginx-mod-http-lua gnuplot-nox)
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
SUDO=""
if [ "$(id -u)" != 0 ]; then
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
# Debian's nginx package starts the system nginx on port 80 when installed;
# bulwark's tests run their own nginx, so keep the service from starting.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -q </dev/null
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
