/* libFuzzer harness: log lines, the untrusted input, against the rules of the shipped examples
 * and of the tests (the conf.d examples, tests/lib.sh): rule_set_apply with every outcome
 * (events, invalid values and timestamps, PCRE2 limits) and the customer map lookup. The first
 * byte picks the read time's day; the rest is one line. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/rule.h"
#include "util/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The examples' patterns, verbatim; low limits so that a hostile line is cut short here too. */
static const char conf[] =
    "[source web]\npath = /var/log/web/*.log\n"
    "[rule apache]\nsource = web\nevent_name = bandwidth_bytes\n"
    "pattern = ^(?<ip>\\S+) \\S+ \\S+ \\[(?<time>[^\\]]+)\\] \"[^\"]*\" 2\\d\\d (?<bytes>\\d+)\n"
    "customer = ip\nvalue = bytes\ntimestamp = time\nmatch_limit = 100000\n"
    "[rule nginx]\nsource = web\nevent_name = requests\n"
    "pattern = ^(?<ip>\\S+) \\S+ \\S+ \\[(?<time>[^\\]]+)\\] \"[^\"]*\" [23]\\d\\d\\s\n"
    "customer = ip\nvalue = 1\ntimestamp = time\n"
    "[rule haproxy]\nsource = web\nevent_name = requests\n"
    "pattern = haproxy\\[\\d+\\]: (?<ip>[0-9A-Fa-f.:]+):\\d+ \\[(?<time>[^\\].]+)(?:\\.\\d+)?\\] "
    "\\S+\n"
    "customer = ip\nvalue = 1\ntimestamp = time\ntimestamp_format = %d/%b/%Y:%H:%M:%S\n"
    "[rule caddy]\nsource = web\nevent_name = requests\n"
    "pattern = \"ts\":(?<ts>\\d+(?:\\.\\d+)?),\"logger\":\"http\\.log\\.access[^\"]*\",\"msg\":"
    "\"handled request\",.*\"remote_ip\":\"(?<ip>[^\"]+)\".*\"size\":(?<size>\\d+)\n"
    "customer = ip\nvalue = size\ntimestamp = ts\ntimestamp_format = epoch\n"
    "[rule nested]\nsource = web\nevent_name = requests\n"
    "pattern = ^(?<c>(?:a+)+)$\ncustomer = c\nvalue = 1\nmatch_limit = 10000\n"
    "[rule interp]\nsource = web\nevent_name = requests\n"
    "pattern = (*NO_JIT)^(?:(?<c>\\S+) )+(?<v>-?\\d+(?:\\.\\d+)?)$\ncustomer = c\nvalue = v\n"
    "depth_limit = 1000\nheap_limit = 1M\n";

static struct config *cfg;
static struct rule_set *rules;
static struct rule_result *out;

static void init(void)
{
	static char err[CONFIG_ERR_MAX];

	log_set_level(LOG_LVL_ERR);
	setenv("TZ", "UTC", 1);
	cfg = config_load_text(conf, "/fuzz/logmeter.conf", err, sizeof(err));
	if (cfg == NULL)
		abort();
	rules = rule_set_new(cfg, err, sizeof(err));
	out = calloc(rule_set_max_per_source(rules), sizeof(*out));
	if (rules == NULL || out == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int64_t now = 1700000000;
	size_t n;

	if (rules == NULL)
		init();
	if (size > 0) {
		now += (int64_t)data[0] * 86400;
		data++;
		size--;
	}
	n = rule_set_apply(rules, 0, (const char *)data, size, now, out);
	for (size_t i = 0; i < n; i++) {
		/* What every caller relies on: terminated texts, a known outcome. */
		if (memchr(out[i].reason, '\0', sizeof(out[i].reason)) == NULL ||
		    memchr(out[i].customer, '\0', sizeof(out[i].customer)) == NULL ||
		    memchr(out[i].value, '\0', sizeof(out[i].value)) == NULL ||
		    out[i].outcome > RULE_UNMAPPED)
			abort();
		if (out[i].outcome == RULE_EVENT &&
		    (out[i].customer[0] == '\0' || out[i].value[0] == '\0'))
			abort();
	}
	return 0;
}
