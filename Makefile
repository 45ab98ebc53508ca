# mqpool: `make demo` and `make test` on a fresh Debian 12 machine (as root).
BUILD      ?= build
BUILD_TYPE ?= RelWithDebInfo
PREFIX     ?= /usr/local
JOBS       ?= 2

.PHONY: all deps configure build demo test soak install clean

all: build

deps:
	bash scripts/install-deps

# ccache (installed by install-deps) keeps CI's rebuilds short; the build works without it.
CCACHE := $(shell command -v ccache 2>/dev/null)
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := 1

# Warnings are errors here, for developers and CI; `make WERROR=OFF` when a newer
# compiler than Debian 12's warns of something new (a plain cmake build never has -Werror).
WERROR ?= ON

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DMQPOOL_WERROR=$(WERROR) \
	  $(if $(CCACHE),-DCMAKE_CXX_COMPILER_LAUNCHER=$(CCACHE))

build: configure
	cmake --build $(BUILD) -j$(JOBS)

# Only the library and the example it runs, not the tests.
demo: configure
	cmake --build $(BUILD) -j$(JOBS) --target quickstart
	$(BUILD)/examples/quickstart

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS) --timeout 300

# Not part of `test`: a local and a cluster pool, concurrently (two processes), under a
# mix of work, errors, timeouts and killed executors for SOAK_SECONDS (default 600),
# checking every answer and the RSS of every process (tests/soak/, README "Soak test").
soak: build
	$(BUILD)/tests/soak/mqpool_soak

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD)
