/* stripe: one request per meter event and the classification of Stripe's answer. The rules
 * come from ../shared/reference/stripe-meter-events.md (Stripe's docs and stripe-node). */
#include "send/stripe.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "util/log.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define STRIPE_KEY_ENV "LOGMETER_STRIPE_API_KEY"
#define STRIPE_CREDENTIALS_ENV "CREDENTIALS_DIRECTORY" /* systemd.exec(5) */
#define STRIPE_CREDENTIAL_NAME "stripe.key"
#define STRIPE_ENDPOINT "/v1/billing/meter_events"
#define STRIPE_METERS_ENDPOINT "/v1/billing/meters"
#define STRIPE_METERS_PAGE 100             /* the largest page Stripe's list endpoints give */
#define STRIPE_LIST_BODY_MAX (1024 * 1024) /* bytes of one page of meters, at most */
/* Stripe's answers are small JSON objects; anything beyond this is not worth keeping. */
#define STRIPE_BODY_MAX (64 * 1024)
#define STRIPE_REASON_BODY_MAX 200 /* bytes of a non-JSON body quoted in a reason */
#define STRIPE_CONNECT_TIMEOUT_MS 10000
#define STRIPE_RL_REASON_MAX 128
#define STRIPE_LOCATION_MAX 256 /* bytes of a redirect's Location quoted in a reason */
/* Reading more than this of a key file cannot give a valid first line. */
#define STRIPE_KEYFILE_READ_MAX (STRIPE_KEY_MAX + 1024)

static const char stripe_exists_prefix[] = "An event already exists with identifier";
/* Stripe's 404 for a path it does not serve: a wrong api_base or proxy, not a bad event. */
static const char stripe_unknown_url_prefix[] = "Unrecognized request URL";

/* A response body being received: `len` bytes in `p` (NUL-terminated), `cap` allocated. */
struct body_buf {
	char *p;
	size_t len, cap;
};

/* Appends up to `n` bytes of `data` to `b`, keeping at most `max` bytes in all. Returns the bytes
 * kept (fewer than `n` once `max` is reached, or if memory runs out). */
static size_t body_append(struct body_buf *b, const char *data, size_t n, size_t max)
{
	size_t take = b->len < max ? max - b->len : 0;

	if (take > n)
		take = n;
	if (take == 0)
		return 0;
	if (b->len + take + 1 > b->cap) {
		size_t cap = b->cap > 0 ? b->cap : 1024;
		char *p;

		while (cap < b->len + take + 1)
			cap *= 2;
		if (cap > max + 1)
			cap = max + 1;
		p = realloc(b->p, cap);
		if (p == NULL)
			return 0;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, take);
	b->len += take;
	b->p[b->len] = '\0';
	return take;
}

struct stripe_request {
	CURL *easy;
	/* The URL parsed once (CURLOPT_CURLU): given as text, libcurl 7.88 parses it again and
	 * prints it back at every transfer, 12,000 instructions of each request (callgrind). */
	CURLU *url;
	struct curl_slist *headers; /* one of them holds the key: wiped in _free */
	/* A meter event's Idempotency-Key: a list node of its own ahead of `headers`, so that a
	 * request used again for another event changes it in place (stripe_request_reuse). */
	struct curl_slist idem;
	char idem_line[32 + EVENT_IDEMPOTENCY_KEY_MAX];
	char form[EVENT_FORM_BODY_MAX]; /* a meter event's body, which libcurl borrows */
	struct event ev;
	void *ud;
	struct body_buf body;   /* the response body, at most STRIPE_BODY_MAX bytes kept */
	int should_retry;       /* Stripe-Should-Retry: 1, 0, -1 absent */
	int replayed;           /* Idempotent-Replayed: true */
	int64_t retry_after_ms; /* Retry-After, -1 if absent */
	int64_t date;           /* Date: seconds since the epoch, 0 if absent or not a date */
	char rl_reason[STRIPE_RL_REASON_MAX]; /* Stripe-Rate-Limited-Reason, "" if absent */
	char location[STRIPE_LOCATION_MAX];   /* Location (of a redirect), "" if absent */
	char errbuf[CURL_ERROR_SIZE];
	char key[STRIPE_KEY_MAX]; /* to scrub it from any text Stripe echoes back */
};

/* ---- small text helpers ---- */

/* A fixed buffer being filled; every append is cut at the end and stays NUL-terminated. */
struct stripe_buf {
	char *p;
	size_t len, cap;
};

static void buf_init(struct stripe_buf *b, char *p, size_t cap)
{
	b->p = p;
	b->len = 0;
	b->cap = cap;
	if (p != NULL && cap > 0)
		p[0] = '\0';
}

static void buf_putc(struct stripe_buf *b, char c)
{
	if (b->p == NULL || b->cap == 0 || b->len + 1 >= b->cap)
		return;
	b->p[b->len++] = c;
	b->p[b->len] = '\0';
}

static void buf_printf(struct stripe_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void buf_printf(struct stripe_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->p == NULL || b->cap == 0 || b->len + 1 >= b->cap)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	b->len += (size_t)n;
	if (b->len >= b->cap)
		b->len = b->cap - 1;
}

/* Appends `n` bytes of `s` as one line: control characters become spaces, and with `ascii`
 * bytes outside printable ASCII become '?'. UTF-8 (from a parsed JSON string) is kept otherwise,
 * but never cut in the middle of a character. */
static void buf_put_clean(struct stripe_buf *b, const char *s, size_t n, int ascii)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f) {
			buf_putc(b, ' ');
		} else if (c < 0x80) {
			buf_putc(b, (char)c);
		} else if (ascii) {
			buf_putc(b, '?');
		} else {
			size_t clen = 1;

			if (c >= 0xf0)
				clen = 4;
			else if (c >= 0xe0)
				clen = 3;
			else if (c >= 0xc0)
				clen = 2;
			if (clen > n - i || b->len + clen + 1 > b->cap)
				return; /* no room for the whole character */
			for (size_t k = 0; k < clen; k++)
				buf_putc(b, s[i + k]);
			i += clen - 1;
		}
	}
}

/* Stripe's 401/403 messages quote the key masked ("sk_test_****1234"); even that is more of the
 * key than logmeter may show, so tokens that look like Stripe keys are replaced. */
static int looks_like_key_at(const char *s, size_t n, size_t i)
{
	static const char *const prefixes[] = {"sk_", "rk_", "pk_"};

	if (i > 0 && (isalnum((unsigned char)s[i - 1]) || s[i - 1] == '_'))
		return 0;
	for (size_t k = 0; k < sizeof(prefixes) / sizeof(prefixes[0]); k++) {
		if (n - i >= 3 && memcmp(s + i, prefixes[k], 3) == 0)
			return 1;
	}
	return 0;
}

/* "Bearer " before a token: whatever follows is a credential, whatever its form. */
static int bearer_at(const char *s, size_t n, size_t i)
{
	return n - i > 7 && strncasecmp(s + i, "bearer ", 7) == 0;
}

/* Appends `n` bytes of `s` as buf_put_clean does (`ascii` likewise), with every token that looks
 * like a Stripe key (sk_, rk_, pk_) or follows "Bearer " replaced by "[redacted]", so that an
 * answer that echoes the request (a proxy's error page) never puts a credential, whole or cut,
 * into a log, a reason or the spool. */
static void buf_put_redacted(struct stripe_buf *b, const char *s, size_t n, int ascii)
{
	size_t i = 0, start = 0;

	while (i < n) {
		int secret = looks_like_key_at(s, n, i);

		if (!secret && bearer_at(s, n, i)) {
			i += 7;
			while (i < n && s[i] == ' ')
				i++;
			secret = i < n;
		}
		if (!secret) {
			i++;
			continue;
		}
		buf_put_clean(b, s + start, i - start, ascii);
		while (i < n && !isspace((unsigned char)s[i]) && s[i] != '\'' && s[i] != '"' &&
		       s[i] != ',' && s[i] != ';' && s[i] != '<')
			i++;
		buf_printf(b, "[redacted]");
		start = i;
	}
	buf_put_clean(b, s + start, n - start, ascii);
}

