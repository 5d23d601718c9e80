# Two commands do all set-up on a fresh clone: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch stays pinned in every install command: an unpinned torch pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: run test install clean

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)" -e ".[test]"
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/sectow run $(ARGS)

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info
