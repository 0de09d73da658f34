# moat - one hand-written GNU Makefile.
#
#   make            build build/moatd and build/moat (release flags, hardened)
#   make test       build and run every test (unit, then integration)
#   make check      the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz       build the libFuzzer targets and run each for FUZZ_SECONDS
#   make run        build and start a broker on 127.0.0.1:1883
#
# Variants build into their own directory through BUILD and SAN, so one set
# of rules serves all of them: `make check` is `make test` with SAN=1 in
# build/asan. Source lists are explicit; a new file is added here by hand.

SHELL := /bin/bash
BUILD ?= build
SAN ?= 0
CC ?= cc
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60

# ---- flags, in one place ----

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wpointer-arith -Wvla -Wformat=2 -Wimplicit-fallthrough -Wundef
HARDEN := -fstack-protector-strong -fstack-clash-protection -fPIE
LDHARDEN := -pie -Wl,-z,relro,-z,now -Wl,-z,noexecstack
BASE_CFLAGS := -std=gnu17 -D_GNU_SOURCE $(WARN) $(HARDEN) -Isrc -g -pthread -MMD -MP

ifeq ($(SAN),1)
OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
SANLD := -fsanitize=address,undefined
else
# _FORTIFY_SOURCE needs optimisation and conflicts with ASan's interceptors.
OPT := -O2 -D_FORTIFY_SOURCE=3
SANLD :=
endif

ALL_CFLAGS := $(BASE_CFLAGS) $(OPT) $(CFLAGS)
ALL_LDFLAGS := $(LDHARDEN) $(SANLD) -pthread $(LDFLAGS)

# ---- sources, by layer ----

CORE_SRC := src/core/error.c src/core/file.c src/core/log.c src/core/map.c src/core/mem.c src/core/utf8.c
MQTT_SRC := src/mqtt/decode.c src/mqtt/encode.c src/mqtt/fault.c src/mqtt/frame.c \
	src/mqtt/props.c src/mqtt/reason.c src/mqtt/topic.c
LIB_SRC := $(CORE_SRC) $(MQTT_SRC)

EVENT_SRC := src/event/loop.c
NET_SRC := src/net/http.c src/net/listen.c src/net/ocsp.c src/net/tcp.c src/net/tls.c src/net/ws.c
CONFIG_SRC := src/config/config.c src/config/directives.c src/config/lexer.c src/config/refused.c
BROKER_SRC := src/broker/admin.c src/broker/admin_clients.c src/broker/admin_events.c \
	src/broker/admin_flows.c src/broker/admin_metrics.c src/broker/admin_software.c \
	src/broker/auth.c src/broker/block.c src/broker/broker.c src/broker/conn.c src/broker/connect.c \
	src/broker/gate.c src/broker/guard.c src/broker/handlers.c src/broker/inventory.c \
	src/broker/mount.c src/broker/persist.c src/broker/msg.c src/broker/publish.c \
	src/broker/retain.c src/broker/session.c src/broker/subs.c src/broker/sys.c src/broker/worker.c
CLI_SRC := src/cli/moat.c src/cli/args.c src/cli/audit.c src/cli/client.c src/cli/client_in.c src/cli/netargs.c src/cli/passwd.c src/cli/propargs.c src/cli/pub.c \
	src/cli/store.c src/cli/sub.c src/cli/subfmt.c src/cli/bench.c src/cli/bench_conn.c src/cli/bench_stats.c src/cli/ctl.c

SECURITY_SRC := src/security/acl.c src/security/audit.c src/security/ban.c src/security/event.c \
	src/security/passwd.c src/security/pool.c src/security/scram.c src/security/sentinel.c
STORE_SRC := src/store/record.c src/store/seal.c src/store/store.c
ADMIN_SRC := src/admin/server.c src/admin/json.c
DAEMON_SRC := $(EVENT_SRC) $(NET_SRC) $(CONFIG_SRC) $(SECURITY_SRC) $(STORE_SRC) $(ADMIN_SRC) $(BROKER_SRC)
MOATD_SRC := src/moatd.c
MOAT_SRC := $(CLI_SRC)

