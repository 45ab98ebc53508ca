# mqpool: `make demo` and `make test` on a fresh Debian 12 machine (as root).
BUILD      ?= build
BUILD_TYPE ?= RelWithDebInfo
PREFIX     ?= /usr/local
JOBS       ?= 2
# The second toolchain CI builds with (make test-clang), and the tools of make check.
CLANG_BUILD ?= build-clang
CLANG_TYPE  ?= Debug
LLVM        ?= 16
# make fuzz: where it builds, and how long each target runs.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60

.PHONY: all deps configure build demo test soak install clean \
        format format-check tidy check test-clang fuzz

all: build

# What each target needs from apt (scripts/install-deps: build, test or dev).
DEPS ?= test
demo: DEPS = build
check format format-check tidy test-clang fuzz: DEPS = dev
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
	rm -rf $(BUILD) $(CLANG_BUILD) $(FUZZ_BUILD)

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

# libFuzzer over the decoders of what peers send (tests/fuzz/): the targets built by clang
# with ASan and UBSan in $(FUZZ_BUILD), each run for FUZZ_SECONDS on a corpus of its own
# ($(FUZZ_BUILD)/corpus/TARGET, seeded from tests/fuzz/seeds/TARGET and regressions/TARGET),
# printing its executions. Fails if any target crashes, leaks or hits UB; the input that
# did it is in $(FUZZ_BUILD)/artifacts/TARGET/: once fixed, keep it in
# tests/fuzz/regressions/TARGET/, which every ctest run replays.
FUZZ_TARGETS = fuzz_headers fuzz_fastpath fuzz_args fuzz_values
fuzz: deps
	CC=clang-$(LLVM) CXX=clang++-$(LLVM) cmake -S . -B $(FUZZ_BUILD) \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMQPOOL_FUZZ=ON -DMQPOOL_BUILD_EXAMPLES=OFF $(CMAKE_FLAGS)
	cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzz_targets
	@failed=; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/artifacts/$$t; \
	  if $(FUZZ_BUILD)/tests/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	      -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t/ $(FUZZ_BUILD)/corpus/$$t \
	      tests/fuzz/seeds/$$t $$(ls -d tests/fuzz/regressions/$$t 2>/dev/null) \
	      >$(FUZZ_BUILD)/$$t.log 2>&1; then \
	    echo "$$t: $$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' $(FUZZ_BUILD)/$$t.log)"; \
	  else \
	    tail -n 40 $(FUZZ_BUILD)/$$t.log; echo "$$t: FAILED (log: $(FUZZ_BUILD)/$$t.log)"; \
	    failed="$$failed $$t"; \
	  fi; \
	done; test -z "$$failed" || { echo "make fuzz: crashed:$$failed"; exit 1; }
