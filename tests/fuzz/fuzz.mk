# fuzz.mk: `make fuzz`, libFuzzer over proxy/http1.c's head paths and
# proxy/config.c's conf reader.
#
# Included from Makefile.am. Builds tests/fuzz/fuzz_request,
# tests/fuzz/fuzz_response and tests/fuzz/fuzz_conf with clang from the
# proxy sources directly (http1.c or config.c, and util.c, instrumented),
# never from the gcc-built library, then runs each for FUZZ_SECONDS on a
# copy of its seed corpus kept in the build tree (it grows from run to
# run; `make fuzz-clean` drops it). Any
# crash, sanitizer report, leak or timeout fails the target and leaves the
# input in tests/fuzz/artifacts/<target>/ and the output in
# tests/fuzz/fuzz_<target>.log.
#
#   make fuzz                     60 s per target
#   make fuzz FUZZ_SECONDS=600    longer
#   make fuzz FUZZ_STRICT=1       also check what regenerated heads say
#   make fuzz-crashes             replay tests/fuzz/crashes/ (known findings)
#
# Relies on the automake Makefile for top_srcdir, builddir, LIBEVENT_CFLAGS,
# LIBEVENT_LIBS, HTTP_PARSER_LIBS, INIH_CFLAGS and INIH_LIBS. Plain make syntax only: automake
# copies this file into Makefile.in and runs with -Wall -Werror.

FUZZ_SECONDS = 60
FUZZ_STRICT = 0
FUZZ_CC = clang
FUZZ_CC_FLAGS = -std=c11 -D_GNU_SOURCE -g -O1 \
	-fsanitize=fuzzer,address,undefined -I$(top_srcdir)/proxy \
	$(LIBEVENT_CFLAGS)
FUZZ_LINK = $(LIBEVENT_LIBS) $(HTTP_PARSER_LIBS)
FUZZ_RUN_FLAGS = -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -timeout=10 \
	-print_final_stats=1
FUZZ_PROXY_SRCS = $(top_srcdir)/proxy/http1.c $(top_srcdir)/proxy/util.c
FUZZ_DEPS = $(FUZZ_PROXY_SRCS) $(top_srcdir)/proxy/http1.h \
	$(top_srcdir)/proxy/util.h $(top_srcdir)/tests/fuzz/fuzz_common.h
FUZZ_DIR = $(builddir)/tests/fuzz
FUZZ_SUMMARY = ^Done|DONE|^stat::(number_of_executed|average_exec|peak_rss)
FUZZ_FINDING = ^fuzz: (strict|split)|ERROR:|runtime error
FUZZ_TARGETS = request response conf
FUZZ_PROGS = $(FUZZ_DIR)/fuzz_request $(FUZZ_DIR)/fuzz_response \
	$(FUZZ_DIR)/fuzz_conf

$(FUZZ_DIR)/fuzz_request: $(top_srcdir)/tests/fuzz/fuzz_request.c $(FUZZ_DEPS)
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CC_FLAGS) -o $@ \
		$(top_srcdir)/tests/fuzz/fuzz_request.c $(FUZZ_PROXY_SRCS) \
		$(FUZZ_LINK)

$(FUZZ_DIR)/fuzz_response: $(top_srcdir)/tests/fuzz/fuzz_response.c $(FUZZ_DEPS)
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CC_FLAGS) -o $@ \
		$(top_srcdir)/tests/fuzz/fuzz_response.c $(FUZZ_PROXY_SRCS) \
		$(FUZZ_LINK)

$(FUZZ_DIR)/fuzz_conf: $(top_srcdir)/tests/fuzz/fuzz_conf.c \
		$(top_srcdir)/proxy/config.c $(top_srcdir)/proxy/config.h \
		$(top_srcdir)/proxy/util.c $(top_srcdir)/proxy/util.h
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CC_FLAGS) $(INIH_CFLAGS) -o $@ \
		$(top_srcdir)/tests/fuzz/fuzz_conf.c $(top_srcdir)/proxy/config.c \
		$(top_srcdir)/proxy/util.c $(FUZZ_LINK) $(INIH_LIBS)

# The targets run at once (FUZZ_SECONDS of wall time for all of them on
# the machine's cores), and each is reported even if another fails; the
# summary is libFuzzer's final stats, or the end of the log on a failure.
fuzz: $(FUZZ_PROGS)
	@for t in $(FUZZ_TARGETS); do \
	  corpus=$(FUZZ_DIR)/run/$$t; \
	  artifacts=$(FUZZ_DIR)/artifacts/$$t; \
	  log=$(FUZZ_DIR)/fuzz_$$t.log; \
	  mkdir -p $$corpus $$artifacts; \
	  cp $(top_srcdir)/tests/fuzz/corpus/$$t/* $$corpus/ || exit 1; \
	  if [ $$t = conf ]; then \
	    cp $(top_srcdir)/conf/switchboard.conf $$corpus/shipped.conf; \
	  fi; \
	  echo "fuzz_$$t: $(FUZZ_SECONDS) s, corpus $$corpus, log $$log"; \
	  ( SWITCHBOARD_FUZZ_STRICT=$(FUZZ_STRICT) $(FUZZ_DIR)/fuzz_$$t \
	      $(FUZZ_RUN_FLAGS) -artifact_prefix=$$artifacts/ \
	      -dict=$(top_srcdir)/tests/fuzz/`case $$t in conf) echo conf;; \
	        *) echo http;; esac`.dict $$corpus \
	      > $$log 2>&1; echo $$? > $(FUZZ_DIR)/fuzz_$$t.rc ) & \
	done; \
	wait; \
	status=0; \
	for t in $(FUZZ_TARGETS); do \
	  log=$(FUZZ_DIR)/fuzz_$$t.log; \
	  if [ "`cat $(FUZZ_DIR)/fuzz_$$t.rc 2>/dev/null`" = 0 ]; then \
	    grep -E '$(FUZZ_SUMMARY)' $$log; \
	  else \
	    status=1; \
	    tail -n 60 $$log; \
	    echo "fuzz_$$t: FAILED; input in $(FUZZ_DIR)/artifacts/$$t/"; \
	  fi; \
	done; \
	exit $$status

# Replay the kept reproducers (strict, as some findings need it): each
# prints FAILS while its bug is there. Fails if any still does.
fuzz-crashes: $(FUZZ_PROGS)
	@status=0; \
	for t in $(FUZZ_TARGETS); do \
	  for f in $(top_srcdir)/tests/fuzz/crashes/$$t/*; do \
	    test -f "$$f" || continue; \
	    if SWITCHBOARD_FUZZ_STRICT=1 $(FUZZ_DIR)/fuzz_$$t "$$f" \
	         > $(FUZZ_DIR)/replay.log 2>&1; then \
	      echo "fixed  $$t/`basename $$f`"; \
	    else \
	      echo "FAILS  $$t/`basename $$f`:" \
	        "`grep -m1 -E '$(FUZZ_FINDING)' $(FUZZ_DIR)/replay.log`"; \
	      status=1; \
	    fi; \
	  done; \
	done; \
	exit $$status

fuzz-clean:
	rm -rf $(FUZZ_PROGS) $(FUZZ_DIR)/run $(FUZZ_DIR)/artifacts \
		$(FUZZ_DIR)/fuzz_request.log $(FUZZ_DIR)/fuzz_response.log \
		$(FUZZ_DIR)/fuzz_conf.log $(FUZZ_DIR)/*.rc $(FUZZ_DIR)/replay.log

.PHONY: fuzz fuzz-crashes fuzz-clean
