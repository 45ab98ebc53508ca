# mqpool: `make demo` and `make test` on a fresh Debian 12 machine (as root).
BUILD      ?= build
BUILD_TYPE ?= RelWithDebInfo
PREFIX     ?= /usr/local
JOBS       ?= 2
# The second toolchain CI builds with (make test-clang), and the tools of make check.
CLANG_BUILD ?= build-clang
CLANG_TYPE  ?= Debug
LLVM        ?= 16

.PHONY: all deps configure build demo test soak install clean \
        format format-check tidy check test-clang

all: build

# What each target needs from apt (scripts/install-deps: build, test or dev).
DEPS ?= test
demo: DEPS = build
check format format-check tidy test-clang: DEPS = dev
deps:
	bash scripts/install-deps $(DEPS)

# ccache (installed by install-deps) keeps CI's rebuilds short; the build works without it.
CCACHE = $(shell command -v ccache 2>/dev/null)
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := 1

# Warnings are errors here, for developers and CI; `make WERROR=OFF` when a newer
# compiler than Debian 12's warns of something new (a plain cmake build never has -Werror).
WERROR ?= ON
CMAKE_FLAGS = -DMQPOOL_WERROR=$(WERROR) -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
  $(if $(CCACHE),-DCMAKE_CXX_COMPILER_LAUNCHER=$(CCACHE))

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

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
	rm -rf $(BUILD) $(CLANG_BUILD)

# ---- Developer checks (CI runs them) ------------------------------------------------
SOURCES = $(shell git ls-files '*.cpp' '*.hpp')

# Rewrites every C++ file in the style of .clang-format.
format: deps
	clang-format-$(LLVM) -i $(SOURCES)

# Fails, naming the files, when a file differs from `make format`'s output.
format-check: deps
	clang-format-$(LLVM) --dry-run -Werror $(SOURCES)

# clang-tidy with the checks of .clang-tidy over the library and the CLI (not the
# tests), from the compile commands of $(BUILD).
tidy: configure
	run-clang-tidy-$(LLVM) -quiet -p $(BUILD) -j$(JOBS) \
	  -clang-tidy-binary clang-tidy-$(LLVM) '^(?!.*/tests/).*/((common|broker|worker|client)/src|cli)/'

# The layer rules (scripts/check-layers), the format and clang-tidy.
check: format-check tidy
	python3 scripts/check-layers

# The same tests built by clang in $(CLANG_TYPE) mode, but for those that need root
# services (docker, network namespaces), which the main build runs.
test-clang: deps
	CC=clang-$(LLVM) CXX=clang++-$(LLVM) cmake -S . -B $(CLANG_BUILD) \
	  -DCMAKE_BUILD_TYPE=$(CLANG_TYPE) $(CMAKE_FLAGS)
	cmake --build $(CLANG_BUILD) -j$(JOBS)
	ctest --test-dir $(CLANG_BUILD) --output-on-failure -j$(JOBS) --timeout 300 \
	  -LE 'docker|netns|cluster'
