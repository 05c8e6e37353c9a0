#include "config/config.h"

#include "util/log.h"
#include "util/path.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <arpa/inet.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* ---- the Stripe API base and account (the sender relies on these checks) ---- */

int config_api_base_is_local(const char *base)
{
	static const char prefix[] = "http://127.0.0.1";
	const char *p;

	if (strncasecmp(base, prefix, sizeof(prefix) - 1) != 0)
		return 0;
	p = base + sizeof(prefix) - 1;
	if (*p == ':') {
		unsigned long port = 0;
		int digits = 0;

		p++;
		while (isdigit((unsigned char)*p) && digits < 6) {
			port = port * 10 + (unsigned long)(*p - '0');
			p++;
			digits++;
		}
		if (digits == 0 || digits > 5 || port == 0 || port > 65535)
			return 0;
	}
	/* A path prefix is allowed, as for https (base_has_version_path refuses "/v1"). */
	return *p == '\0' || (p[0] == '/' && p[1] != '/');
}

/* logmeter appends /v1/billing/meter_events: a base that already ends in /v1 (copied from an
 * endpoint's URL) would post to /v1/v1/... and every event would come back 404, a dead letter.
 * Other paths stay allowed: a proxy may serve the API under a prefix. */
static int base_has_version_path(const char *api_base)
{
	const char *p = strstr(api_base, "://");
	size_t n;

	p = p != NULL ? strchr(p + 3, '/') : NULL;
	if (p == NULL)
		return 0;
	if (strstr(p, "/v1/") != NULL || strstr(p, "/v2/") != NULL)
		return 1;
	n = strlen(p);
	while (n > 0 && p[n - 1] == '/')
		n--;
	return n >= 3 && (strncmp(p + n - 3, "/v1", 3) == 0 || strncmp(p + n - 3, "/v2", 3) == 0);
}

int config_check_api_base(const char *api_base, char *err, size_t errlen)
{
	static const char https[] = "https://";

	if (api_base == NULL || api_base[0] == '\0') {
		err_set(err, errlen, "[stripe] the base URL is empty");
		return -1;
	}
	for (const char *p = api_base; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c <= 0x20 || c >= 0x7f) {
			err_set(err, errlen,
			        "[stripe] the base URL contains whitespace, control or non-ASCII "
			        "characters");
			return -1;
		}
	}
	if (base_has_version_path(api_base)) {
		err_set(err, errlen,
		        "[stripe] %s ends in an API version: give the base only, such as "
		        "https://api.stripe.com (logmeter adds /v1/billing/meter_events)",
		        api_base);
		return -1;
	}
	if (strncasecmp(api_base, https, sizeof(https) - 1) == 0) {
		if (api_base[sizeof(https) - 1] == '\0' || api_base[sizeof(https) - 1] == '/') {
			err_set(err, errlen, "[stripe] %s has no host", api_base);
			return -1;
		}
		return 0;
	}
	if (config_api_base_is_local(api_base))
		return 0;
	err_set(err, errlen,
	        "[stripe] %s: must start with https:// (plain http is allowed only for "
	        "http://127.0.0.1[:PORT], a local test double)",
	        api_base);
	return -1;
}

int config_parse_listen(const char *text, struct sockaddr_storage *out, socklen_t *outlen,
                        int *loopback, char *err, size_t errlen)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon = strrchr(text, ':'), *p;
	size_t hlen;
	long port = 0;

	memset(out, 0, sizeof(*out));
	if (colon == NULL || colon[1] == '\0') {
		err_set(err, errlen, "expected ADDRESS:PORT, such as 127.0.0.1:9464 or [::1]:9464");
		return -1;
	}
	for (p = colon + 1; *p != '\0'; p++) {
		if (*p < '0' || *p > '9' || port > 65535) {
			err_set(err, errlen, "the port is not a number from 0 to 65535");
			return -1;
		}
		port = port * 10 + (*p - '0');
	}
	if (port > 65535) {
		err_set(err, errlen, "the port is not a number from 0 to 65535");
		return -1;
	}
	hlen = (size_t)(colon - text);
	if (hlen >= 2 && text[0] == '[' && text[hlen - 1] == ']' && hlen - 2 < sizeof(host)) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;

		memcpy(host, text + 1, hlen - 2);
		host[hlen - 2] = '\0';
		if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
			goto bad_address;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		*outlen = sizeof(*a6);
		*loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
		return 0;
	}
	if (hlen < sizeof(host)) {
		struct sockaddr_in *a4 = (struct sockaddr_in *)out;

		memcpy(host, text, hlen);
		host[hlen] = '\0';
		if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
			goto bad_address;
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		*outlen = sizeof(*a4);
		*loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
		return 0;
	}
bad_address:
	err_set(err, errlen,
	        "the address is neither a numeric IPv4 address nor an IPv6 address in brackets "
	        "(127.0.0.1:9464, [::1]:9464)");
	return -1;
}

int config_check_account(const char *account, char *err, size_t errlen)
{
	static const char prefix[] = "acct_";
	size_t n;

	if (account == NULL || strncmp(account, prefix, sizeof(prefix) - 1) != 0) {
		err_set(err, errlen,
		        "[stripe] account must be a connected account id such as acct_1A2b3C");
		return -1;
	}
	n = strlen(account);
	if (n == sizeof(prefix) - 1 || n > 255) {
		err_set(err, errlen, "[stripe] account: the id after acct_ is empty or too long");
		return -1;
	}
	for (size_t i = sizeof(prefix) - 1; i < n; i++) {
		if (!isalnum((unsigned char)account[i])) {
			err_set(err, errlen,
			        "[stripe] account: only letters and digits may follow acct_");
			return -1;
		}
	}
	return 0;
}

/* Longest value quoted back in an error message: enough to recognise it, short enough to keep
 * the error buffer for other errors. */
#define QUOTE_MAX 80
/* Errors kept in memory; a file of garbage must not grow without bound. CONFIG_ERR_MAX holds far
 * fewer anyway. */
#define ERRORS_MAX 1000
/* A pattern file bigger than this is surely the wrong file. */
#define PATTERN_FILE_MAX (1024 * 1024)
#define NAME_CHARS "A-Za-z0-9_.-"

enum sec_kind { SEC_AGENT, SEC_STRIPE, SEC_SOURCE, SEC_RULE, SEC_N };

static const char *const sec_names[SEC_N] = {"[agent]", "[stripe]", "[source NAME]", "[rule NAME]"};

enum opt_type {
	OPT_STRING,       /* min..max bytes, no control characters */
	OPT_NAME,         /* min..max characters of NAME_CHARS */
	OPT_SOURCE,       /* the NAME of a [source NAME], resolved once every file is read */
	OPT_GROUP,        /* a PCRE2 group name */
	OPT_VALUE,        /* a group name or a decimal constant */
	OPT_PATH,         /* relative: to the directory of the file that sets it */
	OPT_GLOB,         /* glob(7), kept as written */
	OPT_URL,          /* https://, or http:// to 127.0.0.1 only */
	OPT_INT,          /* min..max */
	OPT_SIZE,         /* bytes, with an optional k, M, G suffix; min..max */
	OPT_DURATION_MS,  /* stored in milliseconds; min..max in milliseconds */
	OPT_DURATION_S,   /* stored in seconds; min..max in seconds */
	OPT_ENUM,         /* one of `choices`, stored as its index in an enum field */
	OPT_KEYWORD,      /* one of `choices`, stored as a string */
	OPT_PATTERN,      /* non-empty, verbatim */
	OPT_PATTERN_FILE, /* an OPT_PATH whose content becomes config_rule.pattern */
	OPT_ACCOUNT,      /* a Connect account id, acct_... (config_check_account) */
	OPT_LISTEN,       /* ADDRESS:PORT (config_parse_listen); "": none */
};

static const char *const type_names[] = {
    [OPT_STRING] = "string",
    [OPT_NAME] = "name",
    [OPT_SOURCE] = "source name",
    [OPT_GROUP] = "group",
    [OPT_VALUE] = "group or number",
    [OPT_PATH] = "path",
    [OPT_GLOB] = "glob",
    [OPT_URL] = "url",
    [OPT_INT] = "integer",
    [OPT_SIZE] = "size",
    [OPT_DURATION_MS] = "duration",
    [OPT_DURATION_S] = "duration",
    [OPT_ENUM] = "enum",
    [OPT_KEYWORD] = "enum",
    [OPT_PATTERN] = "pattern",
    [OPT_PATTERN_FILE] = "path",
    [OPT_ACCOUNT] = "account id",
    [OPT_LISTEN] = "address:port",
};

#define OPT_REQUIRED 1u
/* Read before the drop-ins are looked for, so only the main file may set it. */
#define OPT_MAIN_ONLY 2u
#define OPT_ABSOLUTE 4u
/* Matched against base names, so a '/' could never match. */
#define OPT_BASENAME 8u
/* An OPT_INT that also takes "auto", stored as 0: the value is then worked out at run time. */
#define OPT_AUTO 16u

struct option {
	enum sec_kind sec;
	const char *key;
	enum opt_type type;
	size_t off;          /* of the field in the section's struct */
	size_t loc_off;      /* of its struct config_loc in the section's struct; 0: none */
	const char *def;     /* parsed like the user's text; NULL: no default */
	int64_t min, max;    /* value bounds, or length bounds for text (max 0: unbounded) */
	const char *choices; /* "a|b|c" for OPT_ENUM and OPT_KEYWORD */
	unsigned flags;
	const char *help;
};

#define AGENT(f) .sec = SEC_AGENT, .off = offsetof(struct config_agent, f)
#define STRIPE(f) .sec = SEC_STRIPE, .off = offsetof(struct config_stripe, f)
#define SOURCE(f) .sec = SEC_SOURCE, .off = offsetof(struct config_source, f)
#define RULE(f) .sec = SEC_RULE, .off = offsetof(struct config_rule, f)
#define RULE_LOC(f) .loc_off = offsetof(struct config_rule, f)
#define STRIPE_LOC(f) .loc_off = offsetof(struct config_stripe, f)
#define SEC_MS 1000
#define MIN_MS (60 * SEC_MS)
#define HOUR_MS (60 * MIN_MS)
#define DAY_MS (24LL * HOUR_MS)
#define DAY_S (24LL * 3600)

/* The one description of every option: parsing, defaults, validation and documentation all
 * read it. */
