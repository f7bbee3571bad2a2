#!/usr/bin/env bash
# Builds the release tarball boomerang-<version>-<arch>-linux.tar.gz and prints its sha256:
#   bin/boomerang, bin/anonymize           (boomerang carries what `boomerang setup` installs)
#   share/man/man1/*.1                     (`boomerang man`)
#   share/bash-completion/completions/boomerang, share/zsh/site-functions/_boomerang,
#   share/fish/vendor_completions.d/boomerang.fish   (`boomerang completions`)
#   README.md, SECURITY.md, LICENSE* (when the checkout has them) and
#   share/doc/boomerang/licenses/<model>/   (the licences of the models the binary carries or builds)
# Unpack it anywhere (e.g. tar -xzf ... -C ~/.local --strip-components 1), then run
# `boomerang fetch-onnxruntime` and `boomerang setup`.
#
# usage: tools/release.sh [--profile release|dev|NAME] [--debug] [--out DIR]
#   --profile  the cargo profile to build with (default release; --debug = --profile dev, minutes
#              faster, for checking the packaging)
#   --out      where the tarball goes (default dist/)
# The archive is reproducible for given binaries: sorted names, mtime 0, owner root.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
out=dist
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="${2:?--profile needs a name}"; shift 2 ;;
    --debug) profile=dev; shift ;;
    --out) out="${2:?--out needs a folder}"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "release.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

cargo build --quiet --locked --profile "$profile" --bin boomerang --bin anonymize
target_dir="${CARGO_TARGET_DIR:-target}"
case "$profile" in
  dev) profile_dir=debug ;;
  *) profile_dir="$profile" ;;
esac
bin_dir="$target_dir/$profile_dir"
boomerang="$bin_dir/boomerang"

version="$("$boomerang" --version | awk '{print $2}')"
name="boomerang-$version-$(uname -m)-linux"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/$name"
mkdir -p "$root/bin" "$root/share/man/man1" "$root/share/bash-completion/completions" \
  "$root/share/zsh/site-functions" "$root/share/fish/vendor_completions.d" \
  "$root/share/doc/boomerang/licenses"
install -m 0755 "$boomerang" "$bin_dir/anonymize" "$root/bin/"
"$boomerang" man "$root/share/man/man1" >/dev/null
"$boomerang" completions bash > "$root/share/bash-completion/completions/boomerang"
"$boomerang" completions zsh > "$root/share/zsh/site-functions/_boomerang"
"$boomerang" completions fish > "$root/share/fish/vendor_completions.d/boomerang.fish"
install -m 0644 README.md SECURITY.md "$root/"
for licence in LICENSE*; do
  [ -e "$licence" ] && install -m 0644 "$licence" "$root/"
done
for model in dlib-face face-detector efficientnet-lite0; do
  mkdir -p "$root/share/doc/boomerang/licenses/$model"
  install -m 0644 "models/$model"/LICENSE* "$root/share/doc/boomerang/licenses/$model/"
done

mkdir -p "$out"
tarball="$out/$name.tar.gz"
tar -C "$stage" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - "$name" \
  | gzip -n > "$tarball"
sha256sum "$tarball"
