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
# The sanitized clang builds of make sanitize: AddressSanitizer with UndefinedBehavior-
# Sanitizer, and ThreadSanitizer (the two cannot share a build).
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan

.PHONY: all deps configure build demo test soak install clean \
        format format-check tidy check test-clang fuzz \
        sanitize sanitize-address sanitize-thread

all: build

# What each target needs from apt (scripts/install-deps: build, test or dev).
DEPS ?= test
demo: DEPS = build
check format format-check tidy test-clang fuzz sanitize-address sanitize-thread: DEPS = dev
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
	rm -rf $(BUILD) $(CLANG_BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)

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

# ---- Sanitizers (CI runs make sanitize) ---------------------------------------------
# clang in Debug mode (assertions on) at -O1, as the sanitizers' manuals advise: fast
# enough for the tests' deadlines, and the stacks of reports still readable.
SAN_CMAKE = CC=clang-$(LLVM) CXX=clang++-$(LLVM) cmake -S . -DCMAKE_BUILD_TYPE=Debug \
  '-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g' $(CMAKE_FLAGS)
# A test (or a check) that a sanitizer cannot run is skipped in that build only, its own
# comment saying why (tests/sanitizers.hpp, which says how to list them).
SAN_CTEST = ctest --output-on-failure -j$(JOBS) --timeout 300
# Reports name functions and lines (llvm-16, from install-deps dev).
SYMBOLIZER = $(shell command -v llvm-symbolizer-$(LLVM) llvm-symbolizer | head -1)

# Both sanitized builds, one after the other: what CI runs.
sanitize: sanitize-address sanitize-thread

# ASan + UBSan: the tests of test-clang (all but those needing root services), so that
# this build can stand in for it in CI. A finding fails its test: UBSan does not
# recover (CMakeLists.txt), ASan stops at its first error, and LSan checks each test
# process at exit. Executors and agents leave by _exit(), or are SIGKILLed, so LSan
# never runs in them: it is the test's (client's) process it checks.
# Without use-after-return checks (clang 16 has them on): their fake frames made the
# codec's hostile-input test, 20,000 buffers of exceptions, 6 times slower (48 s for 8),
# past its 60 s limit on a busy 2-core machine. `make sanitize-address ASAN_UAR=1`.
ASAN_UAR ?= 0
sanitize-address: export ASAN_OPTIONS = detect_leaks=1:detect_stack_use_after_return=$(ASAN_UAR):external_symbolizer_path=$(SYMBOLIZER)
sanitize-address: export UBSAN_OPTIONS = print_stacktrace=1:halt_on_error=1:external_symbolizer_path=$(SYMBOLIZER)
sanitize-address: deps
	$(SAN_CMAKE) -B $(ASAN_BUILD) -DMQPOOL_SANITIZE=address,undefined
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	$(SAN_CTEST) --test-dir $(ASAN_BUILD) -LE 'docker|netns|cluster'

# TSan where threads of ours share memory in one process, which is the client's: your
# threads submitting while the local broker thread drives the session (and lends a
# submitter its lock, Loop::dispatch_on_submitter), callbacks on that thread, close(),
# terminate() and join() from others, a cluster pool's RemoteLink thread, the executor's
# heartbeat thread. So: the unit tests of the session, the jobs, the broker and the
# protocol over real sockets; the integration tests of submitting, streaming and the
# pool's lifecycle; the failure tests of the cluster link, broker restarts, heartbeats
# and failing threads. Not the codec, registry or exec tests: one thread each, which
# the ASan build covers. Only their three binaries are built.
TSAN_TARGETS = mqpool_unit_tests mqpool_integration_tests mqpool_failure_tests
TSAN_TESTS = ^(unit\.(Session|MapJob|Broker|RouterDealer|ReceiverTest)|integration\.(Apply|ApplyAsync|AsyncResult|Map|MapAsync|Starmap|Imap|ImapUnordered|Pool)\.|failure\.(Cluster|BrokerRestart|Heartbeat|HeartbeatFault|ThreadFaults)\.)
# die_after_fork=0: the pool forks its agent, and the agent its executors, while ZeroMQ's
# threads (another pool's, or the agent's own) run; by default TSan then kills a child
# as soon as it starts a thread ("starting new threads after multi-threaded fork is not
# supported"), and every executor starts two. With it the children run, and TSan checks
# them too; fork_clean() keeps our own locks safe across such a fork, but TSan's state in
# the child is its own business (one test hangs there, and says so).
# ignore_noninstrumented_modules=1: libzmq and libstdc++ are not built with TSan, so the
# atomics by which they hand over a message, or count an exception_ptr's references,
# are invisible to it, and their frees and copies looked like races (a DEALER's routing
# id inside libzmq; a TaskError freed on the thread that dropped the last reference).
# Calls from those libraries are not checked; our code still is, everywhere.
sanitize-thread: export TSAN_OPTIONS = die_after_fork=0:ignore_noninstrumented_modules=1:halt_on_error=1:second_deadlock_stack=1:external_symbolizer_path=$(SYMBOLIZER)
sanitize-thread: deps
	$(SAN_CMAKE) -B $(TSAN_BUILD) -DMQPOOL_SANITIZE=thread
	cmake --build $(TSAN_BUILD) -j$(JOBS) --target $(TSAN_TARGETS)
	$(SAN_CTEST) --test-dir $(TSAN_BUILD) -R '$(TSAN_TESTS)'
