#!/bin/sh
# spqr-fast container entrypoint: `docker run spqr-fast [COMMAND ...]`.
# - no arguments: the default CMD (`eval`, the embedded demo);
# - `eval` and `generate` write to $SPQR_OUT (default /out, a volume) unless --out is given;
# - the artefact cache is $SPQR_ENGINE_CACHE (default /engines, a volume), so engines survive restarts.
set -eu
out="${SPQR_OUT:-/out}"
if [ "$#" -gt 0 ] && { [ "$1" = "eval" ] || [ "$1" = "generate" ]; }; then
  case " $* " in
    *" --out "*|*" --out="*) ;;
    *) set -- "$@" --out "$out" ;;
  esac
fi
if [ "${SPQR_ENTRYPOINT_ECHO:-0}" = "1" ]; then
  echo "spqr-fast $*"
  exit 0
fi
exec spqr-fast "$@"
