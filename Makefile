# The README's commands. Each installs what is missing first (scripts/bootstrap).
BUILD ?= build

.PHONY: all build run check bench fuzz bootstrap clean

all: build

bootstrap:
	@scripts/bootstrap

build: bootstrap
	@if [ ! -f $(BUILD)/build.ninja ]; then meson setup $(BUILD) >/dev/null; fi
	@ninja -C $(BUILD) >/dev/null || ninja -C $(BUILD)

run: build
	@scripts/demo

check: build
	@TERN_BUILD=$(BUILD) tests/run-all

bench: build
	@TERN_BUILD=$(BUILD) bench/run

fuzz:
	@scripts/bootstrap --fuzz
	@fuzz/run-smoke

clean:
	rm -rf $(BUILD) build-fuzz
