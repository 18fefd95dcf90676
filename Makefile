# spqr-fast — `make eval` and `make test` work from a fresh clone (they install into .venv first).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= spqr-out

.PHONY: install eval test test-slow bench bench-gpu doctor world clean docker-build docker-eval

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

eval: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/spqr-fast eval --out $(OUT)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow" tests

# The reliability suite (tests/reliability: malformed inputs, kill -9 and resume, concurrent runs,
# tampered shards, a full disk); CI runs it after `make test`.
test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow tests

bench: $(STAMP)
	$(BIN)/spqr-fast bench --suite backends --preset tiny
	$(BIN)/spqr-fast bench --suite backends --preset sd15
	$(BIN)/spqr-fast bench --suite finetune --preset tiny
	$(BIN)/spqr-fast bench --suite finetune --preset sd15 --latent 32
	$(BIN)/spqr-fast bench --suite vqa --preset tiny
	$(BIN)/spqr-fast bench --suite vqa --preset blip-base

# The GPU proof on a CUDA machine (SD 1.5 architecture, 512², 50 steps, fp16): tables into bench-gpu/.
bench-gpu: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/spqr-fast bench --suite gpu --preset sd15 --out bench-gpu

# Retrain every model of the miniature world from its seed (~1 h on 2 CPU cores); writes
# spqr_fast/world/weights/*, each with a card.json. PARTS="sd vqa" rebuilds only those.
PARTS ?=
world: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m spqr_fast.world.build $(foreach p,$(PARTS),--only $(p))

doctor: $(STAMP)
	$(BIN)/spqr-fast doctor

docker-build:
	docker build -f docker/Dockerfile -t spqr-fast .
	docker build -f docker/Dockerfile.cpu -t spqr-fast:cpu .

docker-eval:
	docker run --rm --gpus all -v $(CURDIR)/$(OUT):/out spqr-fast eval

clean:
	rm -rf $(OUT) .pytest_cache