static const struct option options[] = {
    {AGENT(instance), .key = "instance", .type = OPT_NAME, .min = 1, .max = 100,
     .help = "Namespaces the events' identifiers. Without it, a random id generated once and "
             "kept in the spool is used. Changing it changes the identifiers of events read "
             "afterwards; lines already read are not read again."},
    {AGENT(state_dir), .key = "state_dir", .type = OPT_PATH, .def = "/var/lib/logmeter", .min = 1,
     .max = PATH_MAX - 1, .help = "Directory holding the spool database spool.db."},
    {AGENT(include_dir), .key = "include_dir", .type = OPT_PATH, .def = "conf.d", .min = 1,
     .max = PATH_MAX - 1, .flags = OPT_MAIN_ONLY,
     .help = "Drop-in directory: every *.conf file in it is read after the main file, in "
             "strcmp order of the names. Main file only. A missing directory is fine."},
    {AGENT(log_level), .key = "log_level", .type = OPT_KEYWORD, .def = "info",
     .choices = "error|warning|info|debug", .help = "Messages above this level are dropped."},
    {AGENT(log_format), .key = "log_format", .type = OPT_KEYWORD, .def = "text",
     .choices = "text|json",
     .help = "text: lines \"logmeter: LEVEL: MESSAGE\". json: one JSON object a line, with "
             "time, level, pid and message, for log shippers. Either way, when standard error "
             "is the journal ($JOURNAL_STREAM) each line starts with its sd-daemon priority "
             "prefix, so that journalctl -p works."},
    {AGENT(batch_lines), .key = "batch_lines", .type = OPT_INT, .def = "10000", .min = 1,
     .max = 1000000, .help = "Lines read per spool transaction (one fsync each)."},
    {AGENT(delivered_retention), .key = "delivered_retention", .type = OPT_DURATION_S, .def = "7d",
     .min = 60, .max = 400 * DAY_S,
     .help = "How long delivered events are kept for replay and status."},
    {AGENT(rescan_interval_ms), .key = "rescan_interval", .type = OPT_DURATION_MS, .def = "10s",
     .min = 100, .max = HOUR_MS,
     .help = "Period of the backstop rescan of the sources' globs, in case inotify missed "
             "something."},
    {AGENT(max_line_length), .key = "max_line_length", .type = OPT_SIZE, .def = "64k", .min = 256,
     .max = 64 * 1024 * 1024, .help = "Longer log lines are skipped and counted."},
    {AGENT(max_open_files), .key = "max_open_files", .type = OPT_INT, .def = "256", .min = 16,
     .max = 1000000,
     .help = "Log files kept open at once. Beyond it the least recently read files are closed "
             "(their checkpoint stays in the spool) and opened again by name, their identity "
             "checked, when they change; files reached through a symlink stay open, and "
             "checking whether a new file is a copy of a known one opens up to two more for a "
             "moment (docs/tailing.md)."},
    {AGENT(rotate_wait_ms), .key = "rotate_wait", .type = OPT_DURATION_MS, .def = "5m", .min = 100,
     .max = DAY_MS,
     .help = "A file rotated away (renamed to a name its glob does not match) is kept open and "
             "read while its writer may still append to it; it is released once read to its "
             "end and unchanged for this long."},
    {AGENT(durability), .key = "durability", .type = OPT_ENUM, .def = "strict",
     .choices = "strict|normal",
     .help = "strict: every spool commit is on disk when it returns (SQLite synchronous=FULL). "
             "normal: synchronous=NORMAL; a power cut (not a crash) can undo the last commits, "
             "whose lines are then read again; the sender sends only what is on disk (one sync "
             "of the WAL per load of its queue), so none of them had been sent. See "
             "docs/durability.md."},
    {AGENT(max_spool_bytes), .key = "max_spool_bytes", .type = OPT_SIZE, .def = "0", .min = 0,
     .max = 1024LL << 30,
     .help = "Largest size of the events and checkpoints in spool.db (its pages in use; the WAL "
             "and free pages are not counted); 0: no limit. Delivered events are pruned, oldest "
             "first, before delivered_retention when the limit needs their room; when pending "
             "and dead events alone reach it, reading pauses until the sender has delivered "
             "some. Nothing is dropped. A commit may pass it by one batch."},
    {AGENT(min_free_bytes), .key = "min_free_bytes", .type = OPT_SIZE, .def = "16M", .min = 0,
     .max = 1024LL << 30,
     .help = "Reading pauses when the spool could grow by less than this: free space on the "
             "state_dir's file system (minus what the WAL and the next checkpoint will still "
             "take) plus free pages in spool.db. Delivered events are pruned early to make "
             "room; sending goes on. It should hold a few batches. 0: pause only when a commit "
             "fails because the disk is full. `check` warns when it is more than the file "
             "system has free."},
    {AGENT(allow_core_dumps), .key = "allow_core_dumps", .type = OPT_ENUM, .def = "no",
     .choices = "no|yes",
     .help = "For debugging only. no: every logmeter command makes itself undumpable "
             "(prctl PR_SET_DUMPABLE 0) and sets its core size limit to 0 at start, so that "
             "no core dump, ptrace or /proc/PID/mem of another user can show the API key. "
             "yes: `run` becomes dumpable again with the core limit it was started with "
             "(docs/security.md)."},
    {AGENT(metrics_listen), .key = "metrics_listen", .type = OPT_LISTEN, .min = 0, .max = 64,
     .help = "ADDRESS:PORT where the agent serves its Prometheus metrics at /metrics, such as "
             "127.0.0.1:9464 or [::1]:9464 (port 0: any free port, logged at start). Empty: no "
             "endpoint. The endpoint has no authentication: keep it on loopback unless a "
             "firewall guards the address (a non-loopback address is logged as a warning). See "
             "docs/metrics.md."},
    {AGENT(metrics_max_files), .key = "metrics_max_files", .type = OPT_INT, .def = "100", .min = 0,
     .max = 100000,
     .help = "Files being read that get series of their own in the metrics (lines, NUL bytes, "
             "lag), the first by source and the order they were first seen; every file counts "
             "in the per-source series. Bounds the metrics' size with thousands of files."},
    {AGENT(stale_after_ms), .key = "stale_after", .type = OPT_DURATION_MS, .def = "60s",
     .min = 2000, .max = HOUR_MS,
     .help = "The running agent writes its live state (STATE_DIR/agent.state) at least four "
             "times in this period, from each of its reading and sending threads; a state "
             "older than this says the agent stopped responding (frozen, or a thread hung), "
             "and status and the metrics report it as degraded. See docs/status-json.md."},

    {STRIPE(api_key_file), .key = "api_key_file", .type = OPT_PATH, .min = 1, .max = PATH_MAX - 1,
     .help = "File holding the Stripe secret (sk_...) or restricted (rk_...) key alone, read when "
             "neither the environment variable LOGMETER_STRIPE_API_KEY nor a systemd credential "
             "stripe.key ($CREDENTIALS_DIRECTORY) is there. Refused if others may read it "
             "(mode 0640 root:logmeter, or 0600)."},
    {STRIPE(api_base), STRIPE_LOC(api_base_loc), .key = "api_base", .type = OPT_URL,
     .def = "https://api.stripe.com", .min = 1, .max = 1000,
     .help = "Base URL of the Stripe API. Plain http:// only to 127.0.0.1, for a local test "
             "double."},
    {STRIPE(request_timeout_ms), .key = "request_timeout", .type = OPT_DURATION_MS, .def = "80s",
     .min = SEC_MS, .max = 10 * MIN_MS, .help = "Time limit of one request."},
    {STRIPE(max_concurrency), .key = "max_concurrency", .type = OPT_INT, .def = "8", .min = 1,
     .max = 64, .help = "Requests in flight at once."},
    {STRIPE(max_requests_per_second), .key = "max_requests_per_second", .type = OPT_INT,
     .def = "auto", .min = 1, .max = 10000, .flags = OPT_AUTO,
     .help = "Requests per second at most. auto: the rate Stripe allows the key for meter "
             "events: 1000 with a live key (sk_live_, rk_live_), 25 with a test key, 100 with "
             "a live key and a Connect account (docs.stripe.com/rate-limits). Several hosts "
             "sharing one Stripe account share its limit: give each a part. After a 429 the "
             "rate is halved and climbs back while requests succeed."},
    {STRIPE(retry_min_backoff_ms), .key = "retry_min_backoff", .type = OPT_DURATION_MS,
     .def = "500ms", .min = 10, .max = MIN_MS, .help = "First wait before a retry."},
    {STRIPE(retry_max_backoff_ms), .key = "retry_max_backoff", .type = OPT_DURATION_MS,
     .def = "30s", .min = 100, .max = HOUR_MS,
     .help = "Longest wait between retries; at least retry_min_backoff."},
    {STRIPE(auth_pause_ms), .key = "auth_pause", .type = OPT_DURATION_MS, .def = "60s", .min = 100,
     .max = DAY_MS,
     .help = "Wait before sending again after Stripe refuses the key (401 or 403), or after an "
             "answer that is not Stripe's (a redirect, a 200 that is not the meter event, an "
             "unexpected status: a proxy or a wrong api_base). Events stay pending."},
    {STRIPE(account), .key = "account", .type = OPT_ACCOUNT, .min = 6, .max = 255,
     .help = "A Connect connected account id (acct_...): events are sent on its behalf with "
             "the Stripe-Account header, and the automatic rate is Stripe's Connect limit."},
    {STRIPE(api), .key = "api", .type = OPT_ENUM, .def = "v1", .choices = "v1|v2",
     .help = "The meter event API. v1: one request per event (POST /v1/billing/meter_events), "
             "1,000 a second for a live account, 25 in test mode. v2: meter event streams, up to "
             "100 events a request (POST /v2/billing/meter_event_stream on meter_events_base) "
             "under a meter event session renewed before its 15 minutes run out; 10,000 events "
             "a second for a live account, while in test mode each request counts against the "
             "basic limit of 25 a second. Stripe validates v2 events after answering: what it "
             "refuses then is only in its Dashboard and error reports. See "
             "docs/stripe-contract.md."},
    {STRIPE(meter_events_base), .key = "meter_events_base", .type = OPT_URL,
     .def = "https://meter-events.stripe.com", .min = 1, .max = 1000,
     .help = "Base URL of Stripe's meter event stream host (api = v2). Plain http:// only to "
             "127.0.0.1, for a local test double."},
    {STRIPE(unsure_after_s), .key = "unsure_after", .type = OPT_DURATION_S, .def = "23h", .min = 1,
     .max = DAY_S,
     .help = "An event with an attempt whose outcome is unknown (a 5xx, a timeout, a reset) is "
             "re-sent with its identifier, which Stripe dedupes for at least 24 hours. Once "
             "that first unknown attempt is older than this, the event is no longer re-sent by "
             "itself: it becomes unsure (shown by status) until `logmeter replay --unsure` "
             "sends it. See docs/stripe-contract.md."},

    {SOURCE(path), .key = "path", .type = OPT_GLOB, .min = 1, .max = PATH_MAX - 1,
     .flags = OPT_REQUIRED | OPT_ABSOLUTE,
     .help = "Absolute glob(7) pattern of the files to tail. A file is read by one source "
             "only, or its lines would be billed once per source: the one that read it "
             "first, else the first source in configuration order whose glob matches it; "
             "`check` refuses globs of two sources that match one file, and the agent logs "
             "it and `status` says degraded. Put every rule of a file under one source (a "
             "source may carry many rules). See docs/tailing.md."},
    {SOURCE(exclude), .key = "exclude", .type = OPT_GLOB, .def = "*.gz", .min = 0, .max = NAME_MAX,
     .flags = OPT_BASENAME,
     .help = "Glob matched against a file's base name: matching files are not tailed. Empty: "
             "exclude nothing."},
    {SOURCE(read_from), .key = "read_from", .type = OPT_ENUM, .def = "head", .choices = "head|tail",
     .help = "Where a file seen for the first time is read from: its start or its end."},
    {SOURCE(follow_symlinks), .key = "follow_symlinks", .type = OPT_ENUM, .def = "no",
     .choices = "no|yes",
     .help = "no: a symlink that the glob's wildcards match (the file, or a directory on the "
             "way to it) is refused, logged once and counted; links in the part of path "
             "written without wildcards are followed (a path without any wildcard too, if "
             "root or logmeter's user made the link). yes: such links are followed, as "
             "Kubernetes' /var/log/containers/*.log links need; even then a file in the "
             "state_dir or a configuration directory, or the API key file, is refused "
             "(docs/security.md)."},
    {SOURCE(olddir), .key = "olddir", .type = OPT_STRING, .min = 1, .max = PATH_MAX - 1,
     .help = "The directory logrotate's `olddir` moves this source's rotated files to: "
             "absolute, or relative to each log's own directory, as logrotate takes it. A log "
             "rotated while logmeter was stopped is then found there by its inode and read "
             "on from its checkpoint, a rotation logmeter never saw is read there as it "
             "is beside the log, and so is copytruncate's copy (on any device). Without it "
             "such a file is not found: what was written to it after its checkpoint is lost, "
             "logged and counted in `status`. One that is the log's own directory (`.`) is "
             "the same as none. See docs/tailing.md."},

    {RULE(source), .key = "source", .type = OPT_SOURCE, .min = 1, .max = 100, .flags = OPT_REQUIRED,
     .help = "Name of the [source NAME] whose lines the rule reads. Every rule of a source "
             "is applied to every line: a line that two rules match is billed by each, under "
             "an identifier of each rule's own (docs/identifiers.md)."},
    {RULE(event_name), .key = "event_name", .type = OPT_STRING, .min = 1, .max = 100,
     .flags = OPT_REQUIRED, .help = "Event name of the Stripe meter."},
    {RULE(pattern), RULE_LOC(pattern_loc), .key = "pattern", .type = OPT_PATTERN, .min = 1,
     .help = "PCRE2 pattern with named groups. Continue a long one on following lines that "
             "start with whitespace: the pieces are joined without separator, each stripped "
             "of surrounding whitespace, and a piece cannot start with ';' or '#'. "
             "Whitespace followed by ';' starts a comment. Exactly one of pattern and "
             "pattern_file is required."},
    {RULE(pattern_file), RULE_LOC(pattern_loc), .key = "pattern_file", .type = OPT_PATTERN_FILE,
     .min = 1, .max = PATH_MAX - 1,
     .help = "File holding the pattern verbatim on one line (a final newline is dropped); "
             "relative to the directory of the file naming it. Use it for patterns with "
             "' ;' or spaces at the ends."},
    {RULE(customer), RULE_LOC(customer_loc), .key = "customer", .type = OPT_GROUP,
     .flags = OPT_REQUIRED,
     .help = "Named group holding the Stripe customer id, or the key looked up in "
             "customer_map."},
    {RULE(customer_map), RULE_LOC(customer_map_loc), .key = "customer_map", .type = OPT_PATH,
     .min = 1, .max = PATH_MAX - 1,
     .help = "CSV file of \"key,cus_id\" lines mapping the customer group to customer ids; "
             "relative to the directory of the file naming it. Read at start and at each "
             "reload (SIGHUP): a key added to it maps lines read after the next reload; lines "
             "of a key it lacked are dead letters, which `replay --dead` maps again."},
    {RULE(value), RULE_LOC(value_loc), .key = "value", .type = OPT_VALUE, .flags = OPT_REQUIRED,
     .help = "Named group holding the event's value, or a constant number such as 1. A "
             "constant 0 is refused with aggregate (its windows would bill nothing)."},
    {RULE(timestamp), RULE_LOC(timestamp_loc), .key = "timestamp", .type = OPT_GROUP,
     .help = "Named group holding the event's time. Without it: the time the line was read."},
    {RULE(timestamp_format), RULE_LOC(timestamp_format_loc), .key = "timestamp_format",
     .type = OPT_STRING, .def = "%d/%b/%Y:%H:%M:%S %z", .min = 1, .max = 100,
     .help = "strptime(3) format of the timestamp group, or epoch for seconds since the "
             "epoch. Without %z or %Z the time is in the agent's local time zone (TZ). %z "
             "takes an offset (+0200, +02:00, Z); %Z takes only UTC, GMT, UT or Z (offset "
             "0): a zone name such as CET or PST makes the line invalid, since strptime(3) "
             "ignores the name and the offset it means cannot be known. A second past 60 or an "
             "offset beyond -12:00..+14:00 makes the line invalid too. A format without a year "
             "(syslog's %b %d %H:%M:%S) takes the latest year that puts the time at most a "
             "day after the time the line is read: December lines read in January are last "
             "year's, and a January line read while it is still 31 December in UTC (an offset "
             "ahead of UTC) or on this host's clock (a writer's clock ahead) is next year's. "
             "Refused in a rule without timestamp, where it would have no effect."},
    {RULE(payload_customer_key), .key = "payload_customer_key", .type = OPT_NAME,
     .def = "stripe_customer_id", .min = 1, .max = 100,
     .help = "The meter's customer_mapping.event_payload_key."},
    {RULE(payload_value_key), .key = "payload_value_key", .type = OPT_NAME, .def = "value",
     .min = 1, .max = 100, .help = "The meter's value_settings.event_payload_key."},
    {RULE(match_limit), .key = "match_limit", .type = OPT_INT, .def = "1000000", .min = 1000,
     .max = UINT32_MAX,
     .help = "PCRE2's match limit (pcre2_set_match_limit) for one line: bounds the CPU a "
             "line can cost, with the JIT too (counted differently there). A line that hits "
             "it makes no event, is counted (status: limits) and is warned about at most "
             "once a minute per rule. Realistic log patterns need a few thousand on 64 KiB "
             "lines (docs/security.md)."},
    {RULE(depth_limit), .key = "depth_limit", .type = OPT_INT, .def = "100000", .min = 100,
     .max = UINT32_MAX,
     .help = "PCRE2's backtracking depth limit (pcre2_set_depth_limit). Applies only when "
             "the pattern runs in PCRE2's interpreter (no JIT): the JIT ignores it. A line "
             "that hits it is counted as for match_limit."},
    {RULE(heap_limit), .key = "heap_limit", .type = OPT_SIZE, .def = "64M", .min = 1 << 20,
     .max = 4LL << 30,
     .help = "Memory PCRE2 may use for backtracking in one match (pcre2_set_heap_limit, in "
             "KiB there). Applies only to the interpreter; the JIT uses its own stack of at "
             "most 1 MiB, whose exhaustion counts as a limit too. A line that hits it is "
             "counted as for match_limit."},
    {RULE(aggregate_s), .key = "aggregate", .type = OPT_DURATION_S, .def = "0", .min = 0,
     .max = DAY_S,
     .help = "0: one meter event per line. A duration from 1s to 1d: the rule's events are summed "
             "per customer in windows of this length (aligned to the epoch), and one meter event "
             "per window is sent, stamped with the window's start, once the window's end plus "
             "aggregate_grace has passed. A line read after its window closed is counted in the "
             "next open window. Changed (a reload, a restart), it leaves the windows already made "
             "as they were, each closing as it was made to; a line whose window would start "
             "where one of them starts goes into it if it is open and holds the line's time, "
             "else into a window from its end to the end of the line's window "
             "(docs/architecture.md, Aggregation windows). Only for meters whose formula is sum "
             "(check --stripe refuses count and last). See docs/stripe-contract.md, section 15."},
    {RULE(aggregate_grace_s), .key = "aggregate_grace", .type = OPT_DURATION_S, .def = "10s",
     .min = 0, .max = DAY_S,
     .help = "How long a window stays open after its end, for lines that arrive late (a slow "
             "writer, a buffered log). Longer delays the window's meter event by as much. Only "
             "with aggregate: refused in a rule that does not aggregate."},
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

_Static_assert(sizeof(enum config_read_from) == sizeof(int), "OPT_ENUM stores an int");

/* A key as written, before validation. */
struct raw {
	char *text;            /* continuation pieces joined; NULL if its line was rejected */
	struct config_loc loc; /* loc.file == NULL: not set */
	bool bad;              /* rejected already: set, but not to be validated */
	bool invalid;          /* failed validation */
};

/* A section as written. [agent] and [stripe] may appear in several places: one each. */
struct raw_sec {
	enum sec_kind kind;
	char *name;                 /* NAME of [source NAME] or [rule NAME] */
	struct config_loc loc;      /* its (first) header line */
	struct raw vals[N_OPTIONS]; /* indexed like options[] */
};

struct cerr {
	size_t file_idx; /* sort keys: the order of reading */
	unsigned line;
	size_t seq;
	char *msg;
};

enum line_kind { LINE_BLANK, LINE_SECTION, LINE_KEY, LINE_CONT, LINE_BAD };

struct loader {
	struct config *cfg;
	char *main_dir; /* "" if the main file has no directory part */

	struct cerr *errs;
	size_t n_errs, cap_errs, n_dropped;
	bool oom;

	struct raw_sec agent, stripe;
	struct raw_sec **sources, **rules;
	size_t n_sources, n_rules;

	/* the file being read */
	const char *file; /* owned by cfg->files */
	FILE *fp;
	bool is_main;
	unsigned lineno; /* of the line the reader returned last */
	char *buf;
	size_t cap;
	enum line_kind kind; /* of that line */
	unsigned first_bad_line;
	/* libinih's state, mirrored so that the reader classifies a line as libinih will */
	bool ini_prev_key;

	/* where keys go */
	struct raw_sec *sec; /* NULL: before any section, or in an ignored one */
	bool sec_ignored;    /* in an unknown or duplicate section: its keys were reported */
	struct raw *cur;     /* what a continuation line extends; NULL: nothing */
};

static size_t ld_file_idx(const struct loader *ld, const char *file)
{
	for (size_t i = 0; i < ld->cfg->n_files; i++)
		if (ld->cfg->files[i] == file)
			return i;
	return ld->cfg->n_files;
}

/* Records "FILE:LINE: message" (or "FILE: message" when line is 0). */
static void ld_err(struct loader *ld, const char *file, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void ld_err(struct loader *ld, const char *file, unsigned line, const char *fmt, ...)
{
	char *msg = NULL, *full = NULL;
	va_list ap;
	int rc;

	if (ld->n_errs >= ERRORS_MAX) {
		ld->n_dropped++;
		return;
	}
	if (ld->n_errs == ld->cap_errs) {
		size_t ncap = ld->cap_errs ? ld->cap_errs * 2 : 16;
		struct cerr *n = realloc(ld->errs, ncap * sizeof(*n));

		if (n == NULL)
			goto oom;
		ld->errs = n;
		ld->cap_errs = ncap;
	}
	va_start(ap, fmt);
	rc = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (rc < 0)
		goto oom;
	if (line > 0)
		rc = asprintf(&full, "%s:%u: %s", file, line, msg);
	else
		rc = asprintf(&full, "%s: %s", file, msg);
	free(msg);
	if (rc < 0)
		goto oom;
	ld->errs[ld->n_errs] = (struct cerr){
	    .file_idx = ld_file_idx(ld, file), .line = line, .seq = ld->n_errs, .msg = full};
	ld->n_errs++;
	return;
oom:
	ld->oom = true;
}

/* An error about key `opt` set at `loc`; loc.file NULL means its built-in default, which the
 * unit tests keep valid. */
static void opt_err(struct loader *ld, const struct option *opt, struct config_loc loc,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void opt_err(struct loader *ld, const struct option *opt, struct config_loc loc,
                    const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (loc.file != NULL)
		ld_err(ld, loc.file, loc.line, "key '%s': %s", opt->key, msg);
	else
		ld_err(ld, ld->cfg->main_file, 0, "built-in default of key '%s' %s: %s", opt->key,
		       sec_names[opt->sec], msg);
}

static void sec_label(const struct raw_sec *rs, char *buf, size_t len)
{
	switch (rs->kind) {
	case SEC_AGENT:
		snprintf(buf, len, "[agent]");
		break;
	case SEC_STRIPE:
		snprintf(buf, len, "[stripe]");
		break;
	case SEC_SOURCE:
		snprintf(buf, len, "[source %s]", rs->name);
		break;
	default:
		snprintf(buf, len, "[rule %s]", rs->name);
		break;
	}
}

/* ---- small text helpers ---- */

static bool is_name(const char *s, size_t min, size_t max)
{
	size_t n = strlen(s);

	if (n < min || n > max)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.' && *s != '-')
			return false;
	return true;
}

/* PCRE2's rule for group names: a letter or underscore, then up to 31 more word characters. */
static bool is_group(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 32 || isdigit((unsigned char)s[0]))
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_')
			return false;
	return true;
}

static bool is_number(const char *s)
{
	const char *p = s;

	if (strlen(s) > 63)
		return false;
	if (*p == '-')
		p++;
	if (!isdigit((unsigned char)*p))
		return false;
	while (isdigit((unsigned char)*p))
		p++;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return false;
		while (isdigit((unsigned char)*p))
			p++;
	}
	return *p == '\0';
}

static bool has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* ---- numbers ---- */

static void fmt_ms(int64_t ms, char *buf, size_t len)
{
	static const struct {
		int64_t ms;
		const char *unit;
	} units[] = {{DAY_MS, "d"}, {HOUR_MS, "h"}, {MIN_MS, "m"}, {SEC_MS, "s"}};

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (ms != 0 && ms % units[i].ms == 0) {
			snprintf(buf, len, "%lld%s", (long long)(ms / units[i].ms), units[i].unit);
			return;
		}
	}
	snprintf(buf, len, "%lldms", (long long)ms);
}