UNIT_TESTS := test_utf8 test_mem test_topic test_props test_frame test_codec test_malformed \
	test_subs test_config test_ws test_scram test_acl test_passwd test_ban test_audit test_sentinel test_seal test_store test_record test_admin
FUZZ_TARGETS := fuzz_decode_v31 fuzz_decode_v311 fuzz_decode_v5 fuzz_decode_client \
	fuzz_props fuzz_topic fuzz_frame fuzz_config fuzz_ws_frames fuzz_http_upgrade fuzz_scram \
	fuzz_acl fuzz_passwd fuzz_bans fuzz_unseal fuzz_record fuzz_admin_http

obj = $(patsubst src/%.c,$(BUILD)/obj/%.o,$(1))
LIB_OBJ := $(call obj,$(LIB_SRC))
LIB := $(BUILD)/libmoat.a
DAEMON_LIB := $(BUILD)/libmoatd.a
# Debian packages: OpenSSL 3 (TLS, in src/net/tls.c only), wslay (WebSocket frames, src/net/ws.c).
# libsodium (Argon2id password hashing, src/security/passwd.c).
DAEMON_LIBS := -lssl -lcrypto -lwslay -lsodium -lsqlite3 -lm

.PHONY: all test check unit integration fuzz fuzz-build run deps clean
all: $(BUILD)/moatd $(BUILD)/moat

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(DAEMON_LIB): $(call obj,$(DAEMON_SRC))
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/moatd: $(call obj,$(MOATD_SRC)) $(DAEMON_LIB) $(LIB)
	$(CC) $^ -o $@ $(ALL_LDFLAGS) $(DAEMON_LIBS)

$(BUILD)/moat: $(call obj,$(MOAT_SRC)) $(DAEMON_LIB) $(LIB)
	$(CC) $^ -o $@ $(ALL_LDFLAGS) $(DAEMON_LIBS)

# ---- dependencies (Debian packages) ----

deps:
	@scripts/deps.sh

$(BUILD)/.deps-ok: scripts/deps.sh
	@scripts/deps.sh
	@mkdir -p $(BUILD) && touch $@

# ---- unit tests (cmocka) ----

UNIT_BIN := $(addprefix $(BUILD)/tests/,$(UNIT_TESTS))

$(BUILD)/tests/%.o: tests/unit/%.c $(BUILD)/.deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/unit -c $< -o $@

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(DAEMON_LIB) $(LIB)
	$(CC) $^ -o $@ $(ALL_LDFLAGS) -lcmocka $(DAEMON_LIBS)

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

integration: all $(BUILD)/.deps-ok
	@if ls tests/integration/test_*.py >/dev/null 2>&1; then \
		MOAT_BUILD=$(abspath $(BUILD)) /usr/bin/python3 -m pytest -q tests/integration; \
	else echo "no integration tests yet"; fi

# Unit tests first, then integration, in order even under -j.
test: all
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory integration

check:
	$(MAKE) BUILD=build/asan SAN=1 test

# ---- fuzzing (libFuzzer, clang) ----

FUZZ_DIR := build/fuzz
FUZZ_CFLAGS := -std=gnu17 -D_GNU_SOURCE $(WARN) -Isrc -g -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_BIN := $(addprefix $(FUZZ_DIR)/,$(FUZZ_TARGETS))

$(FUZZ_DIR)/%: tests/fuzz/%.c $(LIB_SRC) $(CONFIG_SRC) tests/fuzz/fuzz_common.h $(BUILD)/.deps-ok
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< $(LIB_SRC) $(CONFIG_SRC) $(FUZZ_EXTRA) -o $@