static void buf_put_message(struct stripe_buf *b, const char *s, size_t n)
{
	buf_put_redacted(b, s, n, 0);
}

/* Overwrites every occurrence of the `klen` bytes of `key` in the `n` bytes of `p` with '*', in
 * place (the length stays, so a body with NUL bytes or cut later never keeps a piece of it). */
static void blank_key(char *p, size_t n, const char *key, size_t klen)
{
	char *hit;

	if (p == NULL || klen == 0)
		return;
	while (n >= klen && (hit = memmem(p, n, key, klen)) != NULL) {
		memset(hit, '*', klen);
		n -= (size_t)(hit - p) + klen;
		p = hit + klen;
	}
}

/* Replaces every occurrence of `key` in `s` with "[redacted]", in place, within `cap` bytes. */
static void scrub_key(char *s, size_t cap, const char *key)
{
	static const char repl[] = "[redacted]";
	size_t klen = strlen(key), rlen = sizeof(repl) - 1;
	char *p;

	if (s == NULL || cap == 0 || klen == 0)
		return;
	while ((p = strstr(s, key)) != NULL) {
		size_t tail = strlen(p + klen);
		size_t pos = (size_t)(p - s);

		if (pos + rlen + tail + 1 > cap)
			tail = cap > pos + rlen + 1 ? cap - pos - rlen - 1 : 0;
		if (pos + rlen + 1 > cap) {
			/* No room even for the marker: cut the text before the key. */
			s[pos] = '\0';
			return;
		}
		memmove(p + rlen, p + klen, tail);
		memcpy(p, repl, rlen);
		p[rlen + tail] = '\0';
	}
}

static void wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		explicit_bzero(p, n);
}

/* ---- key ---- */

/* Trims surrounding whitespace of `s` (`*n` bytes) in place. */
static char *trim(char *s, size_t *n)
{
	while (*n > 0 && isspace((unsigned char)s[*n - 1]))
		(*n)--;
	while (*n > 0 && isspace((unsigned char)s[0])) {
		s++;
		(*n)--;
	}
	return s;
}

/* Whether `k` (`n` bytes, starting sk_ or rk_) is a key's prefix alone: sk_, sk_test_,
 * rk_live_ (docs.stripe.com/api/authentication: "Test mode secret keys have the prefix sk_test_
 * and live mode secret keys have the prefix sk_live_"), with or without its last underscore. */
static int key_is_prefix(const char *k, size_t n)
{
	static const char *const modes[] = {"", "test", "test_", "live", "live_"};

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (n - 3 == strlen(modes[i]) && memcmp(k + 3, modes[i], n - 3) == 0)
			return 1;
	return 0;
}

static int key_store(const char *k, size_t n, const char *from, char *key, size_t keylen, char *err,
                     size_t errlen)
{
	if (n == 0) {
		err_set(err, errlen, "the Stripe API key from %s is empty", from);
		return -1;
	}
	if (n > STRIPE_KEY_MAX - 1 || n + 1 > keylen) {
		err_set(err, errlen,
		        "the Stripe API key from %s is too long (%zu bytes, at most %d)", from, n,
		        STRIPE_KEY_MAX - 1);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)k[i];

		/* It goes into an HTTP header: anything but visible ASCII could split it. */
		if (c <= 0x20 || c >= 0x7f) {
			err_set(err, errlen,
			        "the Stripe API key from %s contains whitespace, control or "
			        "non-ASCII characters",
			        from);
			return -1;
		}
	}
	/* Stripe's secret keys start with sk_, restricted keys with rk_; a publishable key (pk_)
	 * is meant to be public and cannot create meter events (docs.stripe.com/keys). Anything
	 * else (a pasted "NAME=sk_...", a key of another service) would only be refused with a 401
	 * once the agent runs. */
	if (n < 3 || (strncmp(k, "sk_", 3) != 0 && strncmp(k, "rk_", 3) != 0)) {
		err_set(
		    err, errlen,
		    "the Stripe API key from %s is not a secret (sk_...) or restricted (rk_...) "
		    "key%s (docs.stripe.com/keys)",
		    from,
		    strncmp(k, "pk_", 3) == 0 ? ": a publishable key (pk_...) cannot send "
		                                "meter events"
		                              : "");
		return -1;
	}
	if (key_is_prefix(k, n)) {
		err_set(err, errlen,
		        "the Stripe API key from %s is only the prefix %.*s with nothing after it: "
		        "put the whole key there, as the Dashboard shows it (docs.stripe.com/keys)",
		        from, (int)n, k);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)k[i];

		/* Stripe documents only the prefixes (docs.stripe.com/api/authentication); every
		 * key it issues is letters, digits and underscores. Anything else is a paste that
		 * took more than the key (a quote, a comma, a "=..."), refused with a 401 later. */
		if (!isalnum(c) && c != '_') {
			err_set(
			    err, errlen,
			    "the Stripe API key from %s has a character that is not a letter, a "
			    "digit or _ (at byte %zu): Stripe's keys have no other; put the key "
			    "alone there (docs.stripe.com/keys)",
			    from, i + 1);
			return -1;
		}
	}
	memcpy(key, k, n);
	key[n] = '\0';
	return 0;
}

/* The group that may read the key file besides its owner: the packaged layout is 0640
 * root:logmeter, and the service runs as the user logmeter whose primary group is logmeter. */
#define KEY_FILE_GROUP "logmeter"

/* The name of group `gid` into `buf` (`buflen` bytes), or its number where it has none. */
static const char *group_name(gid_t gid, char *buf, size_t buflen)
{
	struct group *gr = getgrgid(gid);

	if (gr != NULL && gr->gr_name != NULL)
		snprintf(buf, buflen, "%s", gr->gr_name);
	else
		snprintf(buf, buflen, "%lu", (unsigned long)gid);
	return buf;
}

/* Whether members of group `gid` may be trusted with the key: the group logmeter runs as (its
 * effective gid: the user's primary group, or the unit's Group=) or the service's own group
 * KEY_FILE_GROUP. Any other group (adm, where the package puts the user logmeter so that it reads
 * /var/log, or a group of people) would hand the key to all its members. */
/* The name of user `uid` into `buf` (`len` bytes), or "uid N" when it has none. */
static const char *user_name(uid_t uid, char *buf, size_t len)
{
	struct passwd *pw = getpwuid(uid);

	if (pw != NULL && pw->pw_name != NULL)
		snprintf(buf, len, "%s", pw->pw_name);
	else
		snprintf(buf, len, "uid %lu", (unsigned long)uid);
	return buf;
}

static int key_group_ok(gid_t gid)
{
	struct group *gr;

	if (gid == getegid())
		return 1;
	gr = getgrnam(KEY_FILE_GROUP);
	return gr != NULL && gr->gr_gid == gid;
}

/* Refuses a key file owned by another user than root or the one running logmeter, one that
 * grants anything to "others" (a key readable by every local user is a
 * leaked key), that its group may write (whoever replaces the key receives the usage in another
 * Stripe account), or that a group other than key_group_ok's may read. */
