# `make demo` and `make test` create .venv and install everything on first use.
PYTHON ?= python3
BIN := .venv/bin
DEMO_STEPS ?= 60000

.PHONY: demo test fast-test lint format bench results install clean

install: .venv/.installed
.venv/.installed: pyproject.toml scripts/install.sh
	PYTHON=$(PYTHON) bash scripts/install.sh

# The demo agent: the zoo's CoinRun agent if it is there, else one trained into runs/demo
# (resumes a killed run; skipped once runs/demo/model.zip exists, FORCE=1 retrains from scratch).
# Then: its attribution report, an audit of DEMO_LEVELS unseen levels, the edit that projects out
# the feature with the strongest negative attribution on hazards, and both models compared
# (--force: a second `make demo` replaces the reports of the first).
ZOO_COINRUN := zoo/coinrun-ppo/model.zip
DEMO_MODEL := $(if $(wildcard $(ZOO_COINRUN)),zoo:coinrun-ppo,runs/demo)
# The zoo's CoinRun agent has separate policy and value trunks, so its features are found in
# the policy's own trunk (2b there), attributing the greedy action's log-probability: what
# an edit there removes is what the policy reads. runs/demo has one trunk: its value.
DEMO_TARGET := $(if $(wildcard $(ZOO_COINRUN)),policy,value)
DEMO_LEVELS ?= 200

demo: install
	@if [ "$(DEMO_MODEL)" != runs/demo ]; then \
		echo "using the zoo's CoinRun agent ($(ZOO_COINRUN))"; \
	else \
		if [ -n "$(FORCE)" ]; then rm -rf runs/demo; fi; \
		if [ -f runs/demo/model.zip ]; then \
			echo "runs/demo/model.zip exists: not retraining (FORCE=1 make demo retrains)"; \
		elif [ -f runs/demo/config.json ]; then \
			$(BIN)/python train.py ppo --resume --out runs/demo; \
		else \
			$(BIN)/python train.py ppo --env procgen:coinrun --arch interpretable \
				--env-kwargs distribution_mode=easy paint_vel_info=true \
				--timesteps $(DEMO_STEPS) --n-envs 32 --n-steps 128 --batch-size 1024 \
				--eval-episodes 100 --out runs/demo; \
		fi; \
	fi
	$(BIN)/python -m interpret attribute $(DEMO_MODEL) --layer 2b --target $(DEMO_TARGET) \
		--features 8 --out reports/demo-attribution --force
	$(BIN)/python -m interpret audit $(DEMO_MODEL) --levels $(DEMO_LEVELS) \
		--features reports/demo-attribution --out reports/demo-audit --force
	$(BIN)/python -m interpret edit $(DEMO_MODEL) --features reports/demo-attribution \
		--feature hazards --out runs/demo-edited --force
	$(BIN)/python -m interpret compare $(DEMO_MODEL) runs/demo-edited --levels $(DEMO_LEVELS) \
		--out reports/demo-compare --force
	@echo "open reports/demo-attribution/index.html and reports/demo-audit/index.html"

# The papers' experiments on the zoo agents, each a dated page under docs/results/
# (scripts/results.py; a rerun skips the steps already done). The editing table uses the
# reference CoinRun agent (zoo/coinrun-ppo, layer 2b) once it is there, else the Nature-CNN
# agent, edited at its layers cnn.1 and cnn.3 (the audits of the original are shared).
RESULTS_COINRUN := $(if $(wildcard $(ZOO_COINRUN)),zoo:coinrun-ppo,zoo:coinrun-ppo-nature)
RESULTS_LAYERS ?= $(if $(wildcard $(ZOO_COINRUN)),2b,cnn.1 cnn.3)
RESULTS_TARGET ?= $(DEMO_TARGET)
RESULTS_LEVELS ?= 10000

results: install
	for layer in $(RESULTS_LAYERS); do \
		$(BIN)/python scripts/results.py editing --model $(RESULTS_COINRUN) --layer $$layer \
			--target $(RESULTS_TARGET) --levels $(RESULTS_LEVELS) || exit 1; \
	done
	$(BIN)/python scripts/results.py goggles --model zoo:pong-ppo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m mypy  # agents/ and interpret/ (pyproject's [tool.mypy]): the PolicyView seam

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Lint, then every test: the fast ones and those marked slow (short real training runs).
test: lint
	$(BIN)/python -m pytest -q -m "slow or not slow"

fast-test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/throughput.py --quick

clean:
	rm -rf .venv .pytest_cache .ruff_cache
