#!/bin/sh
# Unpacks the sample photographs of Debian's python3-skimage and opencv-doc packages into DEST
# (default build/sample-photos), without installing the packages or their dependencies: the
# photographs of `malaria rejection-test --photos`.
set -eu
dest=${1:-build/sample-photos}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download python3-skimage opencv-doc >/dev/null)
mkdir -p "$dest"
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/x"; done
cp -r "$work/x/usr/lib/python3/dist-packages/skimage/data" "$dest/skimage"
cp -r "$work/x/usr/share/doc/opencv-doc/examples/data" "$dest/opencv"
echo "$dest: $(find "$dest" -type f | wc -l) files"