static int key_file_mode_ok(int fd, const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) != 0) {
		err_set(err, errlen, "cannot read the Stripe API key file %s: %s", path,
		        strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		err_set(err, errlen, "cannot read the Stripe API key file %s: %s", path,
		        strerror(EISDIR));
		return -1;
	}
	/* Its owner may rewrite it whatever the mode says: only root or logmeter's own user. */
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		char u[64], own[64];

		err_set(
		    err, errlen,
		    "the Stripe API key file %s belongs to %s, neither root nor the user running "
		    "logmeter (%s): its owner could replace the key; chown root:" KEY_FILE_GROUP
		    " and chmod 640 it (or chown it to the user running logmeter and chmod 600)",
		    path, user_name(st.st_uid, u, sizeof(u)),
		    user_name(geteuid(), own, sizeof(own)));
		return -1;
	}
	if ((st.st_mode & S_IRWXO) != 0) {
		err_set(err, errlen,
		        "the Stripe API key file %s is readable or writable by others (mode %04o): "
		        "chmod 640 it and chown root:logmeter (or chmod 600 if the user running "
		        "logmeter owns it)",
		        path, (unsigned)(st.st_mode & 07777));
		return -1;
	}
	if ((st.st_mode & S_IWGRP) != 0) {
		char g[64];

		err_set(
		    err, errlen,
		    "the Stripe API key file %s is writable by its group %s (mode %04o): anyone "
		    "in it could replace the key; chmod 640 it and chown root:" KEY_FILE_GROUP
		    " (or chmod 600 if the user running logmeter owns it)",
		    path, group_name(st.st_gid, g, sizeof(g)), (unsigned)(st.st_mode & 07777));
		return -1;
	}
	if ((st.st_mode & S_IRGRP) != 0 && !key_group_ok(st.st_gid)) {
		char g[64], own[64];

		err_set(
		    err, errlen,
		    "the Stripe API key file %s is readable by its group %s (mode %04o), which is "
		    "neither the group logmeter runs as (%s) nor " KEY_FILE_GROUP
		    ": only one of those may read it; chown root:" KEY_FILE_GROUP
		    " and chmod 640 it (or chmod 600 if the user running logmeter owns it)",
		    path, group_name(st.st_gid, g, sizeof(g)), (unsigned)(st.st_mode & 07777),
		    group_name(getegid(), own, sizeof(own)));
		return -1;
	}
	return 0;
}

/* Reads the key from the first line of `path` into `key`. */
static int key_from_file(const char *path, char *key, size_t keylen, char *err, size_t errlen)
{
	char buf[STRIPE_KEYFILE_READ_MAX + 1];
	int fd;
	size_t n = 0, linelen, raw;
	char *line, *nl;
	int rc = -1;

	/* read(2), not stdio: stdio's buffer would keep a copy of the key that nobody wipes. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		err_set(err, errlen, "cannot read the Stripe API key file %s: %s", path,
		        strerror(errno));
		return -1;
	}
	if (key_file_mode_ok(fd, path, err, errlen) != 0)
		goto out;
	while (n < STRIPE_KEYFILE_READ_MAX) {
		ssize_t r = read(fd, buf + n, STRIPE_KEYFILE_READ_MAX - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err_set(err, errlen, "cannot read the Stripe API key file %s: %s", path,
			        strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	nl = memchr(buf, '\n', n);
	linelen = nl != NULL ? (size_t)(nl - buf) : n;
	if (nl == NULL && n == STRIPE_KEYFILE_READ_MAX) {
		err_set(err, errlen,
		        "the Stripe API key from %s is too long (more than %d bytes, at most %d)",
		        path, STRIPE_KEYFILE_READ_MAX, STRIPE_KEY_MAX - 1);
		goto out;
	}
	/* Only the key: a second line (an old key kept below the new one, a note) would be
	 * silently ignored, and whoever edited the file may think it counts. */
	if (nl != NULL) {
		size_t rest = n - linelen - 1;

		(void)trim(nl + 1, &rest);
		if (rest > 0) {
			err_set(err, errlen,
			        "the Stripe API key file %s has more than one line: it must hold "
			        "the key alone",
			        path);
			goto out;
		}
	}
	/* The line ends with \n or \r\n (an editor's); blanks around the key are a paste gone
	 * wrong (a space typed before it): refused rather than silently dropped, so that the file
	 * says what is sent. */
	raw = linelen;
	if (raw > 0 && buf[raw - 1] == '\r')
		raw--;
	line = trim(buf, &linelen);
	if (linelen > 0 && (line != buf || raw != linelen)) {
		err_set(
		    err, errlen,
		    "the Stripe API key file %s has blanks before or after the key on its line: "
		    "it must hold the key alone on its first line; remove the blanks",
		    path);
		goto out;
	}
	rc = key_store(line, linelen, path, key, keylen, err, errlen);
out:
	wipe(buf, sizeof(buf));
	close(fd);
	return rc;
}

/* LOGMETER_STRIPE_API_KEY as stripe_key_take_env found it: at most STRIPE_KEYFILE_READ_MAX
 * bytes kept; a longer value is refused by its length alone. */
static char env_key[STRIPE_KEYFILE_READ_MAX + 1];
static size_t env_key_len;
static int env_key_taken;

int stripe_key_take_env(void)
{
	char *v = getenv(STRIPE_KEY_ENV);
	size_t n;

	if (v == NULL)
		return 0;
	n = strlen(v);
	env_key_len = n;
	memcpy(env_key, v, n < STRIPE_KEYFILE_READ_MAX ? n : STRIPE_KEYFILE_READ_MAX);
	env_key_taken = 1;
	/* In place: the strings of the environment the process started with are the ones
	 * /proc/PID/environ shows (proc(5)), and unsetenv only drops the pointer to them. */
	explicit_bzero(v, n);
	unsetenv(STRIPE_KEY_ENV);
	return 1;
}

void stripe_key_forget(void)
{
	explicit_bzero(env_key, sizeof(env_key));
	env_key_len = 0;
	env_key_taken = 0;
}

/* The key from the environment's `env` (`envlen` bytes) into `key`. */
static int key_from_env(const char *env, size_t envlen, char *key, size_t keylen, char *err,
                        size_t errlen)
{
	char buf[STRIPE_KEYFILE_READ_MAX + 1];
	size_t len = envlen;
	char *k;
	int rc;

	if (envlen > STRIPE_KEYFILE_READ_MAX) {
		err_set(err, errlen,
		        "the Stripe API key from %s is too long (%zu bytes, at most %d)",
		        STRIPE_KEY_ENV, envlen, STRIPE_KEY_MAX - 1);
		return -1;
	}
	memcpy(buf, env, envlen);
	k = trim(buf, &envlen);
	if (envlen > 0 && (k != buf || envlen != len)) {
		err_set(err, errlen,
		        "the Stripe API key in " STRIPE_KEY_ENV
		        " has blanks before or after it: set the variable to the key alone");
		wipe(buf, sizeof(buf));
		return -1;
	}
	rc = key_store(k, envlen, STRIPE_KEY_ENV, key, keylen, err, errlen);
	wipe(buf, sizeof(buf));
	return rc;
}

/* Writes $CREDENTIALS_DIRECTORY/stripe.key to `out` if systemd passed such a credential. */
static int credential_path(char *out, size_t outlen)
{
	const char *creddir = getenv(STRIPE_CREDENTIALS_ENV);

	return creddir != NULL && creddir[0] == '/' &&
	       (size_t)snprintf(out, outlen, "%s/%s", creddir, STRIPE_CREDENTIAL_NAME) < outlen &&
	       access(out, F_OK) == 0;
}

/* Whether LOGMETER_STRIPE_API_KEY is set to the empty string (taken, or still in the
 * environment). */
static int env_key_empty(void)
{
	const char *env = getenv(STRIPE_KEY_ENV);

	return (env_key_taken && env_key_len == 0) || (env != NULL && env[0] == '\0');
}