static void fmt_size(int64_t v, char *buf, size_t len)
{
	static const struct {
		int64_t mul;
		const char *unit;
	} units[] = {{1LL << 30, "G"}, {1LL << 20, "M"}, {1LL << 10, "k"}};

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (v != 0 && v % units[i].mul == 0) {
			snprintf(buf, len, "%lld%s", (long long)(v / units[i].mul), units[i].unit);
			return;
		}
	}
	snprintf(buf, len, "%lld", (long long)v);
}

static void fmt_number(const struct option *opt, int64_t v, char *buf, size_t len)
{
	switch (opt->type) {
	case OPT_DURATION_MS:
		fmt_ms(v, buf, len);
		break;
	case OPT_DURATION_S:
		fmt_ms(v * SEC_MS, buf, len);
		break;
	case OPT_SIZE:
		fmt_size(v, buf, len);
		break;
	default:
		snprintf(buf, len, "%lld", (long long)v);
		break;
	}
}

static void fmt_bounds(const struct option *opt, char *buf, size_t len)
{
	char lo[32], hi[32];

	fmt_number(opt, opt->min, lo, sizeof(lo));
	fmt_number(opt, opt->max, hi, sizeof(hi));
	snprintf(buf, len, "%s..%s", lo, hi);
}

/* Decimal digits with an optional '-' if `sign`. Returns 0, -1 if there are no digits, -2 on
 * overflow; *end is past the digits. */
