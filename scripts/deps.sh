#!/bin/sh
# deps.sh - install the Debian packages moat needs, if any are missing.
#
# As root: `apt-get update` once, then `apt-get install -y` of what is
# missing. Not root: print the command to run and fail. Quiet and quick when
# everything is present, so make targets can call it every time.
set -eu

PACKAGES="
build-essential
clang
libclang-rt-14-dev
pkg-config
libcmocka-dev
libssl-dev
libsodium-dev
libwslay-dev
libsqlite3-dev
openssl
python3
python3-pytest
python3-paho-mqtt
mosquitto
mosquitto-clients
"

missing=""
for p in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "moat needs these Debian packages:$missing" >&2
	echo "install them with: sudo apt-get update && sudo apt-get install -y$missing" >&2
	exit 1
fi

echo "deps.sh: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