int stripe_key_shadowed(const struct config *cfg, char *what, size_t whatlen)
{
	char cred[4096];
	const char *env = getenv(STRIPE_KEY_ENV), *file;
	int empty = env_key_empty();

	if (!empty && !(env_key_taken && env_key_len > 0) && (env == NULL || env[0] == '\0'))
		return 0;
	file = cfg != NULL ? cfg->stripe.api_key_file : NULL;
	if (credential_path(cred, sizeof(cred)))
		file = cred;
	else if (file == NULL || file[0] == '\0' || access(file, F_OK) != 0)
		return 0;
	if (empty) {
		/* An empty variable is no key: the file is read, but whoever set it may think it
		 * counts (an `Environment=` line left empty, a `set-environment` of nothing). */
		err_set(what, whatlen,
		        "the environment variable " STRIPE_KEY_ENV
		        " is set but empty: ignored, the Stripe API key is read from %s%s; unset "
		        "the variable (docs/systemd.md)",
		        file == cred ? "the systemd credential " : "[stripe] api_key_file ", file);
		return 1;
	}
	err_set(what, whatlen,
	        "the Stripe API key comes from the environment variable " STRIPE_KEY_ENV
	        ", which wins over %s%s: that file is not read. A variable left in the service "
	        "manager's environment (systemctl set-environment, an old drop-in) silently beats "
	        "a rotated key file; unset it to use the file (docs/systemd.md)",
	        file == cred ? "the systemd credential " : "[stripe] api_key_file ", file);
	return 1;
}

int stripe_key_load(const struct config *cfg, char *key, size_t keylen, char *err, size_t errlen)
{
	char cred[4096];
	const char *env = getenv(STRIPE_KEY_ENV);
	const char *path;
	int rc = -1;

	if (key == NULL || keylen == 0) {
		err_set(err, errlen, "no room for the Stripe API key");
		return -1;
	}
	key[0] = '\0';
	if (env_key_taken && env_key_len > 0) {
		rc = key_from_env(env_key, env_key_len, key, keylen, err, errlen);
		goto out;
	}
	if (env != NULL && env[0] != '\0') {
		rc = key_from_env(env, strlen(env), key, keylen, err, errlen);
		goto out;
	}
	/* A systemd credential (LoadCredential=stripe.key:..., systemd.exec(5)): systemd passes
	 * the directory in $CREDENTIALS_DIRECTORY. Absent there, the key file is read. */
	if (credential_path(cred, sizeof(cred))) {
		rc = key_from_file(cred, key, keylen, err, errlen);
		goto out;
	}
	path = cfg != NULL ? cfg->stripe.api_key_file : NULL;
	if (env_key_empty() && (path == NULL || path[0] == '\0' || access(path, F_OK) != 0)) {
		err_set(err, errlen,
		        "no Stripe API key: the environment variable " STRIPE_KEY_ENV
		        " is set but empty, and there is no key file%s%s: set the variable to the "
		        "key, or unset it and put the key in [stripe] api_key_file",
		        path != NULL && path[0] != '\0' ? " " : "", path != NULL ? path : "");
		return -1;
	}
	if (path == NULL || path[0] == '\0') {
		err_set(err, errlen,
		        "no Stripe API key: set " STRIPE_KEY_ENV " or [stripe] api_key_file");
		return -1;
	}
	rc = key_from_file(path, key, keylen, err, errlen);
out:
	if (rc != 0)
		wipe(key, keylen);
	return rc;
}

/* Stripe's limits for POST /v1/billing/meter_events (docs.stripe.com/rate-limits): a separate
 * bucket of 1,000 calls per second per account in live mode; in test mode and sandboxes the
 * calls count against the basic limit of 25 operations per second; requests on behalf of a
 * connected account (Stripe-Account) are held to 100 per second in live mode. */
#define STRIPE_RATE_LIVE 1000
#define STRIPE_RATE_TEST 25
#define STRIPE_RATE_CONNECT 100

int64_t stripe_default_rate(const char *key, const char *account, char *why, size_t whylen)
{
	static const char *const live[] = {"sk_live_", "rk_live_"};
	static const char *const test[] = {"sk_test_", "rk_test_"};
	int connect = account != NULL && account[0] != '\0';
	const char *kind = NULL;
	int is_live = 0;
	char scratch[1];
	int64_t rate;

	if (why == NULL || whylen == 0) {
		why = scratch;
		whylen = sizeof(scratch);
	}
	for (size_t i = 0; key != NULL && i < 2 && kind == NULL; i++) {
		if (strncmp(key, live[i], strlen(live[i])) == 0) {
			kind = live[i];
			is_live = 1;
		} else if (strncmp(key, test[i], strlen(test[i])) == 0) {
			kind = test[i];
		}
	}
	if (kind == NULL) {
		snprintf(why, whylen,
		         "a key of unknown kind: the test-mode limit, the lowest Stripe sets");
		return STRIPE_RATE_TEST;
	}
	if (!is_live) {
		rate = STRIPE_RATE_TEST;
		snprintf(why, whylen, "test key (%s...): Stripe's test-mode limit%s", kind,
		         connect ? ", also for a connected account" : "");
	} else if (connect) {
		rate = STRIPE_RATE_CONNECT;
		snprintf(why, whylen,
		         "live key (%s...) for a connected account: Stripe's Connect "
		         "limit",
		         kind);
	} else {
		rate = STRIPE_RATE_LIVE;
		snprintf(why, whylen, "live key (%s...): Stripe's live-mode limit for meter events",
		         kind);
	}
	return rate;
}

/* ---- classification ---- */

static void put_body_excerpt(struct stripe_buf *b, const char *body, size_t len)
{
	size_t n = len < STRIPE_REASON_BODY_MAX ? len : STRIPE_REASON_BODY_MAX;
	size_t start = 0;

	/* A leading blank line or indentation says nothing. */
	while (start < n && isspace((unsigned char)body[start]))
		start++;
	while (n > start && isspace((unsigned char)body[n - 1]))
		n--;
	if (n > start) {
		buf_printf(b, ": ");
		buf_put_redacted(b, body + start, n - start, 1);
	}
}

/* Curl errors that say the request never left: nothing was carried out, the key is still good. */
static int curl_not_sent(CURLcode c)
{
	return c == CURLE_COULDNT_CONNECT || c == CURLE_COULDNT_RESOLVE_HOST ||
	       c == CURLE_COULDNT_RESOLVE_PROXY || c == CURLE_SSL_CONNECT_ERROR ||
	       c == CURLE_PEER_FAILED_VERIFICATION || c == CURLE_SSL_CACERT_BADFILE;
}

/* Is the body the billing.meter_event Stripe returns for `identifier`? */
static int is_our_meter_event(json_t *root, const char *identifier)
{
	const char *object = json_string_value(json_object_get(root, "object"));
	const char *id = json_string_value(json_object_get(root, "identifier"));

	if (!json_is_object(root) || object == NULL || strcmp(object, "billing.meter_event") != 0)
		return 0;
	return identifier == NULL || (id != NULL && strcmp(id, identifier) == 0);
}

static int str_eq(const char *a, const char *b)
{
	return a != NULL && strcmp(a, b) == 0;
}

enum stripe_outcome stripe_classify(const struct stripe_response *r, char *reason, size_t reasonlen)
{
	char scratch[1];
	struct stripe_buf b;
	json_t *root = NULL;
	const char *message = NULL, *type = NULL, *code = NULL, *param = NULL;
	size_t message_len = 0;
	enum stripe_outcome out;
	int is_stripe_error = 0;
	long st;

	if (reason == NULL || reasonlen == 0) {
		reason = scratch;
		reasonlen = sizeof(scratch);
	}
	buf_init(&b, reason, reasonlen);
	if (r == NULL) {
		buf_printf(&b, "no response");
		return STRIPE_UNKNOWN;
	}
	if (r->curl_code != CURLE_OK) {
		buf_printf(&b, "network error: %s", curl_easy_strerror(r->curl_code));
		return curl_not_sent(r->curl_code) ? STRIPE_RETRY : STRIPE_UNKNOWN;
	}
	st = r->status;
	if (st < 100 || st > 999) {
		/* A transfer that "succeeded" without a status line is no answer at all. */
		buf_printf(&b, "no valid HTTP status (%ld)", st);
		return STRIPE_UNKNOWN;
	}