static int parse_digits(const char *s, bool sign, int64_t *out, const char **end)
{
	bool neg = false;
	int64_t v = 0;

	if (sign && *s == '-') {
		neg = true;
		s++;
	}
	if (!isdigit((unsigned char)*s))
		return -1;
	for (; isdigit((unsigned char)*s); s++) {
		int d = *s - '0';

		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_sub_overflow(v, d, &v)) /* negative: INT64_MIN fits */
			return -2;
	}
	if (!neg && __builtin_mul_overflow(v, -1, &v))
		return -2;
	*out = v;
	*end = s;
	return 0;
}

/* Parses an OPT_INT, OPT_SIZE or OPT_DURATION_* value into the field's unit and checks its
 * bounds. */
static int parse_number(struct loader *ld, const struct option *opt, const char *text,
                        struct config_loc loc, int64_t *out)
{
	static const struct {
		const char *unit;
		int64_t mul;
	} dur_units[] = {{"", SEC_MS},  {"ms", 1},      {"s", SEC_MS},
	                 {"m", MIN_MS}, {"h", HOUR_MS}, {"d", DAY_MS}},
	  size_units[] = {{"", 1}, {"k", 1 << 10}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}};
	char bounds[80];
	const char *end, *what;
	int64_t v, mul = 0;
	int rc;

	fmt_bounds(opt, bounds, sizeof(bounds));
	if (opt->flags & OPT_AUTO) {
		char b[sizeof(bounds)];

		snprintf(b, sizeof(b), "%s", bounds);
		snprintf(bounds, sizeof(bounds), "auto, or %.60s", b);
	}
	switch (opt->type) {
	case OPT_SIZE:
		what = "is not a size (an integer with an optional k, M or G suffix)";
		break;
	case OPT_DURATION_MS:
	case OPT_DURATION_S:
		what = "is not a duration (an integer and an optional unit: ms, s, m, h or d; "
		       "no unit means seconds)";
		break;
	default:
		what = (opt->flags & OPT_AUTO) ? "is neither auto nor an integer"
		                               : "is not an integer";
		break;
	}
	if ((opt->flags & OPT_AUTO) && strcmp(text, "auto") == 0) {
		*out = 0;
		return 0;
	}
	rc = parse_digits(text, opt->type == OPT_INT, &v, &end);
	if (rc == -1)
		goto junk;
	if (rc == -2)
		goto big;
	while (*end == ' ' || *end == '\t')
		end++;
	if (opt->type == OPT_INT) {
		if (*end != '\0')
			goto junk;
		mul = 1;
	} else if (opt->type == OPT_SIZE) {
		for (size_t i = 0; i < sizeof(size_units) / sizeof(size_units[0]); i++)
			if (strcmp(end, size_units[i].unit) == 0)
				mul = size_units[i].mul;
	} else {
		for (size_t i = 0; i < sizeof(dur_units) / sizeof(dur_units[0]); i++)
			if (strcmp(end, dur_units[i].unit) == 0)
				mul = dur_units[i].mul;
	}
	if (mul == 0)
		goto junk;
	if (__builtin_mul_overflow(v, mul, &v))
		goto big;
	if (opt->type == OPT_DURATION_S) {
		if (v % SEC_MS != 0) {
			opt_err(ld, opt, loc,
			        "'%.*s' is not a whole number of seconds (allowed: %s)", QUOTE_MAX,
			        text, bounds);
			return -1;
		}
		v /= SEC_MS;
	}
	if (v < opt->min || v > opt->max) {
		opt_err(ld, opt, loc, "'%.*s' is out of range (allowed: %s)", QUOTE_MAX, text,
		        bounds);
		return -1;
	}
	*out = v;
	return 0;
junk:
	opt_err(ld, opt, loc, "'%.*s' %s (allowed: %s)", QUOTE_MAX, text, what, bounds);
	return -1;
big:
	opt_err(ld, opt, loc, "'%.*s' is too large (allowed: %s)", QUOTE_MAX, text, bounds);
	return -1;
}

/* ---- other value types ---- */

