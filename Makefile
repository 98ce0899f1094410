# bulwark build. `make` builds build/release/bulwark; `make check` installs
# what the tests need, builds the normal and the sanitizer variants and runs
# every suite; `make run` starts the demo in examples/.
#
# Variants live side by side under build/<variant>/ and share nothing.

CC ?= gcc
CLANG ?= clang
PYTHON ?= /usr/bin/python3

WARN := -std=c17 -Wall -Wextra -Werror -Wswitch-enum -Wimplicit-fallthrough \
        -Wshadow -Wpointer-arith -Wvla -Wformat=2 -Wno-format-nonliteral
BASE_CFLAGS := $(WARN) -D_GNU_SOURCE -Isrc -g -pthread -MMD -MP
LIBS := -luring -lyaml -lhs -ljansson -lssl -lcrypto -lm -pthread

VARIANT ?= release
ifeq ($(VARIANT),release)
  VCFLAGS := -O2
  VLDFLAGS :=
else ifeq ($(VARIANT),asan)
  VCFLAGS := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
  VLDFLAGS := -fsanitize=address,undefined
else
  $(error unknown VARIANT $(VARIANT): release or asan)
endif

B := build/$(VARIANT)
LIB_SRCS := $(shell find src -name '*.c' ! -path src/main.c | sort)
LIB_OBJS := $(LIB_SRCS:%.c=$(B)/obj/%.o)
UNIT_SRCS := $(shell find tests/unit -name 'test_*.c' 2>/dev/null | sort)
UNIT_BINS := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRCS))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_REPLAY_BINS := $(patsubst tests/fuzz/%.c,$(B)/replay/%,$(FUZZ_SRCS))

.PHONY: all build deps run check test unit integration fuzz-smoke fuzz bench soak clean format

all: build

build: $(B)/bulwark $(UNIT_BINS) $(FUZZ_REPLAY_BINS) $(B)/tools/loadgen $(B)/bench/relay

# Quiet by default (V=1 shows the commands), so warnings stand out.
Q := $(if $(V),,@)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC    $(VARIANT) $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(VCFLAGS) -c $< -o $@

$(B)/libbulwark.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(B)/bulwark: $(B)/obj/src/main.o $(B)/libbulwark.a
	@$(if $(V),,echo "  LD    $(VARIANT) $@")
	$(Q)$(CC) $(VLDFLAGS) -o $@ $^ $(LIBS)

$(B)/tests/%: tests/unit/%.c $(B)/libbulwark.a tests/unit/test.h
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  TEST  $(VARIANT) $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(VCFLAGS) -Itests/unit $(VLDFLAGS) -o $@ $< $(B)/libbulwark.a $(LIBS)

# Each fuzz target also builds with a replay main() so its corpus runs as an
# ordinary regression test under gcc and the sanitizers.
$(B)/replay/%: tests/fuzz/%.c tests/fuzz/replay_main.c $(B)/libbulwark.a
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  FUZZ  $(VARIANT) $< (replay)")
	$(Q)$(CC) $(BASE_CFLAGS) $(VCFLAGS) $(VLDFLAGS) -o $@ $< tests/fuzz/replay_main.c $(B)/libbulwark.a $(LIBS)

# The integration tests' load client (tests/tools/): built without
# sanitizers in every variant, so that it loads the proxy, not itself.
$(B)/tools/%: tests/tools/%.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  TOOL  $(VARIANT) $<")
	$(Q)$(CC) $(WARN) -D_GNU_SOURCE -O2 -g -o $@ $<

# make bench's "relay" target (bench/relay.c): the floor of a proxy's CPU per
# request on this host, built like the load client, without sanitizers.
$(B)/bench/relay: bench/relay.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  BENCH $(VARIANT) $<")
	$(Q)$(CC) $(WARN) -D_GNU_SOURCE -O2 -g -o $@ $<

# libFuzzer builds (clang): the library is compiled again with coverage.
FB := build/fuzz
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(FB)/obj/%.o)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(FB)/%,$(FUZZ_SRCS))
FUZZ_CFLAGS := $(BASE_CFLAGS) -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all

$(FB)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC    fuzz $<")
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -c $< -o $@

$(FB)/libbulwark.a: $(FUZZ_LIB_OBJS)
	$(Q)rm -f $@ && ar rcs $@ $^

$(FB)/fuzz_%: tests/fuzz/fuzz_%.c $(FB)/libbulwark.a
	@$(if $(V),,echo "  FUZZ  $<")
	$(Q)$(CLANG) $(BASE_CFLAGS) -O1 -fsanitize=fuzzer,address,undefined -o $@ $< $(FB)/libbulwark.a $(LIBS)

fuzz-build: $(FUZZ_BINS)

deps:
	@scripts/install-deps.sh

run: deps
	@$(MAKE) --no-print-directory VARIANT=release build
	@scripts/run-demo.sh

check: deps
	@$(MAKE) --no-print-directory VARIANT=release build
	@$(MAKE) --no-print-directory VARIANT=asan build
	@$(MAKE) --no-print-directory fuzz-build
	@scripts/check.sh

# Longer fuzzing: FUZZ_SECONDS per target (default 60).
fuzz: deps fuzz-build
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-60} scripts/fuzz.sh

bench: deps
	@$(MAKE) --no-print-directory VARIANT=release build
	@bench/run.sh

# TLS: handshakes/s and kept-alive https requests/s, bulwark vs nginx, one
# worker each (bench/tls_bench.py; docs/performance.md, "TLS").
.PHONY: bench-tls
bench-tls: deps
	@$(MAKE) --no-print-directory VARIANT=release build
	@BULWARK_BENCH=1 scripts/install-deps.sh
	@/usr/bin/python3 bench/tls_bench.py

# The soak (not in CI): SOAK_SECONDS (600) of mixed traffic and a reload every
# 10 s against the ASan build; writes build/soak/report.md (docs/operations.md).
# SOAK_QUICK=1 is a 60 s smoke run; SOAK_RATE sets the load clients' rate.
soak: deps
	@$(MAKE) --no-print-directory VARIANT=asan build
	@$(PYTHON) scripts/soak.py

# The rules evaluator microbenchmark (bench/eval_bench.c): ns per request for
# bench/rules/bench100.yaml over bench/rules/corpus.txt, and the 2019 WAF
# regex's scan time at 10/100/1,000 KiB. Release build only.
.PHONY: bench-eval
$(B)/bench/eval_bench: bench/eval_bench.c $(B)/libbulwark.a
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  BENCH $(VARIANT) $<")
	$(Q)$(CC) $(BASE_CFLAGS) $(VCFLAGS) $(VLDFLAGS) -o $@ $< $(B)/libbulwark.a $(LIBS)

bench-eval:
	@$(MAKE) --no-print-directory VARIANT=release build/release/bench/eval_bench
	@build/release/bench/eval_bench $(EVAL_BENCH_ARGS)

# Deterministic companion to bench-eval and bench: callgrind's user-space
# instructions per request of the evaluator, and of the proxy without and
# with the 100 rules (bench/instr.sh; docs/performance.md). Needs valgrind
# and nginx; BENCH_INSTR_BIN / BENCH_INSTR_EVAL_BIN compare other binaries.
.PHONY: bench-instr
bench-instr:
	@$(MAKE) --no-print-directory VARIANT=release build/release/bulwark build/release/bench/eval_bench
	@bench/instr.sh

format:
	clang-format -i $$(find src tests bench -name '*.[ch]')

clean:
	rm -rf build

-include $(LIB_OBJS:.o=.d) $(B)/obj/src/main.d $(FUZZ_LIB_OBJS:.o=.d)
