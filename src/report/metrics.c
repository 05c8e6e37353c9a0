/* metrics: the Prometheus endpoint (report/metrics.h), served by libmicrohttpd
 * (https://www.gnu.org/software/libmicrohttpd/manual/libmicrohttpd.html). */
#include "report/metrics.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "report/facts.h"
#include "store/spool.h"
#include "util/log.h"

/* What Prometheus asks for, and accepts (the exposition format's Content-Type,
 * https://prometheus.io/docs/instrumenting/exposition_formats/). */
#define METRICS_PATH "/metrics"
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define METRICS_CONNECTIONS 16 /* at once: scrapers, not the public */
#define METRICS_TIMEOUT_S 30   /* an idle connection is closed after this */

struct metrics {
	struct MHD_Daemon *d;
	pthread_mutex_t lock; /* held while a scrape reads cfg */
	const struct config *cfg;
	unsigned port;
	int scrape_warned; /* a failing scrape is logged once until one succeeds */
};

/* The exposition of the facts now, malloc'd into *out (*len bytes). Returns the HTTP status:
 * 200, or 500 with the reason as the body. */
static unsigned scrape(struct metrics *m, char **out, size_t *len)
{
	char err[1024] = "";
	struct spool *sp = NULL;
	struct facts *f = NULL;
	FILE *mem = NULL;
	unsigned status = 500;

	*out = NULL;
	*len = 0;
	pthread_mutex_lock(&m->lock);
	/* A handle per scrape: the spool may be repaired or replaced while the agent is stopped,
	 * and a scrape every few seconds costs an open, not a read of every page. */
	sp = spool_open(m->cfg->agent.state_dir, SPOOL_READ_ONLY, err, sizeof(err));
	if (sp != NULL)
		f = facts_new(m->cfg, sp, (int64_t)time(NULL), 0, err, sizeof(err));
	if (f != NULL && (mem = open_memstream(out, len)) != NULL &&
	    facts_print_metrics(mem, f, (size_t)m->cfg->agent.metrics_max_files) == 0)
		status = 200;
	else if (err[0] == '\0')
		snprintf(err, sizeof(err), "out of memory");
	pthread_mutex_unlock(&m->lock);
	if (mem != NULL && fclose(mem) != 0)
		status = 500;
	facts_free(f);
	spool_free(sp);
	if (status == 200) {
		m->scrape_warned = 0;
		return status;
	}
	if (!m->scrape_warned)
		log_warn("metrics: cannot gather the facts: %s", err);
	m->scrape_warned = 1;
	free(*out);
	*out = NULL;
	if (asprintf(out, "logmeter: %s\n", err) < 0)
		*out = NULL;
	*len = *out != NULL ? strlen(*out) : 0;
	return status;
}

/* libmicrohttpd's own errors (MHD_OPTION_EXTERNAL_LOGGER) go to the log like ours. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && msg[n - 1] == '\n')
		msg[--n] = '\0';
	log_warn("metrics: %s", msg);
}

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, char *body, size_t len)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
	                        status == 200 ? METRICS_CONTENT_TYPE : "text/plain; charset=utf-8");
	if (status == 405)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **state)
{
	struct metrics *m = cls;
	char *body = NULL;
	size_t len = 0;
	unsigned status;

	(void)version;
	(void)data;
	/* The first call is for the headers only: the answer comes at the second (libmicrohttpd's
	 * MHD_AccessHandlerCallback). A request body is not wanted: it is dropped. */
	if (*state == NULL) {
		*state = m;
		return MHD_YES;
	}
	if (*data_size != 0) {
		*data_size = 0;
		return MHD_YES;
	}
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
		status = 405;
		body = strdup("only GET " METRICS_PATH "\n");
	} else if (strcmp(url, METRICS_PATH) != 0) {
		status = 404;
		body = strdup("logmeter serves its metrics at " METRICS_PATH "\n");
	} else {
		status = scrape(m, &body, &len);
	}
	if (body != NULL && len == 0)
		len = strlen(body);
	return answer(c, status, body, len);
}

struct metrics *metrics_new(const struct config *cfg, char *err, size_t errlen)
{
	const char *listen = cfg != NULL ? cfg->agent.metrics_listen : NULL;
	const union MHD_DaemonInfo *info;
	struct sockaddr_storage sa;
	socklen_t salen;
	struct metrics *m;
	int loopback;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;

	if (listen == NULL || listen[0] == '\0') {
		err_set(err, errlen, "metrics: no metrics_listen");
		return NULL;
	}
	if (config_parse_listen(listen, &sa, &salen, &loopback, err, errlen) != 0)
		return NULL;
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		err_set(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&m->lock, NULL);
	m->cfg = cfg;
	if (sa.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* The port is the address's: MHD_OPTION_SOCK_ADDR overrides the argument. */
	/* The logger first: libmicrohttpd logs the options after it through it. */
	m->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, m, MHD_OPTION_EXTERNAL_LOGGER,
	                        mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
	                        MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_CONNECTIONS,
	                        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_TIMEOUT_S,
	                        MHD_OPTION_END);
	if (m->d == NULL) {
		err_set(err, errlen,
		        "metrics: cannot listen on %s (in use, or not an address of this host)",
		        listen);
		pthread_mutex_destroy(&m->lock);
		free(m);
		return NULL;
	}
	info = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
	m->port = info != NULL ? info->port : 0;
	log_info("metrics: serving http://%.*s:%u%s", (int)(strrchr(listen, ':') - listen), listen,
	         m->port, METRICS_PATH);
	if (!loopback)
		log_warn("metrics: %s is not a loopback address: anyone who reaches it reads the "
		         "metrics (no authentication); keep it behind a firewall",
		         listen);
	return m;
}

void metrics_set_config(struct metrics *m, const struct config *cfg)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&m->lock);
	m->cfg = cfg;
	pthread_mutex_unlock(&m->lock);
}

unsigned metrics_port(const struct metrics *m)
{
	return m != NULL ? m->port : 0;
}

void metrics_free(struct metrics *m)
{
	if (m == NULL)
		return;
	MHD_stop_daemon(m->d);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