# The WebSocket targets also build the net sources they test, with their libraries.
FUZZ_WS_SRC := src/net/http.c src/net/ws.c
$(FUZZ_DIR)/fuzz_ws_frames $(FUZZ_DIR)/fuzz_http_upgrade: $(FUZZ_WS_SRC)
$(FUZZ_DIR)/fuzz_ws_frames $(FUZZ_DIR)/fuzz_http_upgrade: FUZZ_EXTRA := $(FUZZ_WS_SRC) -lwslay -lcrypto
# The SCRAM target builds the server side it tests, with libcrypto.
$(FUZZ_DIR)/fuzz_scram: src/security/scram.c
$(FUZZ_DIR)/fuzz_scram: FUZZ_EXTRA := src/security/scram.c -lcrypto
# The ACL target builds the ACL code it tests.
$(FUZZ_DIR)/fuzz_acl: src/security/acl.c
$(FUZZ_DIR)/fuzz_acl: FUZZ_EXTRA := src/security/acl.c
# The password-file target builds passwd.c and the SCRAM key derivation it calls.
$(FUZZ_DIR)/fuzz_passwd: src/security/passwd.c src/security/scram.c
$(FUZZ_DIR)/fuzz_passwd: FUZZ_EXTRA := src/security/passwd.c src/security/scram.c -lsodium -lcrypto
# The bans target builds the bans code it tests.
$(FUZZ_DIR)/fuzz_bans: src/security/ban.c
$(FUZZ_DIR)/fuzz_bans: FUZZ_EXTRA := src/security/ban.c
# The unseal target builds the sealing code it tests, with libcrypto.
$(FUZZ_DIR)/fuzz_unseal: src/store/seal.c src/store/seal.h
$(FUZZ_DIR)/fuzz_unseal: FUZZ_EXTRA := src/store/seal.c -lcrypto

# The record target builds the store's record layouts it tests.
$(FUZZ_DIR)/fuzz_record: src/store/record.c src/store/record.h
$(FUZZ_DIR)/fuzz_record: FUZZ_EXTRA := src/store/record.c
# The admin HTTP target builds the admin server and JSON writer whose parser it tests.
$(FUZZ_DIR)/fuzz_admin_http: src/admin/server.c src/admin/json.c src/admin/admin.h
$(FUZZ_DIR)/fuzz_admin_http: FUZZ_EXTRA := src/admin/server.c src/admin/json.c

fuzz-build: $(FUZZ_BIN)

# Each target runs on a scratch copy of its seed corpus, so the repository's
# corpus stays small and reviewed; a crash leaves its input in build/fuzz.
fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
		seeds=tests/fuzz/corpus/$$t; work=$(FUZZ_DIR)/corpus/$$t; \
		mkdir -p $$work; cp -n $$seeds/* $$work/ 2>/dev/null || true; \
		echo "== $$t for $(FUZZ_SECONDS)s"; \
		$(FUZZ_DIR)/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=$(FUZZ_DIR)/$$t- $$work 2>&1 | tail -n 12; \
		test $${PIPESTATUS[0]} -eq 0; \
	done

# ---- benchmarks ----

# The ACL benchmark (plain C, not a test), built with this variant's flags:
# run it with the default SAN=0 for release numbers.
.PHONY: bench-acl
$(BUILD)/bench/acl_bench: bench/acl_bench.c $(DAEMON_LIB) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< $(DAEMON_LIB) $(LIB) -o $@ $(ALL_LDFLAGS) $(DAEMON_LIBS)

bench-acl: $(BUILD)/bench/acl_bench
	$(BUILD)/bench/acl_bench

# The side-by-side benchmark (docs/benchmarks.md): moatd against Debian's
# mosquitto under `moat bench`, built with the release flags of this build
# directory. BENCH_QUICK=1 runs each scenario once, shortly (< 2 minutes).
.PHONY: bench
bench: all
	MOATD=$(abspath $(BUILD))/moatd MOAT=$(abspath $(BUILD))/moat BENCH_QUICK=$(BENCH_QUICK) \
		/usr/bin/python3 bench/run

# ---- running ----

run: all
	$(BUILD)/moatd -v

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj $(BUILD)/tests -name '*.d' 2>/dev/null)
