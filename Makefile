# The two commands of the README quick start, and the pieces they stand on.
#   make serve   start a demo node on loopback (data in ./data)
#   make test    lint, type-check and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
DATA   ?= ./data
BIN    := $(VENV)/bin

.PHONY: serve test lint typecheck pytest bench bench-imap bench-smtp bench-memory clean
.PHONY: bench-relay bench-smtp-memory bench-bridge

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

serve: $(VENV)/.installed
	@test -f $(DATA)/mssante.toml || $(BIN)/mssante init --demo --data-dir $(DATA)
	$(BIN)/mssante serve --data-dir $(DATA)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

pytest: $(VENV)/.installed-test
	$(BIN)/python -m pytest

test: lint typecheck pytest

bench: $(VENV)/.installed-test
	$(BIN)/python bench/store_bench.py
	$(BIN)/python bench/annuaire_search.py
	$(BIN)/python bench/imap_bench.py
	$(BIN)/python bench/smtp_bench.py
	$(BIN)/python bench/memory_bench.py
	$(BIN)/python bench/relay_bench.py
	$(BIN)/python bench/smtp_memory_bench.py
	$(BIN)/python bench/bridge_bench.py

# Relay end to end between two of our nodes, against Postfix -> Postfix (installed if absent).
bench-relay: $(VENV)/.installed-test
	$(BIN)/python bench/relay_bench.py

# Memory per idle SMTP session (after STARTTLS) against a throwaway Postfix.
bench-smtp-memory: $(VENV)/.installed-test
	$(BIN)/python bench/smtp_memory_bench.py

# The envoi-en-Y bridge: XDM+CDA packages validated and deposited per second (no reference).
bench-bridge: $(VENV)/.installed-test
	$(BIN)/python bench/bridge_bench.py

# Memory per idle IMAP connection against a throwaway Dovecot (installed if absent).
bench-memory: $(VENV)/.installed-test
	$(BIN)/python bench/memory_bench.py

# SMTP durable acceptance against a throwaway Postfix (installed if absent).
bench-smtp: $(VENV)/.installed-test
	$(BIN)/python bench/smtp_bench.py

# The IMAP server alone, on a 100,000-message mailbox (about two minutes).
bench-imap: $(VENV)/.installed-test
	$(BIN)/python bench/imap_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
