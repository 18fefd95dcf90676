# spqr-fast — `make eval` and `make test` work from a fresh clone (they install into .venv first).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= spqr-out

NIGHTLY ?= nightly-demo

.PHONY: audit nightly-demo install eval test test-heavy test-slow test-all test-lowest bench bench-gpu doctor world clean docker-build docker-build-cpu docker-build-gpu docker-test docker-eval

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

eval: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/spqr-fast eval --out $(OUT)

# The audit demonstration: the world's models audited against one harm threshold (base FAIL, an
# aligned model PASS), with the images each decision took beside those of a full eval.
audit: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/spqr-fast audit --out $(OUT)-audit

# The embedded default twice, one deliberate change between the runs, then `compare` of the two
# recorded run ids: names the change and flags the regression (see README "Nightly benchmarks").
nightly-demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m spqr_fast.demo.nightly --out $(NIGHTLY)

# Three tiers: `test` (every unit, the pure stages, one end-to-end eval: ~2 min on 2 cores),
# `test-heavy` (full evaluations, exports, training, Ray and shards: ~15 min), `test-slow` (the
# reliability suite, tests/reliability: malformed inputs, kill -9 and resume, concurrent runs,
# tampered shards, a full disk, the Docker image). `test-all` runs the three; CI runs them in turn.
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow and not heavy" tests

test-heavy: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "heavy and not slow" tests

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow tests

test-all: test test-heavy test-slow

# The lower bounds pyproject.toml states for the light libraries: tests/constraints-lowest.txt
# installed into .lowest/ (ahead of the venv on the path), then the fast tier on them.
test-lowest: $(STAMP)
	rm -rf .lowest && $(BIN)/pip install --quiet --no-deps --target .lowest -r tests/constraints-lowest.txt
	PYTHONPATH=$(CURDIR)/.lowest HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow and not heavy" tests

bench: $(STAMP)
	$(BIN)/spqr-fast bench --suite backends --preset tiny
	$(BIN)/spqr-fast bench --suite backends --preset sd15
	$(BIN)/spqr-fast bench --suite finetune --preset tiny
	$(BIN)/spqr-fast bench --suite finetune --preset sd15 --latent 32
	$(BIN)/spqr-fast bench --suite vqa --preset tiny
	$(BIN)/spqr-fast bench --suite vqa --preset blip-base
	$(BIN)/spqr-fast bench --suite scale --images 1000 --images 10000

# The GPU proof on a CUDA machine (SD 1.5 architecture, 512², 50 steps, fp16): tables into bench-gpu/.
bench-gpu: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/spqr-fast bench --suite gpu --preset sd15 --out bench-gpu

# Retrain every model of the miniature world from its seed (~1 h on 2 CPU cores); writes
# spqr_fast/world/weights/*, each with a card.json. PARTS="sd vqa" rebuilds only those.
PARTS ?=
world: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m spqr_fast.world.training.build $(foreach p,$(PARTS),--only $(p))

doctor: $(STAMP)
	$(BIN)/spqr-fast doctor

# Images (docker/): BASE_IMAGE is a plain Debian bookworm; CA_CERTS names PEM files of extra CA
# certificates for builds behind a TLS-intercepting proxy; TORCH_WHEEL a local CPU torch wheel
# for the CPU image where PyTorch's index is unreachable. docker/ci-setup.sh makes an engine and
# the base image on a Debian machine with no registry.
BASE_IMAGE ?= debian:bookworm-slim
CA_CERTS   ?=
TORCH_WHEEL ?=
DOCKER_ARGS = --build-arg BASE_IMAGE=$(BASE_IMAGE) $(if $(CA_CERTS),--build-arg EXTRA_CA_CERTS="$$(cat $(CA_CERTS))")

docker-build: docker-build-cpu docker-build-gpu

docker-build-cpu:
	$(if $(TORCH_WHEEL),cp $(TORCH_WHEEL) docker/wheels/)
	docker build -f docker/Dockerfile.cpu -t spqr-fast:cpu $(DOCKER_ARGS) .

docker-build-gpu:
	docker build -f docker/Dockerfile -t spqr-fast $(DOCKER_ARGS) .

# Build the CPU image and use it as a user would (docker/test-image.sh); needs a Docker engine.
docker-test: $(STAMP)
	bash docker/test-image.sh

docker-eval:
	mkdir -p $(OUT) && docker run --rm --gpus all --user $$(id -u):$$(id -g) -v $(CURDIR)/$(OUT):/out spqr-fast eval

clean:
	rm -rf $(OUT) .pytest_cache
