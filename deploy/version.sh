#!/bin/sh
# Prints the package version: the nearest v* tag (v1.2.3 -> 1.2.3, with
# +<commits>.g<sha> after it when HEAD is past the tag), else deploy/VERSION.
cd "$(dirname "$0")/.." || exit 1
if v=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
	echo "$v" | sed -e 's/^v//' -e 's/-\([0-9]*\)-g\([0-9a-f]*\)$/+\1.g\2/'
else
	cat deploy/VERSION
fi
