#!/usr/bin/env bash
# Builds the Debian package of bsfg with dpkg-deb alone (no debian/ source tree, no debhelper):
#   scripts/package-deb.sh [--binary PATH] [--out DIR]
# Without --binary it builds the release binary first. Prints the path of the .deb on stdout.
# BSFG_DEB_MAINTAINER sets the Maintainer field; SOURCE_DATE_EPOCH (default: the last commit)
# every timestamp, so the same tree and binary give the same package.
#
# What it installs:
#   /usr/bin/bsfg                                 the binary (debug info stripped, symbols kept)
#   /lib/systemd/system/bsfg.service              config-samples/bsfg.service (Type=notify)
#   /etc/bsfg/bsfg.toml                           conffile: config-samples/plant-a.toml, to edit
#   /usr/share/bsfg/prometheus/, grafana/         alert rules (and their unit tests), dashboard
#   /usr/share/doc/bsfg/examples/                 the four-zone estate's configs
#   /usr/share/man/man1/bsfg*.1.gz                `bsfg man --dir`
#   bash, zsh and fish completions                `bsfg completions SHELL`
# The maintainer scripts create the `bsfg` system user, /var/lib/bsfg (0750 bsfg:bsfg) and give
# /etc/bsfg and the config to root:bsfg 0750/0640 (dpkg-statoverride). The service is neither
# enabled nor started on first install (it needs a PKI first); an upgrade restarts it if it runs.
set -euo pipefail
cd "$(dirname "$0")/.."

binary="" out="."
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: scripts/package-deb.sh [--binary PATH] [--out DIR]" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ]; then
  . scripts/env.sh
  cargo build --release --bin bsfg >&2
  binary="$BSFG_BIN_DIR/release/bsfg"
fi
[ -x "$binary" ] || { echo "error: $binary is not an executable" >&2; exit 1; }

maintainer="${BSFG_DEB_MAINTAINER:-bsfg maintainers <maintainers@bsfg.example.org>}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
arch="$(dpkg --print-architecture)"
# Reproducible: timestamps and the man pages' date come from the last commit when there is one.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
mkdir -p "$out"
deb="$(cd "$out" && pwd)/bsfg_${version}_${arch}.deb"
root="$(mktemp -d)"
chmod 0755 "$root"
trap 'rm -rf "$root" "$root.shlibs"' EXIT

# Files: directories 0755, files 0644, owned by root (dpkg-deb --root-owner-group).
umask 022
doc="$root/usr/share/doc/bsfg"
install -d "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/bsfg" "$doc/examples" \
  "$root/usr/share/bsfg/prometheus" "$root/usr/share/bsfg/grafana" "$root/usr/share/man/man1" \
  "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
  "$root/usr/share/fish/vendor_completions.d" "$root/usr/share/lintian/overrides"
