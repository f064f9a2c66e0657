# The two commands of README.md:
#   make book   set up .venv, run every notebook with papermill on the embedded default,
#               build the HTML book into _build/html
#   make test   set up .venv (with chromium), run the whole test suite, book build included
PY := .venv/bin/python

.PHONY: setup book test bench clean

setup:
	scripts/setup

book: setup
	$(PY) scripts/build_book.py --params params/smoke.yaml

test:
	scripts/setup --browser
	$(PY) -m pytest

bench: setup
	$(PY) -m tomato bench

clean:
	rm -rf _build book/notebooks
