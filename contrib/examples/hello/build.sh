#!/bin/sh
# Build step of the hello example: records which version this checkout is.
# The version is $HELLO_VERSION when set, else the checked-out commit, else "dev".
set -eu

if [ -n "${HELLO_VERSION:-}" ]; then
    version=$HELLO_VERSION
elif commit=$(git rev-parse HEAD 2>/dev/null) && [ -n "$commit" ]; then
    version=$commit
else
    version=dev
fi

echo "hello: building in $(pwd)"
printf '%s\n' "$version" > version.txt
echo "hello: wrote version.txt ($version)"
echo "hello: build done" >&2
