# The README's commands. Each installs what is missing first (scripts/bootstrap).
BUILD ?= build

.PHONY: all build run check check-asan bench fuzz bootstrap clean

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

# The whole suite against AddressSanitizer + UBSan builds of ternd and tern; any report stops the
# process, so it shows up as failed checks. A small quarantine keeps the RSS checks meaningful.
check-asan: bootstrap
	@if [ ! -f build-asan/build.ninja ]; then meson setup build-asan -Db_sanitize=address,undefined \
		-Dbuildtype=debug -Dwerror=false >/dev/null; fi
	@ninja -C build-asan >/dev/null || ninja -C build-asan
	@ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:quarantine_size_mb=4 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 TERN_BUILD=build-asan tests/run-all

bench: build
	@TERN_BUILD=$(BUILD) bench/run

fuzz:
	@scripts/bootstrap --fuzz
	@fuzz/run-smoke

clean:
	rm -rf $(BUILD) build-fuzz build-asan
