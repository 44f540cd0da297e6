# make run   - install what is missing, start the embedded MongoDB when MONGODB_URI is not configured,
#              build chat-server and chat-client in release mode and start chat-server.
# make test  - the same set-up, a throwaway database on a free port, the whole test suite.
# make fuzz  - libFuzzer targets of fuzz/ (parsers of untrusted bytes), FUZZ_SECONDS (60) each.
SHELL := /bin/bash
VENV := .venv
SYSTEM_PACKAGES := libssl-dev libmongoc-dev libwebsockets-dev pkg-config python3-venv nodejs node-typescript chromium

.PHONY: run test bench fuzz build deps system-deps venv clean

run: deps
	swift build -c release --product chat-server
	swift build -c release --product chat-client
	scripts/run.sh

test: deps
	scripts/test.sh

bench: deps
	scripts/bench.sh

fuzz: system-deps
	scripts/fuzz.sh

build: deps
	swift build

deps: system-deps venv

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

clean:
	rm -rf .build
