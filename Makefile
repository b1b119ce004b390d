# The two set-up commands of the README: `make demo` and `make test`. Each makes .venv on
# first use (python3 -m venv + pip, nothing else needed on the machine) and reuses it after.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mfvan-installed

.PHONY: test demo lint install clean genicam

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[train,dev]'
	touch $(STAMP)

# GenICam cameras (docs/cameras.md): the [genicam] extra (PyGObject, built here in ~40 s) once
# the system has Aravis and the libraries the build needs (.ci/run installs them from Debian).
# Checked on every run, so a venv made before Aravis was installed gets it too; without Aravis
# nothing is installed and the GenICam tests skip with the reason.
genicam: $(STAMP)
	@if $(PY) -c "import gi; gi.require_version('Aravis', '0.8')" 2>/dev/null; then :; \
	elif pkg-config --exists gobject-introspection-1.0 cairo 2>/dev/null && \
	     ls /usr/lib/*/girepository-1.0/Aravis-0.8.typelib >/dev/null 2>&1; then \
	  echo "GenICam: building PyGObject for Aravis (the [genicam] extra)"; \
	  $(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[genicam]'; \
	else echo "GenICam: no Aravis here (apt-get install gir1.2-aravis-0.8 libgirepository1.0-dev libcairo2-dev pkg-config): its tests skip"; fi

install: $(STAMP) genicam

test: $(STAMP) genicam
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m streamer.harness.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