	if (r->body != NULL && r->body_len > 0) {
		json_error_t jerr;

		root = json_loadb(r->body, r->body_len, 0, &jerr);
		if (root != NULL) {
			json_t *e = json_object_get(root, "error");

			if (json_is_object(e)) {
				json_t *m = json_object_get(e, "message");

				if (json_is_string(m)) {
					message = json_string_value(m);
					message_len = json_string_length(m);
				}
				type = json_string_value(json_object_get(e, "type"));
				code = json_string_value(json_object_get(e, "code"));
				param = json_string_value(json_object_get(e, "param"));
				is_stripe_error = type != NULL;
			}
		}
	}

	buf_printf(&b, "HTTP %ld", st);
	if (st >= 200 && st <= 299) {
		if (!is_our_meter_event(root, r->identifier))
			buf_printf(&b, ": the answer is not the meter event sent");
	} else if (message != NULL && message_len > 0) {
		buf_printf(&b, ": ");
		buf_put_message(&b, message, message_len);
	} else if (type != NULL || code != NULL) {
		buf_printf(&b, ":");
		if (type != NULL) {
			buf_printf(&b, " ");
			buf_put_message(&b, type, strlen(type));
		}
		if (code != NULL) {
			buf_printf(&b, " (");
			buf_put_message(&b, code, strlen(code));
			buf_printf(&b, ")");
		}
	} else if (root == NULL && r->body != NULL && r->body_len > 0) {
		put_body_excerpt(&b, r->body, r->body_len);
	}
	if (st >= 300 && st <= 399 && r->location != NULL && r->location[0] != '\0') {
		buf_printf(&b, " (redirect to ");
		buf_put_clean(&b, r->location, strlen(r->location), 1);
		buf_printf(&b, ")");
	}
	if (r->replayed)
		buf_printf(&b, " (replayed)");

	if (st >= 200 && st <= 299) {
		/* A proxy or captive portal answers 200 too: only our meter event counts. */
		out =
		    is_our_meter_event(root, r->identifier) ? STRIPE_DELIVERED : STRIPE_UNEXPECTED;
	} else if (st == 400 &&
	           ((message != NULL && message_len >= sizeof(stripe_exists_prefix) - 1 &&
	             strncmp(message, stripe_exists_prefix, sizeof(stripe_exists_prefix) - 1) ==
	                 0) ||
	            str_eq(code, "duplicate_meter_event"))) {
		/* Our identifier is already there: an earlier attempt got through. */
		out = STRIPE_DELIVERED;
	} else if (st == 401 || st == 403) {
		out = STRIPE_AUTH;
	} else if (str_eq(code, "lock_timeout")) {
		out = STRIPE_RETRY;
	} else if (st == 429 && r->should_retry == 1) {
		out = STRIPE_RETRY; /* Stripe's lock timeout answer without its code */
	} else if (st == 429 || str_eq(code, "rate_limit")) {
		out = STRIPE_RATE_LIMITED;
	} else if (st == 409) {
		out = STRIPE_RETRY; /* the same key is still being processed: its answer will be
		                       saved */
	} else if (st >= 500 && st <= 599) {
		/* Whatever Stripe-Should-Retry says: "not under this key", not "refused". */
		out = STRIPE_UNKNOWN;
	} else if (r->replayed || str_eq(type, "idempotency_error")) {
		/* A saved error, or the key was used with other parameters (a line read again
		 * after a power cut has a new read time): only a fresh key gets an answer now. */
		out = STRIPE_UNKNOWN;
	} else if (r->should_retry == 1 && st >= 400 && st <= 499) {
		out = STRIPE_RETRY;
	} else if (st == 400 && str_eq(type, "invalid_request_error") &&
	           str_eq(param, "timestamp") && message != NULL &&
	           strstr(message, "future") != NULL) {
		/* Stripe's clock, not the event, decides "too far ahead": a few seconds later it
		 * takes the event (docs/stripe-contract.md, section 13). */
		out = STRIPE_TOO_EARLY;
	} else if ((st == 400 || st == 404) && is_stripe_error &&
	           str_eq(type, "invalid_request_error") &&
	           !(st == 404 && message != NULL &&
	             strncmp(message, stripe_unknown_url_prefix,
	                     sizeof(stripe_unknown_url_prefix) - 1) == 0)) {
		out = STRIPE_REJECTED;
	} else {
		out = STRIPE_UNEXPECTED;
	}
	json_decref(root);
	return out;
}

/* ---- requests ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
	struct stripe_request *req = ud;

	/* Beyond what is kept, the rest is read and dropped: the status still classifies. */
	body_append(&req->body, data, size * nmemb, STRIPE_BODY_MAX);
	return size * nmemb;
}

/* If the header line `h` (`n` bytes, with its CRLF) is "name: value", returns the value with
 * surrounding whitespace dropped, setting *vlen; else NULL. */
static const char *header_value(const char *h, size_t n, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);
	const char *v;
	size_t len;

	if (n <= nl || strncasecmp(h, name, nl) != 0 || h[nl] != ':')
		return NULL;
	v = h + nl + 1;
	len = n - nl - 1;
	while (len > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)v[len - 1]))
		len--;
	*vlen = len;
	return v;
}

/* Retry-After: delay-seconds or an HTTP date (RFC 9110 10.2.3). Returns milliseconds, capped at
 * STRIPE_RETRY_AFTER_MAX_MS, or -1. */
static int64_t parse_retry_after(const char *v, size_t vlen)
{
	char text[64];
	int64_t secs = 0;
	size_t i;

	if (vlen == 0 || vlen >= sizeof(text))
		return -1;
	memcpy(text, v, vlen);
	text[vlen] = '\0';
	for (i = 0; i < vlen && isdigit((unsigned char)text[i]); i++)
		if (secs < STRIPE_RETRY_AFTER_MAX_MS / 1000 + 1)
			secs = secs * 10 + (text[i] - '0');
	if (i == vlen) {
		/* delay-seconds */
	} else {
		time_t when = curl_getdate(text, NULL);

		if (when < 0)
			return -1;
		secs = (int64_t)when - (int64_t)time(NULL);
		if (secs < 0)
			secs = 0;
	}
	if (secs > STRIPE_RETRY_AFTER_MAX_MS / 1000)
		return STRIPE_RETRY_AFTER_MAX_MS;
	return secs * 1000;
}

/* The Date header (an HTTP date, RFC 9110 6.6.1): seconds since the epoch, or 0. */
static int64_t parse_date(const char *v, size_t vlen)
{
	char text[64];
	time_t when;

	if (vlen == 0 || vlen >= sizeof(text))
		return 0;
	memcpy(text, v, vlen);
	text[vlen] = '\0';
	when = curl_getdate(text, NULL);
	return when > 0 ? (int64_t)when : 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
	struct stripe_request *req = ud;
	size_t n = size * nmemb, vlen;
	const char *v;

	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		/* A new response (after a 1xx): forget the previous one's headers. */
		req->should_retry = -1;
		req->replayed = 0;
		req->retry_after_ms = -1;
		req->date = 0;
		req->rl_reason[0] = '\0';
		req->location[0] = '\0';
		return n;
	}
	if ((v = header_value(data, n, "Stripe-Should-Retry", &vlen)) != NULL) {
		if (vlen == 4 && strncasecmp(v, "true", 4) == 0)
			req->should_retry = 1;
		else if (vlen == 5 && strncasecmp(v, "false", 5) == 0)
			req->should_retry = 0;
	} else if ((v = header_value(data, n, "Stripe-Rate-Limited-Reason", &vlen)) != NULL) {
		struct stripe_buf b;

		buf_init(&b, req->rl_reason, sizeof(req->rl_reason));
		buf_put_clean(&b, v, vlen, 1);
	} else if ((v = header_value(data, n, "Idempotent-Replayed", &vlen)) != NULL) {
		req->replayed = vlen == 4 && strncasecmp(v, "true", 4) == 0;
	} else if ((v = header_value(data, n, "Retry-After", &vlen)) != NULL) {
		req->retry_after_ms = parse_retry_after(v, vlen);
	} else if ((v = header_value(data, n, "Date", &vlen)) != NULL) {
		req->date = parse_date(v, vlen);
	} else if ((v = header_value(data, n, "Location", &vlen)) != NULL) {
		struct stripe_buf b;

		buf_init(&b, req->location, sizeof(req->location));
		buf_put_clean(&b, v, vlen, 1);
	}
	return n;
}

