# SPDX-License-Identifier: MIT
# udfs: one GNU Makefile. Objects go under $(BUILD) so that several builds
# (release, asan, ubsan, a helper's scratch build) can live side by side.

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
# mount(8) looks for helpers in /sbin only, so that is the default here.
SBINDIR ?= /sbin
MANDIR  ?= $(PREFIX)/share/man
BUILD   ?= build

CC      ?= cc
PKG_CONFIG ?= pkg-config

PKGS      := fuse3 sqlite3 libzstd jansson libcrypto libxxhash
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
# LAPACKE through OpenBLAS: only udfs-compress links it (the daemon must not
# start OpenBLAS threads).
LAPACK_CFLAGS := $(shell $(PKG_CONFIG) --cflags lapacke openblas 2>/dev/null)
LAPACK_LIBS   := $(shell $(PKG_CONFIG) --libs lapacke openblas 2>/dev/null)

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	   -Wwrite-strings -Wformat=2 -Wvla
OPT     ?= -O2 -g
# -ffp-contract=off: reconstruction must give the same bits everywhere.
CFLAGS  ?= $(OPT)
ALL_CFLAGS := -std=gnu11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -pthread \
	      -ffp-contract=off -Isrc $(WARN) $(PKG_CFLAGS) \
	      $(LAPACK_CFLAGS) $(SANITIZE) $(CFLAGS) $(if $(WERROR),-Werror)
ALL_LDFLAGS := -pthread $(SANITIZE) $(LDFLAGS)
LIBS    := $(PKG_LIBS) -lm

ifeq ($(V),1)
Q :=
else
Q := @
endif

