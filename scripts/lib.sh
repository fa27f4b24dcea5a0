# Shared by scripts/*.sh: installing what the project needs, the same way everywhere.

apt_install() {
  [ "$#" -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing: $*; install them with: sudo apt-get install -y $*" >&2
    exit 1
  fi
  echo "== apt-get install $*"
  apt-get update -qq
  # policy-rc.d keeps Debian from starting the packaged daemons (prometheus on :9090);
  # the tests start and stop their own processes.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  rm -f /usr/sbin/policy-rc.d
}

ensure_uv() {
  command -v uv >/dev/null && return 0
  echo "== installing uv"
  python3 -m pip install --quiet --disable-pip-version-check uv 2>/dev/null \
    || curl -LsSf https://astral.sh/uv/install.sh | sh
  export PATH="$HOME/.local/bin:$PATH"
  command -v uv >/dev/null || { echo "uv could not be installed" >&2; exit 1; }
}