/* Reads a pattern file: one line, verbatim, its final "\n" or "\r\n" dropped. */
static char *read_pattern_file(const char *path, char *why, size_t whylen)
{
	char *buf = NULL, *out = NULL;
	size_t len = 0;
	FILE *fp;
	int c;

	fp = fopen(path, "re");
	if (fp == NULL) {
		snprintf(why, whylen, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	buf = malloc(PATTERN_FILE_MAX + 1);
	if (buf == NULL) {
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	len = fread(buf, 1, PATTERN_FILE_MAX + 1, fp);
	if (ferror(fp)) {
		snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	if (len > PATTERN_FILE_MAX) {
		snprintf(why, whylen, "%s is larger than %d bytes", path, PATTERN_FILE_MAX);
		goto out;
	}
	if (len > 0 && buf[len - 1] == '\n') {
		len--;
		if (len > 0 && buf[len - 1] == '\r')
			len--;
	}
	if (len == 0) {
		snprintf(why, whylen, "%s is empty", path);
		goto out;
	}
	if (memchr(buf, '\n', len) != NULL) {
		snprintf(why, whylen, "%s has more than one line: a pattern is one line", path);
		goto out;
	}
	if (memchr(buf, '\0', len) != NULL) {
		snprintf(why, whylen, "%s contains a NUL byte", path);
		goto out;
	}
	out = strndup(buf, len);
	if (out == NULL)
		snprintf(why, whylen, "out of memory");
out:
	c = fclose(fp);
	(void)c;
	free(buf);
	return out;
}

static int set_string(struct loader *ld, char **field, const char *value)
{
	char *copy = strdup(value);

	if (copy == NULL) {
		ld->oom = true;
		return -1;
	}
	free(*field);
	*field = copy;
	return 0;
}

/* "a|b|c" as "a, b, c". */
static void choices_list(const struct option *opt, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (const char *p = opt->choices; *p && used + 3 < len; p++) {
		if (*p == '|') {
			buf[used++] = ',';
			buf[used++] = ' ';
		} else {
			buf[used++] = *p;
		}
	}
	buf[used] = '\0';
}

static int set_choice(struct loader *ld, const struct option *opt, const char *text,
                      struct config_loc loc, void *field)
{
	const char *p = opt->choices;
	int idx = 0;
	size_t n = strlen(text);
	char list[128];

	while (*p) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);

		if (len == n && strncmp(p, text, n) == 0) {
			if (opt->type == OPT_ENUM) {
				*(int *)field = idx;
				return 0;
			}
			return set_string(ld, field, text);
		}
		idx++;
		p += len;
		if (*p == '|')
			p++;
	}
	choices_list(opt, list, sizeof(list));
	opt_err(ld, opt, loc, "'%.*s' is not one of: %s", QUOTE_MAX, text, list);
	return -1;
}

static int check_length(struct loader *ld, const struct option *opt, const char *text,
                        struct config_loc loc)
{
	size_t n = strlen(text);

	if ((int64_t)n < opt->min || (opt->max > 0 && (int64_t)n > opt->max)) {
		if (n == 0)
			opt_err(ld, opt, loc, "is empty (allowed: %lld..%lld bytes)",
			        (long long)opt->min, (long long)opt->max);
		else
			opt_err(ld, opt, loc, "is %zu bytes long (allowed: %lld..%lld bytes)", n,
			        (long long)opt->min, (long long)opt->max);
		return -1;
	}
	return 0;
}

/* Validates `text` for `opt` and stores it into the section struct at `base`. `loc` is where
 * the text was written (file NULL: the built-in default, which belongs to the main file). */
static int opt_parse(struct loader *ld, const struct option *opt, const char *text,
                     struct config_loc loc, void *base)
{
	void *field = (char *)base + opt->off;
	char why[PATH_MAX + 200];
	char *dir = NULL, *path = NULL, *content;
	int rc = -1;

	switch (opt->type) {
	case OPT_STRING:
		if (check_length(ld, opt, text, loc) < 0)
			return -1;
		if (has_control(text)) {
			opt_err(ld, opt, loc, "contains a control character");
			return -1;
		}
		return set_string(ld, field, text);
	case OPT_NAME:
	case OPT_SOURCE:
		if (!is_name(text, (size_t)opt->min, (size_t)opt->max)) {
			opt_err(ld, opt, loc, "'%.*s' is not a name (%lld..%lld characters of %s)",
			        QUOTE_MAX, text, (long long)opt->min, (long long)opt->max,
			        NAME_CHARS);
			return -1;
		}
		return set_string(ld, field, text);
	case OPT_GROUP:
		if (!is_group(text)) {
			opt_err(ld, opt, loc,
			        "'%.*s' is not a group name (a letter or '_', then up to 31 "
			        "letters, digits or '_')",
			        QUOTE_MAX, text);
			return -1;
		}
		return set_string(ld, field, text);
	case OPT_VALUE:
		if (!is_group(text) && !is_number(text)) {
			opt_err(ld, opt, loc,
			        "'%.*s' is neither a group name nor a number such as 1, 2.5 or -3",
			        QUOTE_MAX, text);
			return -1;
		}
		return set_string(ld, field, text);
	case OPT_GLOB:
		if (check_length(ld, opt, text, loc) < 0)
			return -1;
		if (has_control(text)) {
			opt_err(ld, opt, loc, "contains a control character");
			return -1;
		}
		if ((opt->flags & OPT_ABSOLUTE) && text[0] != '/') {
			opt_err(ld, opt, loc, "'%.*s' is not an absolute path", QUOTE_MAX, text);
			return -1;
		}
		if ((opt->flags & OPT_BASENAME) && strchr(text, '/') != NULL) {
			opt_err(ld, opt, loc,
			        "'%.*s' contains '/', but it is matched against base names",
			        QUOTE_MAX, text);
			return -1;
		}
		return set_string(ld, field, text);
	case OPT_URL: {
		size_t n = strlen(text);

		if (check_length(ld, opt, text, loc) < 0)
			return -1;
		/* The same rule the sender applies, so that `check` never passes what `run`
		 * refuses. */
		if (config_check_api_base(text, why, sizeof(why)) != 0) {
			opt_err(ld, opt, loc, "%s", why);
			return -1;
		}
		/* The API's paths are appended with their own '/'. */
		while (n > 0 && text[n - 1] == '/')
			n--;
		path = strndup(text, n);
		if (path == NULL) {
			ld->oom = true;
			return -1;
		}
		free(*(char **)field);
		*(char **)field = path;
		return 0;
	}
	case OPT_INT:
	case OPT_SIZE:
	case OPT_DURATION_MS:
	case OPT_DURATION_S:
		return parse_number(ld, opt, text, loc, field);
	case OPT_ENUM:
	case OPT_KEYWORD:
		return set_choice(ld, opt, text, loc, field);
	case OPT_PATTERN:
		if (text[0] == '\0') {
			opt_err(ld, opt, loc, "is empty");
			return -1;
		}
		return set_string(ld, field, text);
	case OPT_ACCOUNT:
		/* The same rule the sender applies. */
		if (config_check_account(text, why, sizeof(why)) != 0) {
			opt_err(ld, opt, loc, "'%.*s': %s", QUOTE_MAX, text, why);
			return -1;
		}
		return set_string(ld, field, text);
	case OPT_LISTEN: {
		struct sockaddr_storage sa;
		socklen_t salen;
		int loopback;

		if (text[0] != '\0' &&
		    config_parse_listen(text, &sa, &salen, &loopback, why, sizeof(why)) != 0) {
			opt_err(ld, opt, loc, "'%.*s': %s", QUOTE_MAX, text, why);
			return -1;
		}
		return set_string(ld, field, text);
	}
	case OPT_PATH:
	case OPT_PATTERN_FILE:
		break;
	}

	/* Paths. */
	if (check_length(ld, opt, text, loc) < 0)
		return -1;
	if (has_control(text)) {
		opt_err(ld, opt, loc, "contains a control character");
		return -1;
	}
	dir = path_dir(loc.file != NULL ? loc.file : ld->cfg->main_file);
	if (dir == NULL)
		goto oom;
	path = path_join(dir, text);
	if (path == NULL)
		goto oom;
	if (opt->type == OPT_PATTERN_FILE) {
		struct config_rule *r = base;

		content = read_pattern_file(path, why, sizeof(why));
		if (content == NULL) {
			opt_err(ld, opt, loc, "%s", why);
			goto out;
		}
		free(r->pattern);
		r->pattern = content;
	}
	free(*(char **)field);
	*(char **)field = path;
	path = NULL;
	rc = 0;
	goto out;
oom:
	ld->oom = true;
out:
	free(dir);
	free(path);
	return rc;
}

static const struct option *option_find(enum sec_kind kind, const char *key)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (options[i].sec == kind && strcmp(options[i].key, key) == 0)
			return &options[i];
	return NULL;
}

static size_t option_index(enum sec_kind kind, const char *key)
{
	return (size_t)(option_find(kind, key) - options);
}

/* ---- reading ---- */

/* libinih's ini_find_chars_or_comment: the first of `chars`, or the ';' of an inline comment
 * (whitespace then ';'), or the end. */
static char *find_chars_or_comment(char *s, const char *chars)
{
	bool was_space = false;

	while (*s && (chars == NULL || strchr(chars, *s) == NULL) && !(was_space && *s == ';')) {
		was_space = isspace((unsigned char)*s);
		s++;
	}
	return s;
}

static char *rstrip(char *s)
{
	char *p = s + strlen(s);

	while (p > s && isspace((unsigned char)p[-1]))
		*--p = '\0';
	return s;
}

static char *lskip(char *s)
{
	while (*s && isspace((unsigned char)*s))
		s++;
	return s;
}

/* Classifies `line` (modified) as libinih r55 will, given whether a key was seen since the
 * last section header (`prev_key`). For LINE_SECTION, *text is the header between the brackets;
 * for LINE_KEY, the key name. */
/* Whether `text` starts with "known_key =" (or ':'), for any section's key. */
static bool looks_like_key(const char *text)
{
	size_t n = 0;

	while ((text[n] >= 'a' && text[n] <= 'z') || text[n] == '_')
		n++;
	if (n == 0)
		return false;
	for (size_t i = n; text[i] != '\0'; i++) {
		if (text[i] == '=' || text[i] == ':')
			break;
		if (text[i] != ' ' && text[i] != '\t')
			return false;
	}
	if (strchr(text + n, '=') == NULL && strchr(text + n, ':') == NULL)
		return false;
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (strlen(options[i].key) == n && strncmp(options[i].key, text, n) == 0)
			return true;
	return false;
}

static enum line_kind classify(char *line, bool prev_key, char **text)
{
	char *start = rstrip(lskip(line)), *end;

	if (*start == '\0' || *start == ';' || *start == '#')
		return LINE_BLANK;
	if (prev_key && start > line)
		return LINE_CONT;
	if (*start == '[') {
		end = find_chars_or_comment(start + 1, "]");
		if (*end != ']')
			return LINE_BAD;
		*end = '\0';
		*text = start + 1;
		return LINE_SECTION;
	}
	end = find_chars_or_comment(start, "=:");
	if (*end != '=' && *end != ':')
		return LINE_BAD;
	*end = '\0';
	*text = rstrip(start);
	return LINE_KEY;
}

static struct raw_sec *raw_sec_find(struct raw_sec **list, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i]->name, name) == 0)
			return list[i];
	return NULL;
}

static void ld_section(struct loader *ld, char *header)
{
	char *kind = lskip(rstrip(header)), *name = kind;
	struct raw_sec ***list, *rs, *first, **grown;
	size_t *n;
	enum sec_kind sk;

	ld->cur = NULL;
	ld->sec = NULL;
	ld->sec_ignored = true;
	while (*name && !isspace((unsigned char)*name))
		name++;
	if (*name) {
		*name = '\0';
		name = lskip(name + 1);
	}
	if (strcmp(kind, "agent") == 0 && *name == '\0') {
		rs = &ld->agent;
		goto found;
	}
	if (strcmp(kind, "stripe") == 0 && *name == '\0') {
		rs = &ld->stripe;
		goto found;
	}
	if (strcmp(kind, "source") == 0) {
		sk = SEC_SOURCE;
		list = &ld->sources;
		n = &ld->n_sources;
	} else if (strcmp(kind, "rule") == 0) {
		sk = SEC_RULE;
		list = &ld->rules;
		n = &ld->n_rules;
	} else {
		ld_err(ld, ld->file, ld->lineno,
		       "unknown section [%.*s%s%.*s] (known: [agent], [stripe], [source NAME], "
		       "[rule NAME])",
		       QUOTE_MAX, kind, *name ? " " : "", QUOTE_MAX, name);
		return;
	}
	if (!is_name(name, 1, 100)) {
		ld_err(ld, ld->file, ld->lineno,
		       "unknown section [%s%s%.*s] (NAME of [%s NAME] must be 1..100 characters "
		       "of %s)",
		       kind, *name ? " " : "", QUOTE_MAX, name, kind, NAME_CHARS);
		return;
	}
	first = raw_sec_find(*list, *n, name);
	if (first != NULL) {
		ld_err(ld, ld->file, ld->lineno, "duplicate section [%s %s] (first at %s:%u)", kind,
		       name, first->loc.file, first->loc.line);
		return;
	}
	rs = calloc(1, sizeof(*rs));
	grown = realloc(*list, (*n + 1) * sizeof(**list));
	if (rs == NULL || grown == NULL || (rs->name = strdup(name)) == NULL) {
		if (grown != NULL)
			*list = grown;
		free(rs);
		ld->oom = true;
		return;
	}
	*list = grown;
	(*list)[(*n)++] = rs;
	rs->kind = sk;
found:
	if (rs->loc.file == NULL)
		rs->loc = (struct config_loc){ld->file, ld->lineno};
	ld->sec = rs;
	ld->sec_ignored = false;
}

