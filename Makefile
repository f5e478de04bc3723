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
	      -ffp-contract=off -Iinclude -Isrc $(WARN) $(PKG_CFLAGS) \
	      $(LAPACK_CFLAGS) $(SANITIZE) $(CFLAGS) $(if $(WERROR),-Werror)
ALL_LDFLAGS := -pthread $(SANITIZE) $(LDFLAGS)
LIBS    := $(PKG_LIBS) -lm

ifeq ($(V),1)
Q :=
else
Q := @
endif

# The core library: everything but the program mains and the FUSE glue.
MAINS     := src/udfs_main.c src/compress_main.c
FUSE_SRC  := $(wildcard src/fuse_*.c)
LIB_SRC   := $(filter-out $(MAINS) $(FUSE_SRC),$(wildcard src/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
FUSE_OBJ  := $(FUSE_SRC:%.c=$(BUILD)/%.o)
LIBUDFS   := $(BUILD)/libudfs.a

UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRC  := $(wildcard tests/gen/*.c)
TOOL_BIN  := $(TOOL_SRC:tests/gen/%.c=$(BUILD)/tests/%)

PROGS := $(BUILD)/udfs $(BUILD)/udfs-compress

.PHONY: all check bench install uninstall clean asan ubsan tsan format-check \
	fuzz deps tests demo
all: $(PROGS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(LIBUDFS): $(LIB_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(BUILD)/udfs: $(BUILD)/src/udfs_main.o $(FUSE_OBJ) $(LIBUDFS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/udfs-compress: $(BUILD)/src/compress_main.o $(LIBUDFS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) $(LAPACK_LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIBUDFS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(LIBUDFS) $(LIBS) $(LAPACK_LIBS)

$(BUILD)/tests/%: tests/gen/%.c $(LIBUDFS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TOOL    $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(LIBUDFS) $(LIBS)

tests: $(PROGS) $(UNIT_BIN) $(TOOL_BIN)

# The full suite: unit, CLI and real-mount tests; last line "N passed, N failed".
check: tests
	$(Q)BUILD=$(abspath $(BUILD)) sh tests/run.sh

asan:
	$(MAKE) --no-print-directory BUILD=build-asan SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" OPT="-O1 -g" check

ubsan:
	$(MAKE) --no-print-directory BUILD=build-ubsan SANITIZE="-fsanitize=undefined -fno-sanitize-recover=undefined" OPT="-O1 -g" check

# The mount stress test against a ThreadSanitizer build (build-tsan/).
tsan:
	$(Q)sh tests/stress_tsan.sh

bench: $(PROGS) $(TOOL_BIN)
	$(Q)BUILD=$(abspath $(BUILD)) sh bench/run.sh

FUZZ_SECONDS ?= 30
fuzz:
	$(Q)sh tests/fuzz/run.sh $(FUZZ_SECONDS)

demo: $(PROGS) $(TOOL_BIN)
	$(Q)BUILD=$(abspath $(BUILD)) sh tests/demo.sh

deps:
	sh .ci/deps.sh

format-check:
	$(Q)clang-format --dry-run --Werror src/*.c src/*.h include/udfs/*.h \
		tests/unit/*.c tests/unit/*.h

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

-include $(LIB_OBJ:.o=.d) $(FUSE_OBJ:.o=.d) $(BUILD)/src/udfs_main.d \
	$(BUILD)/src/compress_main.d