static int header_safe(const char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return 0;
	}
	return 1;
}

/* Appends `line` to *list; returns 0 or -1. */
static int add_header(struct curl_slist **list, const char *line)
{
	struct curl_slist *l = curl_slist_append(*list, line);

	if (l == NULL)
		return -1;
	*list = l;
	return 0;
}

#define SETOPT(h, opt, val)                                                                        \
	do {                                                                                       \
		CURLcode setopt_rc_ = curl_easy_setopt((h), (opt), (val));                         \
		if (setopt_rc_ != CURLE_OK) {                                                      \
			err_set(err, errlen, "libcurl refused %s: %s", #opt,                       \
			        curl_easy_strerror(setopt_rc_));                                   \
			goto fail;                                                                 \
		}                                                                                  \
	} while (0)

/* Sets up req->easy for POST {base}{path} with `body` of `content_type`, Authorization: Bearer
 * `token` (a copy of which req->key keeps, to scrub it from answers), Stripe-Version, an
 * Idempotency-Key if `idem` is not NULL, Stripe-Account if cfg->stripe.account is set. TLS
 * verification on, redirects not followed, cfg->stripe.request_timeout_ms. Returns 0 or -1. */
static int request_init(struct stripe_request *req, const struct config *cfg, const char *base,
                        const char *path, const char *token, const char *idem,
                        const char *content_type, const char *body, char *err, size_t errlen)
{
	char line[STRIPE_KEY_MAX + 64];
	char *url = NULL;
	size_t baselen, keylen = strlen(token);
	long timeout, connect_timeout;
	int rc = -1;

	line[0] = '\0';
	if (config_check_api_base(base, err, errlen) != 0)
		return -1;
	if (keylen == 0 || keylen > STRIPE_KEY_MAX - 1 || !header_safe(token)) {
		err_set(err, errlen,
		        "the Stripe credential is empty, too long or not visible ASCII");
		return -1;
	}
	if (cfg->stripe.account != NULL && config_check_account(cfg->stripe.account, err, errlen))
		return -1;
	req->should_retry = -1;
	req->retry_after_ms = -1;
	memcpy(req->key, token, keylen + 1);

	baselen = strlen(base);
	if (baselen > 0 && base[baselen - 1] == '/')
		baselen--;
	if (asprintf(&url, "%.*s%s", (int)baselen, base, path) < 0) {
		url = NULL;
		goto fail_oom;
	}
	snprintf(line, sizeof(line), "Authorization: Bearer %s", token);
	if (add_header(&req->headers, line) != 0)
		goto fail_oom;
	wipe(line, sizeof(line));
	if (add_header(&req->headers, "Stripe-Version: " STRIPE_API_VERSION) != 0)
		goto fail_oom;
	/* A header of the list, not CURLOPT_USERAGENT, which libcurl formats anew per transfer. */
	if (add_header(&req->headers, "User-Agent: logmeter/" PACKAGE_VERSION) != 0)
		goto fail_oom;
	if (idem != NULL) {
		snprintf(req->idem_line, sizeof(req->idem_line), "Idempotency-Key: %s", idem);
		req->idem.data = req->idem_line;
		req->idem.next = req->headers;
	}
	if (cfg->stripe.account != NULL) {
		snprintf(line, sizeof(line), "Stripe-Account: %s", cfg->stripe.account);
		if (add_header(&req->headers, line) != 0)
			goto fail_oom;
	}
	snprintf(line, sizeof(line), "Content-Type: %s", content_type);
	if (add_header(&req->headers, line) != 0)
		goto fail_oom;
	/* No "Expect: 100-continue" round trip for a small body. */
	if (add_header(&req->headers, "Expect:") != 0)
		goto fail_oom;

	timeout = (long)cfg->stripe.request_timeout_ms;
	connect_timeout = timeout < STRIPE_CONNECT_TIMEOUT_MS ? timeout : STRIPE_CONNECT_TIMEOUT_MS;

	req->easy = curl_easy_init();
	if (req->easy == NULL) {
		err_set(err, errlen, "curl_easy_init failed");
		goto fail;
	}
	req->url = curl_url();
	if (req->url == NULL)
		goto fail_oom;
	if (curl_url_set(req->url, CURLUPART_URL, url, 0) != CURLUE_OK) {
		err_set(err, errlen, "libcurl refused the URL of api_base");
		goto fail;
	}
	SETOPT(req->easy, CURLOPT_CURLU, req->url);
#if LIBCURL_VERSION_NUM >= 0x075500
	SETOPT(req->easy, CURLOPT_PROTOCOLS_STR,
	       config_api_base_is_local(base) ? "https,http" : "https");
#else
	SETOPT(req->easy, CURLOPT_PROTOCOLS,
	       config_api_base_is_local(base) ? (long)(CURLPROTO_HTTPS | CURLPROTO_HTTP)
	                                      : (long)CURLPROTO_HTTPS);
#endif
	SETOPT(req->easy, CURLOPT_HTTPHEADER, idem != NULL ? &req->idem : req->headers);
	if (body == req->form)
		SETOPT(req->easy, CURLOPT_POSTFIELDS, body); /* borrowed: it lives in req */
	else
		SETOPT(req->easy, CURLOPT_COPYPOSTFIELDS, body);
	SETOPT(req->easy, CURLOPT_TIMEOUT_MS, timeout);
	SETOPT(req->easy, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout);
	SETOPT(req->easy, CURLOPT_NOSIGNAL, 1L);
	SETOPT(req->easy, CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(req->easy, CURLOPT_SSL_VERIFYHOST, 2L);
	SETOPT(req->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(req->easy, CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(req->easy, CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(req->easy, CURLOPT_HEADERDATA, req);
	SETOPT(req->easy, CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(req->easy, CURLOPT_WRITEDATA, req);
	SETOPT(req->easy, CURLOPT_ERRORBUFFER, req->errbuf);
	SETOPT(req->easy, CURLOPT_PRIVATE, req);
	rc = 0;
	goto out;
fail_oom:
	err_set(err, errlen, "out of memory");
fail:
out:
	wipe(line, sizeof(line));
	free(url);
	return rc;
}

/* Points `req` at `ev`: its copy of the event, its body and its Idempotency-Key line. Returns 0
 * or -1. */
static int request_event(struct stripe_request *req, const struct event *ev, void *ud, char *idem,
                         char *err, size_t errlen)
{
	if (ev->identifier[0] == '\0' ||
	    strnlen(ev->identifier, EVENT_IDENTIFIER_MAX) >= EVENT_IDENTIFIER_MAX ||
	    !header_safe(ev->identifier) || event_idempotency_key(ev, idem) != 0) {
		err_set(err, errlen, "event %lld has no usable identifier", (long long)ev->id);
		return -1;
	}
	req->ev = *ev;
	req->ud = ud;
	if (event_form_body_write(&req->ev, req->form, sizeof(req->form)) == 0) {
		err_set(err, errlen, "event %lld does not fit a request body", (long long)ev->id);
		return -1;
	}
	return 0;
}

struct stripe_request *stripe_request_new(const struct config *cfg, const char *api_key,
                                          const struct event *ev, void *ud, char *err,
                                          size_t errlen)
{
	struct stripe_request *req = NULL;
	char idem[EVENT_IDEMPOTENCY_KEY_MAX];

	if (cfg == NULL || api_key == NULL || ev == NULL) {
		err_set(err, errlen, "stripe_request_new: missing argument");
		return NULL;
	}
	req = calloc(1, sizeof(*req));
	if (req == NULL) {
		err_set(err, errlen, "out of memory");
		return NULL;
	}
	if (request_event(req, ev, ud, idem, err, errlen) != 0 ||
	    request_init(req, cfg, cfg->stripe.api_base, STRIPE_ENDPOINT, api_key, idem,
	                 "application/x-www-form-urlencoded", req->form, err, errlen) != 0) {
		stripe_request_free(req);
		return NULL;
	}
	return req;
}

int stripe_request_reuse(struct stripe_request *req, const struct event *ev, void *ud, char *err,
                         size_t errlen)
{
	char idem[EVENT_IDEMPOTENCY_KEY_MAX];

	if (req == NULL || ev == NULL || req->idem.data == NULL) {
		err_set(err, errlen, "stripe_request_reuse: not a meter event request");
		return -1;
	}
	if (request_event(req, ev, ud, idem, err, errlen) != 0)
		return -1;
	snprintf(req->idem_line, sizeof(req->idem_line), "Idempotency-Key: %s", idem);
	/* The answer of the previous event is forgotten; its buffer is kept. */
	req->body.len = 0;
	if (req->body.p != NULL)
		req->body.p[0] = '\0';
	req->should_retry = -1;
	req->replayed = 0;
	req->retry_after_ms = -1;
	req->date = 0;
	req->rl_reason[0] = '\0';
	req->location[0] = '\0';
	req->errbuf[0] = '\0';
	/* The same buffer, but libcurl takes the length of the new body from its text. */
	if (curl_easy_setopt(req->easy, CURLOPT_POSTFIELDS, req->form) != CURLE_OK) {
		err_set(err, errlen, "libcurl refused CURLOPT_POSTFIELDS");
		return -1;
	}
	return 0;
}

struct stripe_request *stripe_request_new_post(const struct config *cfg, const char *base,
                                               const char *path, const char *token,
                                               const char *body, void *ud, char *err, size_t errlen)
{
	struct stripe_request *req;

	if (cfg == NULL || base == NULL || path == NULL || token == NULL || body == NULL) {
		err_set(err, errlen, "stripe_request_new_post: missing argument");
		return NULL;
	}
	req = calloc(1, sizeof(*req));
	if (req == NULL) {
		err_set(err, errlen, "out of memory");
		return NULL;
	}
	req->ud = ud;
	if (request_init(req, cfg, base, path, token, NULL, "application/json", body, err,
	                 errlen) != 0) {
		stripe_request_free(req);
		return NULL;
	}
	return req;
}

CURL *stripe_request_easy(struct stripe_request *req)
{
	return req != NULL ? req->easy : NULL;
}

void *stripe_request_ud(struct stripe_request *req)
{
	return req != NULL ? req->ud : NULL;
}

const struct event *stripe_request_event(struct stripe_request *req)
{
	return req != NULL ? &req->ev : NULL;
}

const char *stripe_outcome_name(enum stripe_outcome out)
{
	static const char *const names[STRIPE_OUTCOMES] = {[STRIPE_DELIVERED] = "delivered",
	                                                   [STRIPE_RETRY] = "retry",
	                                                   [STRIPE_UNKNOWN] = "unknown",
	                                                   [STRIPE_RATE_LIMITED] = "rate_limited",
	                                                   [STRIPE_TOO_EARLY] = "too_early",
	                                                   [STRIPE_AUTH] = "auth",
	                                                   [STRIPE_UNEXPECTED] = "unexpected",
	                                                   [STRIPE_REJECTED] = "rejected",
	                                                   [STRIPE_SESSION_EXPIRED] =
	                                                       "session_expired"};

	return (int)out >= 0 && out < STRIPE_OUTCOMES ? names[out] : "?";
}

void stripe_request_response(struct stripe_request *req, CURLcode code, struct stripe_response *r)
{
	memset(r, 0, sizeof(*r));
	r->curl_code = code;
	r->should_retry = -1;
	if (req == NULL)
		return;
	if (code == CURLE_OK &&
	    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &r->status) != CURLE_OK)
		r->status = 0;
	r->should_retry = req->should_retry;
	r->replayed = req->replayed;
	r->date = req->date;
	/* Whatever the server echoed, the key itself never leaves this module. */
	blank_key(req->body.p, req->body.len, req->key, strlen(req->key));
	r->body = req->body.p;
	r->body_len = req->body.len;
	r->identifier = req->ev.identifier[0] != '\0' ? req->ev.identifier : NULL;
	r->location = req->location;
}

void stripe_request_reason_finish(struct stripe_request *req, const struct stripe_response *r,
                                  char *reason, size_t reasonlen)
{
	struct stripe_buf b;

	if (req == NULL || reason == NULL || reasonlen == 0)
		return;
	b.p = reason;
	b.len = strnlen(reason, reasonlen);
	b.cap = reasonlen;
	if (r->curl_code != CURLE_OK && req->errbuf[0] != '\0') {
		/* curl's own words name the host, the port or the TLS problem. */
		buf_printf(&b, " (");
		buf_put_clean(&b, req->errbuf, strnlen(req->errbuf, sizeof(req->errbuf)), 1);
		buf_printf(&b, ")");
	}
	if (r->curl_code == CURLE_OK && r->status == 429 && req->rl_reason[0] != '\0')
		buf_printf(&b, " (Stripe-Rate-Limited-Reason: %s)", req->rl_reason);
	/* Whatever the server echoed, the key itself never leaves this module. */
	scrub_key(reason, reasonlen, req->key);
}

enum stripe_outcome stripe_request_result(struct stripe_request *req, CURLcode code, char *reason,
                                          size_t reasonlen)
{
	struct stripe_response r;
	enum stripe_outcome out;

	if (req == NULL)
		return stripe_classify(NULL, reason, reasonlen);
	stripe_request_response(req, code, &r);
	r.identifier = req->ev.identifier;
	out = stripe_classify(&r, reason, reasonlen);
	stripe_request_reason_finish(req, &r, reason, reasonlen);
	return out;
}

int64_t stripe_request_retry_after_ms(const struct stripe_request *req)
{
	return req != NULL ? req->retry_after_ms : -1;
}

int64_t stripe_request_date(const struct stripe_request *req)
{
	return req != NULL ? req->date : 0;
}

void stripe_request_free(struct stripe_request *req)
{
	if (req == NULL)
		return;
	if (req->easy != NULL)
		curl_easy_cleanup(req->easy);
	curl_url_cleanup(req->url); /* after the handle that borrowed it */
	for (struct curl_slist *l = req->headers; l != NULL; l = l->next) {
		if (l->data != NULL)
			wipe(l->data, strlen(l->data));
	}
	curl_slist_free_all(req->headers);
	free(req->body.p);
	wipe(req->key, sizeof(req->key));
	free(req);
}

/* ---- the account's meters ---- */

static size_t on_list_body(char *data, size_t size, size_t nmemb, void *ud)
{
	size_t n = size * nmemb;

	/* A page of 100 meters is far smaller: anything that does not fit stops the transfer. */
	return body_append(ud, data, n, STRIPE_LIST_BODY_MAX) == n ? n : 0;
}

/* A meter list's header lines: keeps the Date (0 when absent) in the int64_t at `ud`. */
static size_t on_list_header(char *data, size_t size, size_t nmemb, void *ud)
{
	int64_t *date = ud;
	size_t n = size * nmemb, vlen;
	const char *v;

	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
		*date = 0; /* a new answer (after a 100 Continue, say) */
	else if ((v = header_value(data, n, "Date", &vlen)) != NULL)
		*date = parse_date(v, vlen);
	return n;
}

/* Copies a JSON string member into `out` (`outlen` bytes), "" if absent or not a string. */
static void json_copy_str(json_t *obj, const char *name, char *out, size_t outlen)
{
	const char *v = json_string_value(json_object_get(obj, name));

	snprintf(out, outlen, "%s", v != NULL ? v : "");
}

/* Takes the meters of one page; `last_id` (the id the page was asked after, "" for the first)
 * becomes the last id of the page. Returns 0, or -1 with `err` for an answer that is no list, or
 * one that says there is more (has_more) without a meter id to ask after other than the one this
 * page was asked after (no meter, or the same one last: a cache that ignores starting_after):
 * asked for again, that page would answer the same, for ever. */
static int take_meters(json_t *root, struct stripe_meter **out, size_t *n, size_t *cap,
                       int *has_more, char *last_id, size_t last_len, char *err, size_t errlen)
{
	json_t *data = json_object_get(root, "data"), *m;
	const char *object = json_string_value(json_object_get(root, "object"));
	char after[sizeof(((struct stripe_meter *)NULL)->id)];
	size_t i, before = *n;

	if (object == NULL || strcmp(object, "list") != 0 || !json_is_array(data)) {
		err_set(err, errlen, "GET " STRIPE_METERS_ENDPOINT ": the answer is not a list");
		return -1;
	}
	*has_more = json_is_true(json_object_get(root, "has_more"));
	snprintf(after, sizeof(after), "%s", last_id);
	json_array_foreach(data, i, m)
	{
		struct stripe_meter *x;

		if (!json_is_object(m))
			continue;
		if (*n >= STRIPE_METERS_MAX) {
			*has_more = 0;
			break;
		}
		if (*n == *cap) {
			size_t ncap = *cap > 0 ? *cap * 2 : 64;
			struct stripe_meter *p = realloc(*out, ncap * sizeof(*p));

			if (p == NULL) {
				err_set(err, errlen, "out of memory");
				return -1;
			}
			*out = p;
			*cap = ncap;
		}
		x = &(*out)[(*n)++];
		memset(x, 0, sizeof(*x));
		json_copy_str(m, "id", x->id, sizeof(x->id));
		json_copy_str(m, "event_name", x->event_name, sizeof(x->event_name));
		json_copy_str(m, "status", x->status, sizeof(x->status));
		json_copy_str(json_object_get(m, "customer_mapping"), "event_payload_key",
		              x->customer_key, sizeof(x->customer_key));
		json_copy_str(json_object_get(m, "value_settings"), "event_payload_key",
		              x->value_key, sizeof(x->value_key));
		json_copy_str(json_object_get(m, "default_aggregation"), "formula", x->formula,
		              sizeof(x->formula));
		snprintf(last_id, last_len, "%s", x->id);
	}
	if (*has_more && last_id[0] == '\0') {
		err_set(err, errlen,
		        "GET " STRIPE_METERS_ENDPOINT
		        ": has_more without a meter id to go on from");
		return -1;
	}
	if (*has_more && (*n == before || strcmp(last_id, after) == 0)) {
		/* starting_after would be the same id again. */
		err_set(err, errlen,
		        "GET " STRIPE_METERS_ENDPOINT
		        ": has_more without a new meter id to go on from (%s): the list never ends",
		        *n == before ? "a page of no meters"
		                     : "the page ends at the meter it was "
		                       "asked to start after");
		return -1;
	}
	return 0;
}

int stripe_meters_list(const struct config *cfg, const char *key, long timeout_ms,
                       struct stripe_meter **out, size_t *n, long *status_out, int64_t *date_out,
                       char *err, size_t errlen)
{
	struct curl_slist *headers = NULL;
	struct body_buf body = {0};
	char line[STRIPE_KEY_MAX + 64], last[64] = "", *url = NULL, *after = NULL;
	const char *base;
	size_t cap = 0;
	int has_more = 1, ret = -1;
	int64_t seen_date = 0;
	CURL *easy = NULL;

	*out = NULL;
	*n = 0;
	if (status_out != NULL)
		*status_out = 0;
	if (date_out != NULL)
		*date_out = 0;
	base = cfg->stripe.api_base;
	if (config_check_api_base(base, err, errlen) != 0 || key == NULL || !header_safe(key) ||
	    (cfg->stripe.account != NULL && config_check_account(cfg->stripe.account, err, errlen)))
		return -1;
	snprintf(line, sizeof(line), "Authorization: Bearer %s", key);
	if (add_header(&headers, line) != 0 ||
	    add_header(&headers, "Stripe-Version: " STRIPE_API_VERSION) != 0)
		goto oom;
	if (cfg->stripe.account != NULL) {
		snprintf(line, sizeof(line), "Stripe-Account: %s", cfg->stripe.account);
		if (add_header(&headers, line) != 0)
			goto oom;
	}
	wipe(line, sizeof(line));
	easy = curl_easy_init();
	if (easy == NULL)
		goto oom;
	while (has_more) {
		json_error_t jerr;
		json_t *root;
		CURLcode code;
		long status = 0;
		int64_t date = 0;
		int rc;

		free(url);
		url = NULL;
		curl_free(after);
		after = last[0] != '\0' ? curl_easy_escape(easy, last, 0) : NULL;
		if (asprintf(&url, "%s%s?limit=%d%s%s", base, STRIPE_METERS_ENDPOINT,
		             STRIPE_METERS_PAGE, after != NULL ? "&starting_after=" : "",
		             after != NULL ? after : "") < 0) {
			url = NULL;
			goto oom;
		}
		body.len = 0;
		curl_easy_reset(easy);
#if LIBCURL_VERSION_NUM >= 0x075500
		curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR,
		                 config_api_base_is_local(base) ? "https,http" : "https");
#else
		curl_easy_setopt(easy, CURLOPT_PROTOCOLS,
		                 config_api_base_is_local(base)
		                     ? (long)(CURLPROTO_HTTPS | CURLPROTO_HTTP)
		                     : (long)CURLPROTO_HTTPS);
#endif
		curl_easy_setopt(easy, CURLOPT_URL, url);
		curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(easy, CURLOPT_USERAGENT, "logmeter/" PACKAGE_VERSION);
		curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
		curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
		curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_list_body);
		curl_easy_setopt(easy, CURLOPT_WRITEDATA, &body);
		curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_list_header);
		curl_easy_setopt(easy, CURLOPT_HEADERDATA, &date);
		code = curl_easy_perform(easy);
		if (code != CURLE_OK) {
			err_set(err, errlen, "GET %s: network error: %s", STRIPE_METERS_ENDPOINT,
			        curl_easy_strerror(code));
			goto out;
		}
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
		if (status != 200) {
			struct stripe_response r = {.curl_code = CURLE_OK,
			                            .status = status,
			                            .should_retry = -1,
			                            .body = body.p,
			                            .body_len = body.len};
			char reason[STRIPE_REASON_MAX];

			stripe_classify(&r, reason, sizeof(reason));
			scrub_key(reason, sizeof(reason), key);
			err_set(err, errlen, "GET %s: %s", STRIPE_METERS_ENDPOINT, reason);
			if (status_out != NULL)
				*status_out = status;
			goto out;
		}
		if (date > 0)
			seen_date = date;
		root = body.p != NULL ? json_loadb(body.p, body.len, 0, &jerr) : NULL;
		if (root == NULL) {
			err_set(err, errlen, "GET %s: the answer is not JSON",
			        STRIPE_METERS_ENDPOINT);
			goto out;
		}
		rc = take_meters(root, out, n, &cap, &has_more, last, sizeof(last), err, errlen);
		json_decref(root);
		if (rc != 0)
			goto out;
	}
	if (date_out != NULL)
		*date_out = seen_date;
	ret = 0;
	goto out;
oom:
	err_set(err, errlen, "out of memory");
out:
	wipe(line, sizeof(line));
	for (struct curl_slist *l = headers; l != NULL; l = l->next)
		if (l->data != NULL)
			wipe(l->data, strlen(l->data));
	curl_slist_free_all(headers);
	curl_easy_cleanup(easy);
	curl_free(after);
	free(url);
	free(body.p);
	if (ret != 0) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return ret;
}
