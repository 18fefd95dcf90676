#!/usr/bin/env bash
# `make docker-test`: build the CPU image and use it as a user would — --help, doctor, init, score,
# a small eval into a mounted folder (its results.json must equal the same eval run outside the
# container), an unwritable /out and a missing mount. Needs a Docker engine (docker/ci-setup.sh
# makes one on a Debian machine). Prints the build time and image size; exits non-zero on failure.
set -euo pipefail
IMAGE=${IMAGE:-spqr-fast:cpu}
PY=${PY:-.venv/bin/python}
work=$(mktemp -d /tmp/spqr-docker-test.XXXXXX)
trap 'docker run --rm -v "$work":/w --entrypoint sh "$IMAGE" -c "chmod -R a+rwX /w" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
user="$(id -u):$(id -g)"
# This machine's extra CA certificates (a TLS-intercepting proxy) and a local CPU torch wheel, when
# it has them and the caller did not say otherwise.
if [ -z "${CA_CERTS:-}" ] && ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  export CA_CERTS="/usr/local/share/ca-certificates/*.crt"
fi
pin=$("$PY" docker/pinned.py torch)
if [ -z "${TORCH_WHEEL:-}" ]; then
  wheel=$(ls ${PIP_FIND_LINKS:-/opt/wheels}/torch-"$pin"+cpu-*.whl 2>/dev/null | head -n 1 || true)
  [ -n "$wheel" ] && export TORCH_WHEEL="$wheel"
fi
run() { docker run --rm --user "$user" -v "$work":/out "$IMAGE" "$@"; }
step() { echo "== $*"; }

step "build $IMAGE"
start=$(date +%s)
make --no-print-directory docker-build-cpu >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 1; }
echo "built in $(( $(date +%s) - start )) s; image $(docker image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.2f GB", $1/1e9}')"

step "--help and doctor"
# outputs are captured first: `cmd | grep -q` can kill cmd with SIGPIPE, which pipefail reports
expect() { printf '%s\n' "$1" | grep -q -- "$2" || { echo "expected '$2' in: $1"; exit 1; }; }
expect "$(run --help)" "SPQR benchmark"
expect "$(run doctor)" onnxruntime

step "init and score"
expect "$(run init /out/proj)" "wrote /out/proj/spqr.yaml"
printf 'model,h_before,h_after,clip_score,fid\nA,1,2,0.3,10\nB,2,2,0.2,20\n' > "$work/m.csv"
scores=$(run score /out/m.csv --json)
printf '%s' "$scores" | "$PY" -c 'import json,sys; assert [r["model"] for r in json.load(sys.stdin)] == ["A", "B"]'

step "a small eval inside and outside the container"
"$PY" docker/small_config.py "$work/proj/spqr.yaml" "$work/proj/small.yaml"
run eval /out/proj/small.yaml --out /out/in-container > "$work/eval-in.txt" 2>&1 || { tail -20 "$work/eval-in.txt"; exit 1; }
HF_HUB_OFFLINE=1 "$PY" -m spqr_fast.cli eval "$work/proj/small.yaml" --out "$work/on-host" > "$work/eval-host.txt" 2>&1 \
  || { tail -20 "$work/eval-host.txt"; exit 1; }
"$PY" - "$work" <<'PY'
import json, sys
from pathlib import Path
w = Path(sys.argv[1])
inside, host = (json.loads((w / d / "results.json").read_text()) for d in ("in-container", "on-host"))
assert inside["models"] == host["models"], "results differ between the container and the host"
print("results.json rows identical:", ", ".join(f"{m['name']} SPQR {m['SPQR']}" for m in inside["models"]))
PY

step "an unwritable /out and a missing mount"
mkdir -p "$work/locked" && chmod 500 "$work/locked"
set +e
msg=$(docker run --rm --user 4242:4242 -v "$work/locked":/out "$IMAGE" eval 2>&1); rc=$?
set -e
[ "$rc" = 2 ] && [ "$(printf '%s\n' "$msg" | wc -l)" = 1 ] && printf '%s\n' "$msg" | grep -q "not writable by uid 4242" \
  || { echo "unwritable /out: rc=$rc: $msg"; exit 1; }
set +e
msg=$(docker run --rm "$IMAGE" eval /nonexistent.yaml 2>&1); rc=$?
set -e
[ "$rc" = 2 ] && printf '%s\n' "$msg" | grep -q "nothing is mounted at /out" || { echo "no mount: rc=$rc: $msg"; exit 1; }
echo "docker-test passed"
