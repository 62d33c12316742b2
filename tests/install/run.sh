#!/usr/bin/env bash
# Install vktrain into a private prefix, then build and run a user program
# against it twice: through find_package(vktrain) (shared and static) and
# through pkg-config. Usage: run.sh SOURCE_DIR BUILD_DIR CMAKE
set -euo pipefail
src=$1 build=$2 cmake=$3
work=$build/install-test
rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix

echo "== install into $prefix"
"$cmake" --install "$build" --prefix "$prefix" > "$work/install.log"
test -x "$prefix/bin/vktrain"
test -f "$prefix/include/vktrain/vktrain.h"
ls "$prefix"/lib*/libvktrain.so* "$prefix"/lib*/libvktrain.a > /dev/null
"$prefix/bin/vktrain" --version

echo "== find_package(vktrain)"
"$cmake" -S "$src/tests/install/consumer" -B "$work/cm" -G Ninja \
    -DCMAKE_PREFIX_PATH="$prefix" > "$work/cm.log"
"$cmake" --build "$work/cm" > "$work/cm-build.log"
libdir=$(dirname "$(ls "$prefix"/lib*/libvktrain.so | head -n 1)")
LD_LIBRARY_PATH=$libdir "$work/cm/consumer_shared"
"$work/cm/consumer_static"

echo "== pkg-config --cflags --libs vktrain"
export PKG_CONFIG_PATH=$libdir/pkgconfig
flags=$(pkg-config --cflags --libs vktrain)
echo "flags: $flags"
cc -std=c17 -o "$work/pc_consumer" "$src/tests/install/consumer/main.c" $flags
LD_LIBRARY_PATH=$libdir "$work/pc_consumer"
cc -std=c17 -static-libgcc -o "$work/pc_consumer_static" "$src/tests/install/consumer/main.c" \
    $(pkg-config --cflags vktrain) "$libdir/libvktrain.a" $(pkg-config --libs --static vktrain | sed 's/-lvktrain//')
"$work/pc_consumer_static"
echo "install consumer: all four builds ran"