# Debug info out, symbol table kept: a panic's backtrace names its functions.
objcopy --strip-debug --remove-section=.comment --remove-section=.note "$binary" "$root/usr/bin/bsfg"
chmod 0755 "$root/usr/bin/bsfg"
install -m 0644 config-samples/bsfg.service "$root/lib/systemd/system/bsfg.service"
install -m 0644 config-samples/plant-a.toml "$root/etc/bsfg/bsfg.toml"
install -m 0644 config-samples/*.toml "$doc/examples/"
install -m 0644 config-samples/prometheus/alerts.yml config-samples/prometheus/alerts_test.yml \
  "$root/usr/share/bsfg/prometheus/"
install -m 0644 config-samples/grafana/bsfg-dashboard.json "$root/usr/share/bsfg/grafana/"
"$binary" man --dir "$root/usr/share/man/man1" >/dev/null
gzip -9n "$root"/usr/share/man/man1/*.1
"$binary" completions bash > "$root/usr/share/bash-completion/completions/bsfg"
"$binary" completions zsh > "$root/usr/share/zsh/vendor-completions/_bsfg"
"$binary" completions fish > "$root/usr/share/fish/vendor_completions.d/bsfg.fish"
cat > "$root/usr/share/lintian/overrides/bsfg" <<'EOF'
# The symbol table is kept on purpose: backtraces of a node name their functions.
bsfg: unstripped-binary-or-object [usr/bin/bsfg]
EOF

cat > "$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: bsfg
Comment: The binary links Rust crates from crates.io (each under its own licence, listed in
 Cargo.lock of the source) and RocksDB (Apache-2.0 or GPL-2.0).

Files: *
Copyright: $(date -u -d "@$SOURCE_DATE_EPOCH" +%Y) the bsfg authors
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
changelog_date="$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
cat > "$doc/changelog" <<EOF
bsfg ($version) unstable; urgency=medium

  * Built from the bsfg source tree by scripts/package-deb.sh.

 -- $maintainer  $changelog_date
EOF
gzip -9n "$doc/changelog"

# Control files.
install -d "$root/DEBIAN"
echo "/etc/bsfg/bsfg.toml" > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd bsfg >/dev/null; then
    adduser --quiet --system --group --home /var/lib/bsfg --no-create-home \
      --shell /usr/sbin/nologin --gecos "bsfg gateway node" bsfg
  fi
  install -d -m 0750 -o bsfg -g bsfg /var/lib/bsfg
  for entry in "0750 /etc/bsfg" "0640 /etc/bsfg/bsfg.toml"; do
    path="${entry#* }"
    if ! dpkg-statoverride --list "$path" >/dev/null; then
      dpkg-statoverride --update --add root bsfg "${entry%% *}" "$path"
    fi
  done
  if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
    # An upgrade restarts a running node (SIGTERM drains it first); a first install waits for
    # the operator: the node needs its PKI before `systemctl enable --now bsfg`.
    if [ -n "$2" ]; then
      deb-systemd-invoke try-restart bsfg.service >/dev/null || true
    fi
  fi
fi
EOF
cat > "$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  deb-systemd-invoke stop bsfg.service >/dev/null || true
fi
EOF
cat > "$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
  for path in /etc/bsfg/bsfg.toml /etc/bsfg; do
    if dpkg-statoverride --list "$path" >/dev/null; then
      dpkg-statoverride --remove "$path"
    fi
  done
  # /var/lib/bsfg is kept: it may hold facts not yet delivered to another zone.
fi
if [ -d /run/systemd/system ]; then
  systemctl --system daemon-reload >/dev/null || true
fi
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
(cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' \
  | LC_ALL=C sort -z | xargs -0 md5sum > DEBIAN/md5sums)
installed_size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
# The shared libraries the binary links, as dpkg-shlibdeps reads them off it (it wants a
# debian/control beside it, which this package has no other use for).
shlibs="$root.shlibs"
mkdir -p "$shlibs/debian"
printf 'Source: bsfg\n\nPackage: bsfg\nArchitecture: any\n' > "$shlibs/debian/control"
depends="$(cd "$shlibs" && dpkg-shlibdeps -O "$root/usr/bin/bsfg" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
rm -rf "$shlibs"
[ -n "$depends" ] || { echo "error: dpkg-shlibdeps found no dependencies of the binary" >&2; exit 1; }
cat > "$root/DEBIAN/control" <<EOF
Package: bsfg
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: adduser, $depends
Section: net
Priority: optional
Description: Bidirectional Store-and-Forward Gateway node
 bsfg runs on one gateway per network zone (enterprise IT, industrial DMZ,
 plant OT) and moves facts between zones so that either side can be cut off
 for hours without blocking its producers or losing an acknowledged fact.
 Producers append to their own zone's node, which makes each fact durable and
 acknowledges at once; the destination zone's node pulls them over QUIC with
 mutual TLS and stores each exactly once for its local consumers.
EOF

find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
echo "$deb"
