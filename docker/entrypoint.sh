#!/bin/sh
# spqr-fast container entrypoint: `docker run spqr-fast [COMMAND ...]`.
# - no arguments: the default CMD (`eval`, the embedded demo);
# - `eval` and `generate` write to $SPQR_OUT (default /out) unless --out is given; that folder
#   must be writable by the container's user (one line and exit 2 otherwise), and when nothing is
#   mounted there the results would vanish with the container, which is said before the run;
# - the artefact cache is $SPQR_ENGINE_CACHE (default /engines): mount it to keep engines.
set -eu
out="${SPQR_OUT:-/out}"
writes_out=0
if [ "$#" -gt 0 ] && { [ "$1" = "eval" ] || [ "$1" = "generate" ]; }; then
  case " $* " in
    *" --out "*|*" --out="*) ;;
    *) set -- "$@" --out "$out"; writes_out=1 ;;
  esac
fi
if [ "${SPQR_ENTRYPOINT_ECHO:-0}" = "1" ]; then
  echo "spqr-fast $*"
  exit 0
fi
if [ "$writes_out" = 1 ]; then
  probe="$out/.spqr-write-test.$$"
  if ! (mkdir -p "$out" && : > "$probe") 2>/dev/null; then
    echo "error: $out is not writable by uid $(id -u) — run with --user \$(id -u):\$(id -g), or chown the host folder you mount there" >&2
    exit 2
  fi
  rm -f "$probe"
  # a mount point shows up in /proc/self/mountinfo with $out as its mount path (field 5)
  if ! awk -v d="$out" '$5 == d { found = 1 } END { exit !found }' /proc/self/mountinfo 2>/dev/null; then
    echo "warning: nothing is mounted at $out — the results will be lost when the container is removed; add -v \$PWD/out:$out" >&2
  fi
fi
exec spqr-fast "$@"
