# Two commands a user needs: `make train` (the main job, default configuration) and `make test`.
# Both first run the one set-up step: a local virtual environment in .venv with everything pinned
# (requirements.txt) and this package installed editable. It redoes work only when
# requirements.txt or setup.py changed, so it takes well under a second otherwise.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.snn_drone-installed
ARGS ?=

.PHONY: setup train test bench lock clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

train: $(STAMP)  # the train_sim ROS 2 graph; ARGS are graph arguments, e.g. ARGS="workers:=2"
	$(BIN)/snn-drone launch train_sim $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q -rs test $(ARGS)  # -rs: each skipped test with its reason (root, gcc, a CUDA device, ...)

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# Resolve requirements.in in a throw-away environment.
lock:  # print the versions now resolved for requirements.in, to update requirements.txt by hand
	rm -rf /tmp/snn_drone-lock && $(PYTHON) -m venv /tmp/snn_drone-lock
	/tmp/snn_drone-lock/bin/pip install --quiet -r requirements.in
	/tmp/snn_drone-lock/bin/pip freeze --exclude-editable

clean-venv:
	rm -rf $(VENV)