/* A "key = value" line; value NULL: the line was rejected (bad), but the key counts as set. */
static void ld_key(struct loader *ld, const char *name, const char *value)
{
	const struct option *opt;
	struct raw *raw;
	char label[160];

	ld->cur = NULL;
	if (*name == '\0') {
		ld_err(ld, ld->file, ld->lineno, "missing key name before '='");
		return;
	}
	if (ld->sec == NULL) {
		if (!ld->sec_ignored)
			ld_err(ld, ld->file, ld->lineno,
			       "key '%.*s' is outside of any section (start with [agent], "
			       "[stripe], [source NAME] or [rule NAME])",
			       QUOTE_MAX, name);
		return;
	}
	sec_label(ld->sec, label, sizeof(label));
	opt = option_find(ld->sec->kind, name);
	if (opt == NULL) {
		char where[160] = "";
		size_t used = 0;

		for (int k = 0; k < SEC_N; k++) {
			if (option_find((enum sec_kind)k, name) == NULL)
				continue;
			used += (size_t)snprintf(where + used, sizeof(where) - used, "%s%s",
			                         used ? ", " : " (it belongs in ", sec_names[k]);
		}
		if (used > 0)
			snprintf(where + used, sizeof(where) - used, ")");
		ld_err(ld, ld->file, ld->lineno, "unknown key '%.*s' in %s%s", QUOTE_MAX, name,
		       label, where);
		return;
	}
	raw = &ld->sec->vals[opt - options];
	if (raw->loc.file != NULL) {
		ld_err(ld, ld->file, ld->lineno, "duplicate key '%s' in %s (first set at %s:%u)",
		       opt->key, label, raw->loc.file, raw->loc.line);
		return;
	}
	if ((opt->flags & OPT_MAIN_ONLY) && !ld->is_main) {
		ld_err(ld, ld->file, ld->lineno, "key '%s' may only be set in the main file %s",
		       opt->key, ld->cfg->main_file);
		return;
	}
	raw->loc = (struct config_loc){ld->file, ld->lineno};
	if (value == NULL) {
		raw->bad = true;
	} else if ((raw->text = strdup(value)) == NULL) {
		raw->bad = true;
		ld->oom = true;
	}
	ld->cur = raw;
}

static void raw_append(struct loader *ld, struct raw *raw, const char *piece)
{
	size_t a, b;
	char *n;

	if (raw == NULL || raw->bad)
		return;
	a = strlen(raw->text);
	b = strlen(piece);
	n = realloc(raw->text, a + b + 1);
	if (n == NULL) {
		ld->oom = true;
		raw->bad = true;
		return;
	}
	memcpy(n + a, piece, b + 1);
	raw->text = n;
}

/* libinih's reader: one physical line per call, so that ld->lineno is the line libinih's
 * handler is about to be called for (Debian's build does not pass line numbers). Lines libinih
 * cannot take whole are reported here and replaced by an empty line, which it ignores. */
static char *ld_read(char *str, int num, void *stream)
{
	struct loader *ld = stream;
	enum line_kind kind;
	char *line, *text = NULL;
	size_t len;
	ssize_t n;
	bool whole = true;

	ld->kind = LINE_BLANK;
	errno = 0;
	n = getline(&ld->buf, &ld->cap, ld->fp);
	if (n < 0) {
		int e = errno;

		if (!feof(ld->fp))
			ld_err(ld, ld->file, 0, "read error: %s", strerror(e ? e : EIO));
		return NULL;
	}
	ld->lineno++;
	line = ld->buf;
	len = (size_t)n;
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	line[len] = '\0';
	if (ld->lineno == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
		line += 3;
		len -= 3;
	}
	if (memchr(line, '\0', len) != NULL) {
		ld_err(ld, ld->file, ld->lineno, "line contains a NUL byte");
		str[0] = '\0';
		return str;
	}
	if (num < 2 || len > (size_t)num - 1) {
		ld_err(ld, ld->file, ld->lineno,
		       "line longer than %d bytes (libinih's limit): continue the value on "
		       "indented lines, or use pattern_file",
		       num - 1);
		whole = false;
	} else {
		memcpy(str, line, len + 1);
	}

	kind = classify(line, ld->ini_prev_key, &text);
	if (!whole) {
		/* libinih sees an empty line: its state is unchanged, but keep the line's
		 * section or key so that what follows is not reported as well. */
		if (kind == LINE_SECTION)
			ld_section(ld, text);
		else if (kind == LINE_KEY)
			ld_key(ld, text, NULL);
		else if (kind == LINE_CONT && ld->cur != NULL)
			ld->cur->bad = true;
		str[0] = '\0';
		return str;
	}
	ld->kind = kind;
	switch (kind) {
	case LINE_CONT:
		/* libinih r55 keeps " ;" comments in continuation lines (later releases drop
		 * them): drop them here so that ';' means the same on every line. */
		*find_chars_or_comment(lskip(str), NULL) = '\0';
		/* An indented "exclude = *.1" would silently become part of the previous
		 * value: say so instead. */
		if (looks_like_key(lskip(str))) {
			ld_err(
			    ld, ld->file, ld->lineno,
			    "indented line looks like a key, but a line starting with whitespace "
			    "continues the previous value: remove the indentation");
			if (ld->cur != NULL)
				ld->cur->bad = true;
		}
		break;
	case LINE_SECTION:
		ld->ini_prev_key = false;
		ld_section(ld, text);
		break;
	case LINE_KEY:
		ld->ini_prev_key = text[0] != '\0';
		break;
	case LINE_BAD:
		if (ld->first_bad_line == 0)
			ld->first_bad_line = ld->lineno;
		ld_err(ld, ld->file, ld->lineno,
		       "expected a [section] header, 'key = value', or a comment");
		break;
	default:
		break;
	}
	return str;
}

static int ld_handle(void *user, const char *section, const char *name, const char *value)
{
	struct loader *ld = user;

	/* libinih cuts section names to 49 bytes: the reader keeps the section instead. */
	(void)section;
	if (value == NULL)
		value = "";
	if (ld->kind == LINE_CONT)
		raw_append(ld, ld->cur, value);
	else
		ld_key(ld, name, value);
	return 1;
}

static char *files_add(struct loader *ld, const char *path)
{
	struct config *cfg = ld->cfg;
	char **grown, *copy;

	grown = realloc(cfg->files, (cfg->n_files + 1) * sizeof(*grown));
	if (grown == NULL)
		return NULL;
	cfg->files = grown;
	copy = strdup(path);
	if (copy == NULL)
		return NULL;
	cfg->files[cfg->n_files++] = copy;
	return copy;
}

/* Reads the open stream `fp` (closed here) as the file `path`. Returns 0, or -1 if it could not
 * even be recorded (out of memory). */
static int ld_stream(struct loader *ld, FILE *fp, const char *path, bool is_main)
{
	int rc;

	ld->fp = fp;
	ld->file = files_add(ld, path);
	if (ld->file == NULL) {
		ld->oom = true;
		fclose(ld->fp);
		ld->fp = NULL;
		return -1;
	}
	ld->is_main = is_main;
	ld->lineno = 0;
	ld->first_bad_line = 0;
	ld->ini_prev_key = false;
	ld->sec = NULL;
	ld->sec_ignored = false;
	ld->cur = NULL;
	rc = ini_parse_stream(ld_read, ld, ld_handle, ld);
	if (rc == -2)
		ld->oom = true;
	else if (rc > 0 && (unsigned)rc != ld->first_bad_line)
		ld_err(ld, ld->file, (unsigned)rc, "syntax error");
	fclose(ld->fp);
	ld->fp = NULL;
	return 0;
}

