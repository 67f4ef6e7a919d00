# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
AGENT := clients/symphony-agent
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt $(AGENT)/pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install run test test-fast lint format bench screenshots clean image image-test

$(STAMP): requirements.txt requirements-dev.txt $(AGENT)/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

run: install
	PY=$(PY) ./scripts/run.sh

test: install
	DEBUG=true $(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest -n 2 --create-db $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	$(PY) bench/run.py

# Pictures of the operator console from the demo data, into docs/console/ (docs/console.md).
screenshots: install
	$(PY) scripts/screenshots.py

clean:
	rm -rf $(VENV) var staticfiles

# The production image (docs/DEPLOYMENT.md): docker when an engine answers, else podman with its sandbox
# and, where no registry is reachable, a stand-in for the base image (scripts/image.sh).
image:
	./scripts/image.sh build

image-test: install
	IMAGE_TEST_PYTHON=$(PY) ./scripts/image.sh test
