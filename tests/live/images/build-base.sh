#!/bin/sh
# Build the Debian root every live-tier stand-in image shares, as a tarball for `docker import`.
#   build-base.sh OUT.tar SUITE MIRROR PACKAGE...
# minbase from the configured mirror, then the stand-ins' packages installed in a chroot with
# services kept from starting (policy-rc.d) and no Postgres cluster created: the Postgres
# image's own entrypoint runs initdb on first start, as the official image does.
set -eu
out=$1 suite=$2 mirror=$3
shift 3
root=$(mktemp -d "${TMPDIR:-/tmp}/msops-live-root.XXXXXX")
# mktemp makes it 0700, and it becomes the image's "/": non-root users must traverse it.
chmod 755 "$root"
cleanup() {
    umount "$root/proc" 2>/dev/null || true
    rm -rf "$root" "$root.log"
}
trap cleanup EXIT INT TERM

log() { echo "build-base: $* ($(($(date +%s) - started))s)" >&2; }
started=$(date +%s)
# Two stages, so that dpkg can be told to skip its fsyncs before it installs anything: this
# root is thrown away if the build is interrupted, and unsafe-io halves the install time.
debootstrap --foreign --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 40 "$root.log" >&2
    exit 1
}
log "downloaded and unpacked minbase"
echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/msops-live-unsafe-io"
chroot "$root" /debootstrap/debootstrap --second-stage >"$root.log" 2>&1 || {
    tail -n 40 "$root.log" >&2
    exit 1
}
log "installed minbase"

printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
mkdir -p "$root/etc/postgresql-common"
echo 'create_main_cluster = false' >"$root/etc/postgresql-common/createcluster.conf"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
# The nginx user first, so that no package's system user takes uid 101: the official nginx
# image's user, which msops runs its LB as.
chroot "$root" sh -ec "
    groupadd --gid 101 nginx
    useradd --uid 101 --gid 101 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin nginx
    export DEBIAN_FRONTEND=noninteractive
    apt-get -q update >/dev/null
    apt-get -q install -y --no-install-recommends $* >/dev/null 2>>/apt-install.log
    apt-get clean
" || {
    tail -n 40 "$root/apt-install.log" >&2
    exit 1
}
umount "$root/proc"
log "installed ${*}"

# Every stand-in has busybox wget for its health check, as the official images do.
ln -s /usr/bin/busybox "$root/usr/local/bin/wget"
# For size only: Prometheus' web UI assets and promtool (the tier uses the API), the LLVM
# that only Postgres' optional JIT loads, docs and locales.
rm -rf "$root/usr/share/javascript" "$root/usr/bin/promtool" \
    "$root"/usr/lib/x86_64-linux-gnu/libLLVM* "$root"/usr/lib/x86_64-linux-gnu/libz3.so* \
    "$root"/usr/lib/postgresql/*/lib/llvmjit* "$root"/usr/lib/postgresql/*/lib/bitcode \
    "$root/usr/share/i18n" "$root/usr/share/doc" "$root/usr/share/man" \
    "$root/usr/share/locale" "$root/apt-install.log" "$root/usr/sbin/policy-rc.d" \
    "$root/var/lib/apt/lists"/* "$root/var/cache/apt"/*.bin "$root/var/log"/*.log \
    "$root/etc/dpkg/dpkg.cfg.d/msops-live-unsafe-io"
: >"$root/etc/resolv.conf"
tar -C "$root" --numeric-owner -cf "$out.partial" .
mv "$out.partial" "$out"
log "wrote $out"