static int ld_file(struct loader *ld, const char *path, bool is_main)
{
	FILE *fp = fopen(path, "re");

	if (fp == NULL) {
		ld_err(ld, path, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	return ld_stream(ld, fp, path, is_main);
}

static int conf_filter(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	/* As glob(3) "*.conf": hidden files do not match. */
	return d->d_name[0] != '.' && n > 5 && strcmp(d->d_name + n - 5, ".conf") == 0;
}

/* Byte order, not the locale's collation: the order must not depend on LANG. */
static int conf_cmp(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/* Sets agent.include_dir, which ld_apply leaves alone: the drop-ins are looked for before the
 * other keys are validated. Returns 0, or -1 if it is not set (an error was recorded). */
static int ld_include_dir(struct loader *ld)
{
	const struct option *opt = option_find(SEC_AGENT, "include_dir");
	struct raw *raw = &ld->agent.vals[opt - options];

	if (raw->bad)
		return -1;
	return opt_parse(ld, opt, raw->loc.file ? raw->text : opt->def, raw->loc, &ld->cfg->agent);
}

static void ld_dropins(struct loader *ld)
{
	const struct option *opt = option_find(SEC_AGENT, "include_dir");
	struct config_loc loc = ld->agent.vals[opt - options].loc;
	struct dirent **names = NULL;
	struct stat main_st, st;
	const char *dir;
	bool have_main;
	int n;

	if (ld_include_dir(ld) < 0)
		return;
	dir = ld->cfg->agent.include_dir;
	n = scandir(dir, &names, conf_filter, conf_cmp);
	if (n < 0) {
		if (errno == ENOENT)
			return;
		if (loc.file != NULL)
			ld_err(ld, loc.file, loc.line,
			       "key 'include_dir': cannot read directory %s: %s", dir,
			       strerror(errno));
		else
			ld_err(ld, dir, 0, "cannot read include directory: %s", strerror(errno));
		return;
	}
	have_main = stat(ld->cfg->main_file, &main_st) == 0;
	for (int i = 0; i < n; i++) {
		char *path = path_join(dir, names[i]->d_name);

		if (path == NULL) {
			ld->oom = true;
		} else if (stat(path, &st) != 0) {
			/* A dangling symlink (a drop-in whose target was removed) would silently
			 * drop its rules. */
			ld_err(ld, path, 0, "cannot read drop-in: %s", strerror(errno));
		} else if (S_ISREG(st.st_mode) && !(have_main && st.st_dev == main_st.st_dev &&
		                                    st.st_ino == main_st.st_ino)) {
			/* The main file inside its own include dir is not read twice. */
			ld_file(ld, path, false);
		}
		free(path);
		free(names[i]);
	}
	free(names);
}

/* ---- validation, once every file is read ---- */

/* Validates every key of `rs` (or applies its default) into `base`. */
static void ld_apply(struct loader *ld, struct raw_sec *rs, void *base)
{
	char label[160];

	sec_label(rs, label, sizeof(label));
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option *opt = &options[i];
		struct raw *raw = &rs->vals[i];
		struct config_loc *locp =
		    opt->loc_off ? (struct config_loc *)((char *)base + opt->loc_off) : NULL;

		if (opt->sec != rs->kind || (opt->flags & OPT_MAIN_ONLY))
			continue;
		if (raw->loc.file != NULL) {
			if (locp != NULL)
				*locp = raw->loc;
			if (!raw->bad && opt_parse(ld, opt, raw->text, raw->loc, base) < 0)
				raw->invalid = true;
			continue;
		}
		/* Not set: point at the section (pattern and pattern_file share a loc). */
		if (locp != NULL && locp->file == NULL)
			*locp = rs->loc;
		if (opt->def != NULL) {
			if (opt_parse(ld, opt, opt->def, (struct config_loc){NULL, 0}, base) < 0)
				raw->invalid = true;
		} else if (opt->flags & OPT_REQUIRED) {
			ld_err(ld, rs->loc.file, rs->loc.line, "%s: missing required key '%s'",
			       label, opt->key);
		}
	}
}

static void ld_check_stripe(struct loader *ld)
{
	size_t imin = option_index(SEC_STRIPE, "retry_min_backoff");
	size_t imax = option_index(SEC_STRIPE, "retry_max_backoff");
	struct raw *rmin = &ld->stripe.vals[imin], *rmax = &ld->stripe.vals[imax];
	const struct config_stripe *s = &ld->cfg->stripe;
	struct raw *at = rmax->loc.file ? rmax : rmin;
	char a[32], b[32];

	if (rmin->bad || rmin->invalid || rmax->bad || rmax->invalid)
		return;
	if (s->retry_max_backoff_ms >= s->retry_min_backoff_ms)
		return;
	fmt_ms(s->retry_max_backoff_ms, a, sizeof(a));
	fmt_ms(s->retry_min_backoff_ms, b, sizeof(b));
	if (at == rmax)
		ld_err(ld, at->loc.file, at->loc.line,
		       "key 'retry_max_backoff': %s is less than retry_min_backoff (%s)", a, b);
	else
		ld_err(ld, at->loc.file, at->loc.line,
		       "key 'retry_min_backoff': %s is more than retry_max_backoff (%s)", b, a);
}

/* A constant value that is zero (is_number's syntax: only zeros, a sign and a point). */
static bool is_zero_number(const char *s)
{
	return is_number(s) && strspn(s, "-0.") == strlen(s);
}

/* What only makes sense together with aggregate: a grace set for a rule that does not
 * aggregate was meant for one that does, and a constant 0 summed makes windows that bill
 * nothing, each still a meter event. Both are mistakes that change what is billed without a
 * word, so they are refused where they are written. */
static void ld_check_aggregate(struct loader *ld, struct raw_sec *rs, const struct config_rule *r)
{
	struct raw *agg = &rs->vals[option_index(SEC_RULE, "aggregate")];
	struct raw *grace = &rs->vals[option_index(SEC_RULE, "aggregate_grace")];
	struct raw *val = &rs->vals[option_index(SEC_RULE, "value")];

	if (agg->bad || agg->invalid)
		return;
	if (r->aggregate_s == 0 && grace->loc.file != NULL && !grace->bad && !grace->invalid)
		ld_err(ld, grace->loc.file, grace->loc.line,
		       "key 'aggregate_grace': [rule %s] does not aggregate (aggregate = 0), so a "
		       "grace has no effect; set aggregate, or remove aggregate_grace",
		       rs->name);
	if (r->aggregate_s > 0 && r->value != NULL && val->loc.file != NULL && !val->bad &&
	    !val->invalid && is_zero_number(r->value))
		ld_err(
		    ld, val->loc.file, val->loc.line,
		    "key 'value': [rule %s] aggregates a constant %s: every window's total would "
		    "be 0 and bill nothing; give a group or a non-zero number",
		    rs->name, r->value);
}

/* A timestamp_format written for a rule without a timestamp group is never used: the rule's
 * events are stamped with the time each line is read, not the time the line says, which moves
 * usage into another billing period without a word (lines read at start from a day-old log, a
 * backfill with --stamp-now). Refused where it is written, as a grace without aggregate is. */
static void ld_check_timestamp(struct loader *ld, struct raw_sec *rs, const struct config_rule *r)
{
	struct raw *ts = &rs->vals[option_index(SEC_RULE, "timestamp")];
	struct raw *fmt = &rs->vals[option_index(SEC_RULE, "timestamp_format")];

	if (r->timestamp != NULL || ts->loc.file != NULL || fmt->loc.file == NULL || fmt->bad ||
	    fmt->invalid)
		return;
	ld_err(ld, fmt->loc.file, fmt->loc.line,
	       "key 'timestamp_format': [rule %s] has no timestamp group (timestamp =), so its "
	       "events are stamped with the time each line is read and the format has no effect; "
	       "set timestamp to the group that holds the time, or remove timestamp_format",
	       rs->name);
}

size_t config_warnings(const struct config *cfg, void (*cb)(const char *msg, void *ud), void *ud)
{
	const struct option *stream = option_find(SEC_STRIPE, "meter_events_base");
	const struct option *api = option_find(SEC_STRIPE, "api_base");
	const struct config_stripe *s = &cfg->stripe;
	char msg[1024];
	size_t n = 0;

	/* The stream's host is a second base URL: one pointed at a test double or a proxy with
	 * the other left at Stripe's would send the key and the events to real Stripe. */
	if (s->api == CONFIG_API_V2 && s->meter_events_base != NULL && s->api_base != NULL &&
	    strcmp(s->meter_events_base, stream->def) == 0 && strcmp(s->api_base, api->def) != 0) {
		snprintf(msg, sizeof(msg),
		         "%s:%u: api_base is %s but meter_events_base is left at Stripe's %s: with "
		         "api = v2 the meter events go there, not to api_base; set "
		         "meter_events_base too",
		         s->api_base_loc.file != NULL ? s->api_base_loc.file : "(default)",
		         s->api_base_loc.line, s->api_base, stream->def);
		cb(msg, ud);
		n++;
	}
	return n;
}

static void ld_rule(struct loader *ld, struct raw_sec *rs, struct config_rule *r)
{
	size_t ip = option_index(SEC_RULE, "pattern"), ipf = option_index(SEC_RULE, "pattern_file");
	size_t isrc = option_index(SEC_RULE, "source");
	struct raw *p = &rs->vals[ip], *pf = &rs->vals[ipf], *src = &rs->vals[isrc];
	long idx;

	if (p->loc.file != NULL && pf->loc.file != NULL) {
		ld_err(ld, pf->loc.file, pf->loc.line,
		       "key 'pattern_file': [rule %s] also has a pattern (%s:%u): give one of "
		       "pattern and pattern_file",
		       rs->name, p->loc.file, p->loc.line);
		pf->bad = true; /* not read */
	} else if (p->loc.file == NULL && pf->loc.file == NULL) {
		ld_err(ld, rs->loc.file, rs->loc.line,
		       "[rule %s]: missing required key 'pattern' (or 'pattern_file')", rs->name);
	}
	ld_apply(ld, rs, r);
	ld_check_aggregate(ld, rs, r);
	ld_check_timestamp(ld, rs, r);
	if (r->source == NULL)
		return;
	idx = config_source_find(ld->cfg, r->source);
	if (idx < 0)
		ld_err(ld, src->loc.file, src->loc.line, "key 'source': there is no [source %s]",
		       r->source);
	else
		r->source_index = (size_t)idx;
}

static void ld_finish(struct loader *ld)
{
	struct config *cfg = ld->cfg;

	ld_apply(ld, &ld->agent, &cfg->agent);
	ld_apply(ld, &ld->stripe, &cfg->stripe);
	ld_check_stripe(ld);
	if (ld->n_sources > 0) {
		cfg->sources = calloc(ld->n_sources, sizeof(*cfg->sources));
		if (cfg->sources == NULL) {
			ld->oom = true;
			return;
		}
	}
	for (size_t i = 0; i < ld->n_sources; i++) {
		struct config_source *s = &cfg->sources[i];

		s->name = strdup(ld->sources[i]->name);
		if (s->name == NULL) {
			ld->oom = true;
			return;
		}
		s->loc = ld->sources[i]->loc;
		cfg->n_sources++;
		ld_apply(ld, ld->sources[i], s);
	}
	if (ld->n_rules > 0) {
		cfg->rules = calloc(ld->n_rules, sizeof(*cfg->rules));
		if (cfg->rules == NULL) {
			ld->oom = true;
			return;
		}
	}
	for (size_t i = 0; i < ld->n_rules; i++) {
		struct config_rule *r = &cfg->rules[i];

		r->name = strdup(ld->rules[i]->name);
		if (r->name == NULL) {
			ld->oom = true;
			return;
		}
		r->loc = ld->rules[i]->loc;
		cfg->n_rules++;
		ld_rule(ld, ld->rules[i], r);
	}
}

static int cerr_cmp(const void *a, const void *b)
{
	const struct cerr *x = a, *y = b;

	if (x->file_idx != y->file_idx)
		return x->file_idx < y->file_idx ? -1 : 1;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Writes the errors, in the order of the files and lines, whole lines only. */
static void ld_report(struct loader *ld, char *err, size_t errlen)
{
	size_t more = ld->n_dropped;

	err_set(err, errlen, "%s", "");
	if (err == NULL || errlen == 0)
		return;
	qsort(ld->errs, ld->n_errs, sizeof(*ld->errs), cerr_cmp);
	for (size_t i = 0; i < ld->n_errs; i++) {
		size_t used = strlen(err), need = strlen(ld->errs[i].msg) + 1;

		/* Keep room for the count of the ones left out. */
		if (used + need + 40 >= errlen) {
			more += ld->n_errs - i;
			break;
		}
		err_append(err, errlen, "%s", ld->errs[i].msg);
	}
	if (ld->oom)
		err_append(err, errlen, "out of memory while reading the configuration");
	if (more > 0)
		err_append(err, errlen, "(%zu more errors)", more);
}

static void raw_sec_clear(struct raw_sec *rs)
{
	if (rs == NULL)
		return;
	free(rs->name);
	for (size_t i = 0; i < N_OPTIONS; i++)
		free(rs->vals[i].text);
}

static void ld_clear(struct loader *ld)
{
	raw_sec_clear(&ld->agent);
	raw_sec_clear(&ld->stripe);
	for (size_t i = 0; i < ld->n_sources; i++) {
		raw_sec_clear(ld->sources[i]);
		free(ld->sources[i]);
	}
	for (size_t i = 0; i < ld->n_rules; i++) {
		raw_sec_clear(ld->rules[i]);
		free(ld->rules[i]);
	}
	free(ld->sources);
	free(ld->rules);
	for (size_t i = 0; i < ld->n_errs; i++)
		free(ld->errs[i].msg);
	free(ld->errs);
	free(ld->buf);
	free(ld->main_dir);
}

/* The main file `path` is read from `text` if it is not NULL (and no drop-ins), else from the
 * file system (and then the drop-ins). */
static struct config *load(const char *path, const char *text, char *err, size_t errlen)
{
	struct loader ld = {.agent.kind = SEC_AGENT, .stripe.kind = SEC_STRIPE};
	struct config *cfg = NULL;
	int rc;

	err_set(err, errlen, "%s", "");
	if (path == NULL || path[0] == '\0') {
		err_set(err, errlen, "no configuration file given");
		return NULL;
	}
	cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL || (cfg->main_file = strdup(path)) == NULL) {
		free(cfg);
		err_set(err, errlen, "out of memory");
		return NULL;
	}
	ld.cfg = cfg;
	if (text == NULL) {
		rc = ld_file(&ld, path, true);
		if (rc == 0)
			ld_dropins(&ld);
	} else {
		/* fmemopen(3) takes a buffer it may write to, and refuses 0 bytes in older C
		 * libraries: a copy, and a lone newline for nothing, which reads the same. */
		char *copy = strdup(text[0] != '\0' ? text : "\n");
		FILE *fp = copy != NULL ? fmemopen(copy, strlen(copy), "r") : NULL;

		if (fp == NULL) {
			ld.oom = true;
			rc = -1;
		} else {
			rc = ld_stream(&ld, fp, path, true);
			/* Validated and set as config_load does, but not read. */
			if (rc == 0)
				ld_include_dir(&ld);
		}
		free(copy);
	}
	if (rc == 0)
		ld_finish(&ld);
	if (ld.n_errs > 0 || ld.oom || ld.n_dropped > 0) {
		ld_report(&ld, err, errlen);
		config_free(cfg);
		cfg = NULL;
	}
	ld_clear(&ld);
	return cfg;
}

struct config *config_load(const char *path, char *err, size_t errlen)
{
	return load(path, NULL, err, errlen);
}

struct config *config_load_text(const char *text, const char *name, char *err, size_t errlen)
{
	if (text == NULL) {
		err_set(err, errlen, "no configuration text given");
		return NULL;
	}
	return load(name, text, err, errlen);
}

/* Whether the option's field is a char * that config_free owns. Every type is listed, so that a
 * new one cannot be freed, or leaked, without the compiler saying so (-Wswitch). */
static bool opt_is_string(const struct option *opt)
{
	switch (opt->type) {
	case OPT_INT:
	case OPT_SIZE:
	case OPT_DURATION_MS:
	case OPT_DURATION_S:
	case OPT_ENUM:
		return false;
	case OPT_STRING:
	case OPT_NAME:
	case OPT_SOURCE:
	case OPT_GROUP:
	case OPT_VALUE:
	case OPT_PATH:
	case OPT_GLOB:
	case OPT_URL:
	case OPT_KEYWORD:
	case OPT_PATTERN:
	case OPT_PATTERN_FILE:
	case OPT_ACCOUNT:
	case OPT_LISTEN:
		return true;
	}
	return false;
}

/* Frees the string fields of one section's struct, as the option table describes them. */
static void sec_free(enum sec_kind kind, void *base)
{
	for (size_t i = 0; i < N_OPTIONS; i++) {
		if (options[i].sec == kind && opt_is_string(&options[i]))
			free(*(char **)((char *)base + options[i].off));
	}
}

void config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	sec_free(SEC_AGENT, &cfg->agent);
	sec_free(SEC_STRIPE, &cfg->stripe);
	for (size_t i = 0; i < cfg->n_sources; i++) {
		sec_free(SEC_SOURCE, &cfg->sources[i]);
		free(cfg->sources[i].name);
	}
	free(cfg->sources);
	for (size_t i = 0; i < cfg->n_rules; i++) {
		sec_free(SEC_RULE, &cfg->rules[i]);
		free(cfg->rules[i].name);
	}
	free(cfg->rules);
	for (size_t i = 0; i < cfg->n_files; i++)
		free(cfg->files[i]);
	free(cfg->files);
	free(cfg->main_file);
	free(cfg);
}

long config_source_find(const struct config *cfg, const char *name)
{
	if (cfg == NULL || name == NULL)
		return -1;
	for (size_t i = 0; i < cfg->n_sources; i++)
		if (cfg->sources[i].name != NULL && strcmp(cfg->sources[i].name, name) == 0)
			return (long)i;
	return -1;
}

/* ---- comparing two configurations (a reload) ---- */

/* The struct of section `sec` in cfg: [source NAME] and [rule NAME] by name. NULL if absent. */
static const void *section_of(const struct config *cfg, enum sec_kind sec, const char *name)
{
	long i;

	switch (sec) {
	case SEC_AGENT:
		return &cfg->agent;
	case SEC_STRIPE:
		return &cfg->stripe;
	case SEC_SOURCE:
		i = config_source_find(cfg, name);
		return i >= 0 ? &cfg->sources[i] : NULL;
	case SEC_RULE:
		for (size_t k = 0; name != NULL && k < cfg->n_rules; k++)
			if (cfg->rules[k].name != NULL && strcmp(cfg->rules[k].name, name) == 0)
				return &cfg->rules[k];
		return NULL;
	default:
		return NULL;
	}
}

/* Whether the option has the same value in the section structs a and b, as stored. */
static bool opt_same(const struct option *opt, const void *a, const void *b)
{
	const char *fa = (const char *)a + opt->off, *fb = (const char *)b + opt->off;
	const char *sa, *sb;

	switch (opt->type) {
	case OPT_INT:
	case OPT_SIZE:
	case OPT_DURATION_MS:
	case OPT_DURATION_S:
		return *(const int64_t *)(const void *)fa == *(const int64_t *)(const void *)fb;
	case OPT_ENUM:
		return *(const int *)(const void *)fa == *(const int *)(const void *)fb;
	default: /* every other type is a string */
		sa = *(char *const *)(const void *)fa;
		sb = *(char *const *)(const void *)fb;
		return sa == NULL || sb == NULL ? sa == sb : strcmp(sa, sb) == 0;
	}
}

long config_changes(const struct config *a, const struct config *b, const char *section,
                    const char *name, const char **keys, size_t max)
{
	static const char *const words[SEC_N] = {"agent", "stripe", "source", "rule"};
	const void *sa, *sb;
	long n = 0;
	int sec = -1;

	for (int k = 0; section != NULL && k < SEC_N; k++)
		if (strcmp(section, words[k]) == 0)
			sec = k;
	if (a == NULL || b == NULL || sec < 0)
		return -1;
	sa = section_of(a, (enum sec_kind)sec, name);
	sb = section_of(b, (enum sec_kind)sec, name);
	if (sa == NULL || sb == NULL)
		return -1;
	/* The option table, not a list of fields: an option added later is compared too. */
	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
		if (options[i].sec != (enum sec_kind)sec || opt_same(&options[i], sa, sb))
			continue;
		if (keys != NULL && (size_t)n < max)
			keys[n] = options[i].key;
		n++;
	}
	return n;
}

