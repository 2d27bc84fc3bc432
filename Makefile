VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: test demo install lint clean serve

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[test]'
	command -v chromium >/dev/null || apt-get install -y -q chromium >/dev/null \
		|| (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null) \
		|| echo "chromium not installed: the web app's browser test will be skipped"
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check src tests benchmarks examples

test: install lint
	$(VENV)/bin/pytest

demo: install
	$(VENV)/bin/cyclediff demo --out demo-out

serve: install
	$(VENV)/bin/cyclediff serve

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