# The source tree follows the data path (see ARCHITECTURE.md). Two
# libraries: the read library (common, codec, format, store, read) that
# the daemon and every program link, and the write library (the add
# pipeline, its planner and linear algebra) that only udfs-compress links,
# with OpenBLAS: the daemon must not start OpenBLAS threads.
READ_DIRS  := src/common src/codec src/format src/store src/read
READ_SRC   := $(wildcard $(READ_DIRS:%=%/*.c))
WRITE_SRC  := $(wildcard src/write/*.c)
FUSE_SRC   := $(wildcard src/fuse/*.c)
UDFS_SRC   := $(filter-out src/programs/udfs_compress.c,$(wildcard src/programs/*.c))
COMP_SRC   := src/programs/udfs_compress.c
READ_OBJ   := $(READ_SRC:%.c=$(BUILD)/%.o)
WRITE_OBJ  := $(WRITE_SRC:%.c=$(BUILD)/%.o)
UDFS_OBJ   := $(UDFS_SRC:%.c=$(BUILD)/%.o) $(FUSE_SRC:%.c=$(BUILD)/%.o)
COMP_OBJ   := $(COMP_SRC:%.c=$(BUILD)/%.o)
LIBREAD    := $(BUILD)/libudfs-read.a
LIBWRITE   := $(BUILD)/libudfs-write.a
ALL_OBJ    := $(READ_OBJ) $(WRITE_OBJ) $(UDFS_OBJ) $(COMP_OBJ)

UNIT_SRC  := $(wildcard tests/unit/test_*.c tests/unit/*/test_*.c)
UNIT_BIN  := $(patsubst %.c,$(BUILD)/tests/%,$(notdir $(UNIT_SRC)))
TOOL_SRC  := $(wildcard tests/gen/*.c)
TOOL_BIN  := $(TOOL_SRC:tests/gen/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard bench/tools/*.c)
BENCH_BIN := $(BENCH_SRC:bench/tools/%.c=$(BUILD)/bench/%)
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)

PROGS := $(BUILD)/udfs $(BUILD)/udfs-compress

.PHONY: all check bench install uninstall clean asan ubsan tsan format-check \
	fuzz fuzz-build deps tests demo deps-check
all: $(PROGS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(LIBREAD): $(READ_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(LIBWRITE): $(WRITE_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^

# The daemon: never the write library, never OpenBLAS.
$(BUILD)/udfs: $(UDFS_OBJ) $(LIBREAD)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/udfs-compress: $(COMP_OBJ) $(LIBWRITE) $(LIBREAD)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) $(LAPACK_LIBS)

# Unit tests may test either library; -MMD so that touching check.h or
# a fixture header rebuilds them.
define unit_rule
$(BUILD)/tests/$(basename $(notdir $(1))): $(1) $(LIBWRITE) $(LIBREAD)
	@mkdir -p $$(dir $$@)
	@$$(if $$(Q),echo "  TEST    $$@")
	$$(Q)$$(CC) $$(ALL_CFLAGS) -Itests/unit -MMD -MP -MF $$@.d $$(ALL_LDFLAGS) -o $$@ $$< $(LIBWRITE) $(LIBREAD) $$(LIBS) $$(LAPACK_LIBS)
endef
$(foreach t,$(UNIT_SRC),$(eval $(call unit_rule,$(t))))
# The *_nomem tests and test_bufpool fail chosen allocations of the code
# they test: its calls to the allocator go through their wrappers
# (tests/unit/failalloc.h).
FAILALLOC_LDFLAGS := -Wl,--wrap=malloc -Wl,--wrap=calloc \
	-Wl,--wrap=realloc -Wl,--wrap=strdup
$(BUILD)/tests/test_st_nomem $(BUILD)/tests/test_load_nomem \
	$(BUILD)/tests/test_bufpool: \
	ALL_LDFLAGS += $(FAILALLOC_LDFLAGS)

$(BUILD)/tests/%: tests/gen/%.c $(LIBREAD)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TOOL    $@")
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -MF $@.d $(ALL_LDFLAGS) -o $@ $< $(LIBREAD) $(LIBS)

$(BUILD)/bench/%: bench/tools/%.c $(LIBREAD)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TOOL    $@")
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -MF $@.d $(ALL_LDFLAGS) -o $@ $< $(LIBREAD) $(LIBS)

tests: $(PROGS) $(UNIT_BIN) $(TOOL_BIN) $(BENCH_BIN)

# The full suite: unit, CLI and real-mount tests; last line "N passed, N failed".
check: tests deps-check
	$(Q)BUILD=$(abspath $(BUILD)) sh tests/run.sh

# No include of a folder below, no include or call circle (ARCHITECTURE.md).
deps-check: $(PROGS)
	$(Q)sh tools/deps.sh $(BUILD)

asan:
	$(MAKE) --no-print-directory BUILD=build-asan SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" OPT="-O1 -g" check

ubsan:
	$(MAKE) --no-print-directory BUILD=build-ubsan SANITIZE="-fsanitize=undefined -fno-sanitize-recover=undefined" OPT="-O1 -g" check

# The mount stress test against a ThreadSanitizer build (build-tsan/).
tsan:
	$(Q)sh tests/stress_tsan.sh

bench: $(PROGS) $(TOOL_BIN) $(BENCH_BIN)
	$(Q)BUILD=$(abspath $(BUILD)) sh bench/run.sh

# libFuzzer targets: the read library built again with clang, the same
# flags (-ffp-contract=off included) plus the fuzzer's instrumentation, in
# build-fuzz/. `make fuzz FUZZ_SECONDS=N` builds and runs each for N s.
FUZZ_SECONDS ?= 30
FUZZ_CC      ?= clang
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
		-fno-omit-frame-pointer
FUZZ_BUILD   := build-fuzz
FUZZ_BIN     := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_BUILD)/%)
fuzz: fuzz-build
	$(Q)sh tests/fuzz/run.sh $(FUZZ_SECONDS)

fuzz-build:
	$(Q)$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) \
		OPT="-O1 -g" SANITIZE="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" \
		FUZZ_LINK="$(FUZZ_SAN) -fsanitize=fuzzer" fuzz-bins

fuzz-bins: $(FUZZ_BIN)

$(FUZZ_BUILD)/%: tests/fuzz/%.c $(LIBREAD)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -MF $@.d $(FUZZ_LINK) -pthread -o $@ $< $(LIBREAD) $(LIBS)

demo: $(PROGS) $(TOOL_BIN)
	$(Q)BUILD=$(abspath $(BUILD)) sh tests/demo.sh

deps:
	sh .ci/deps.sh

format-check:
	$(Q)clang-format --dry-run --Werror $(wildcard src/*/*.[ch] \
		tests/unit/*.[ch] tests/unit/*/*.[ch] \
		tests/fuzz/*.c tests/gen/*.c bench/tools/*.c)

install: $(PROGS)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(MANDIR)/man8
	install -m 755 $(PROGS) $(DESTDIR)$(BINDIR)/
	install -m 755 mount-helpers/mount.udfs $(DESTDIR)$(SBINDIR)/mount.udfs
	install -m 644 man/udfs.1 man/udfs-compress.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 man/udfs.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 644 man/mount.udfs.8 $(DESTDIR)$(MANDIR)/man8/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/udfs $(DESTDIR)$(BINDIR)/udfs-compress \
		$(DESTDIR)$(SBINDIR)/mount.udfs \
		$(DESTDIR)$(MANDIR)/man1/udfs.1 \
		$(DESTDIR)$(MANDIR)/man1/udfs-compress.1 \
		$(DESTDIR)$(MANDIR)/man5/udfs.5 \
		$(DESTDIR)$(MANDIR)/man8/mount.udfs.8

clean:
	rm -rf $(BUILD) build-asan build-ubsan build-tsan build-fuzz

-include $(ALL_OBJ:.o=.d) $(UNIT_BIN:=.d) $(TOOL_BIN:=.d) $(BENCH_BIN:=.d)