/* ---- documentation ---- */

static void opt_default(const struct option *opt, char *buf, size_t len)
{
	if (opt->def != NULL)
		snprintf(buf, len, "%s", opt->def);
	else if (opt->flags & OPT_REQUIRED)
		snprintf(buf, len, "(required)");
	else
		snprintf(buf, len, "(none)");
}

static void opt_bounds(const struct option *opt, char *buf, size_t len)
{
	switch (opt->type) {
	case OPT_INT:
	case OPT_SIZE:
	case OPT_DURATION_MS:
	case OPT_DURATION_S:
		if (opt->flags & OPT_AUTO) {
			char b[80];

			fmt_bounds(opt, b, sizeof(b));
			snprintf(buf, len, "auto, or %s", b);
		} else {
			fmt_bounds(opt, buf, len);
		}
		break;
	case OPT_ACCOUNT:
		snprintf(buf, len, "acct_ then letters and digits");
		break;
	case OPT_LISTEN:
		snprintf(buf, len, "IPv4:PORT or [IPv6]:PORT, or empty");
		break;
	case OPT_STRING:
		snprintf(buf, len, "%lld..%lld bytes", (long long)opt->min, (long long)opt->max);
		break;
	case OPT_NAME:
	case OPT_SOURCE:
		snprintf(buf, len, "%lld..%lld of %s", (long long)opt->min, (long long)opt->max,
		         NAME_CHARS);
		break;
	case OPT_GROUP:
		snprintf(buf, len, "A-Za-z_ then up to 31 of A-Za-z0-9_");
		break;
	case OPT_VALUE:
		snprintf(buf, len, "group name, or a number such as 1, 2.5, -3");
		break;
	case OPT_GLOB:
		snprintf(buf, len, "%s",
		         (opt->flags & OPT_ABSOLUTE)   ? "absolute"
		         : (opt->flags & OPT_BASENAME) ? "no '/'"
		                                       : "");
		break;
	case OPT_URL:
		snprintf(buf, len, "https://..., or http://127.0.0.1[:PORT]");
		break;
	case OPT_ENUM:
	case OPT_KEYWORD:
		choices_list(opt, buf, len);
		break;
	case OPT_PATTERN:
		snprintf(buf, len, "non-empty");
		break;
	case OPT_PATH:
	case OPT_PATTERN_FILE:
		snprintf(buf, len, "relative to the file's directory");
		break;
	}
}

/* A Markdown table cell: '|' would end it. */
static void md_cell(FILE *out, const char *s, bool code)
{
	if (code)
		fputc('`', out);
	for (; *s; s++) {
		if (*s == '|')
			fputc('\\', out);
		fputc(*s, out);
	}
	if (code)
		fputc('`', out);
}

void config_print_options(void *out, int markdown)
{
	FILE *fp = out;
	char def[128], bounds[128];

	if (fp == NULL)
		return;
	if (markdown) {
		fputs("| section | key | type | default | bounds | description |\n", fp);
		fputs("|---|---|---|---|---|---|\n", fp);
	}
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option *opt = &options[i];

		opt_default(opt, def, sizeof(def));
		opt_bounds(opt, bounds, sizeof(bounds));
		if (!markdown) {
			fprintf(fp, "%s %s (%s; default %s; %s)\n\t%s\n", sec_names[opt->sec],
			        opt->key, type_names[opt->type], def, bounds, opt->help);
			continue;
		}
		fputs("| ", fp);
		md_cell(fp, sec_names[opt->sec], false);
		fputs(" | ", fp);
		md_cell(fp, opt->key, true);
		fputs(" | ", fp);
		md_cell(fp, type_names[opt->type], false);
		fputs(" | ", fp);
		md_cell(fp, def, opt->def != NULL);
		fputs(" | ", fp);
		md_cell(fp, bounds, false);
		fputs(" | ", fp);
		md_cell(fp, opt->help, false);
		fputs(" |\n", fp);
	}
}
