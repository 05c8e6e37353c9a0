/* metrics: the Prometheus endpoint (report/metrics.h): the agent's socket and server process,
 * and the server, served by libmicrohttpd
 * (https://www.gnu.org/software/libmicrohttpd/manual/libmicrohttpd.html). */
#include "report/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "report/facts.h"
#include "store/spool.h"
#include "util/clock.h"
#include "util/log.h"

extern char **environ;

/* What Prometheus asks for, and accepts (the exposition format's Content-Type,
 * https://prometheus.io/docs/instrumenting/exposition_formats/). */
#define METRICS_PATH "/metrics"
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define METRICS_CONNECTIONS 16  /* at once: scrapers, not the public */
#define METRICS_TIMEOUT_S 30    /* an idle connection is closed after this */
#define METRICS_FD 3            /* the listening socket, in the server process */
#define METRICS_RESPAWN_MS 1000 /* a server that ends sooner after its start twice: not again */

struct metrics_server {
	struct MHD_Daemon *d;
	const struct config *cfg;
	int scrape_warned; /* a failing scrape is logged once until one succeeds */
};

/* The exposition of the facts now, malloc'd into *out (*len bytes). Returns the HTTP status:
 * 200, or 500 with the reason as the body. */
static unsigned scrape(struct metrics_server *m, char **out, size_t *len)
{
	char err[1024] = "";
	struct spool *sp = NULL;
	struct facts *f = NULL;
	FILE *mem = NULL;
	unsigned status = 500;

	*out = NULL;
	*len = 0;
	/* A handle per scrape: the spool may be repaired or replaced while the agent is stopped,
	 * and a scrape every few seconds costs an open, not a read of every page. */
	sp = spool_open(m->cfg->agent.state_dir, SPOOL_READ_ONLY, err, sizeof(err));
	if (sp != NULL)
		f = facts_new(m->cfg, sp, (int64_t)time(NULL), FACTS_NO_SINCE, err, sizeof(err));
	if (f != NULL && (mem = open_memstream(out, len)) != NULL &&
	    facts_print_metrics(mem, f, (size_t)m->cfg->agent.metrics_max_files) == 0)
		status = 200;
	else if (err[0] == '\0')
		snprintf(err, sizeof(err), "out of memory");
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
	struct metrics_server *m = cls;
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

struct metrics_server *metrics_server_new(const struct config *cfg, int fd, char *err,
                                          size_t errlen)
{
	struct metrics_server *m = calloc(1, sizeof(*m));

	if (m == NULL) {
		err_set(err, errlen, "out of memory");
		close(fd);
		return NULL;
	}
	m->cfg = cfg;
	/* The logger first: libmicrohttpd logs the options after it through it. */
	/* MHD_USE_ITC: what MHD_quiesce_daemon needs with an internal polling thread
	 * (microhttpd.h), for metrics_server_free. */
	m->d = MHD_start_daemon(
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG, 0, NULL, NULL,
	    on_request, m, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET,
	    (MHD_socket)fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_CONNECTIONS,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_TIMEOUT_S, MHD_OPTION_END);
	if (m->d == NULL) {
		err_set(err, errlen, "metrics: the HTTP daemon did not start");
		close(fd);
		free(m);
		return NULL;
	}
	return m;
}

void metrics_server_free(struct metrics_server *m)
{
	MHD_socket fd;

	if (m == NULL)
		return;
	/* The listening socket is the agent's, shared with the server it starts after this one (at
	 * a reload). MHD_stop_daemon would shut it down (shutdown(2) acts on the socket, not on
	 * this process's descriptor: every later server then listened on a dead socket, and the
	 * endpoint refused connections from the first reload on). Taken back from MHD first, it is
	 * only closed here. */
	fd = MHD_quiesce_daemon(m->d);
	MHD_stop_daemon(m->d);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	free(m);
}

/* ---- in the agent: the socket and the server process ---- */

struct metrics {
	int fd; /* the listening socket */
	unsigned port;
	char *config_path;
	char exe[4096]; /* this program, to start the server from */
	pid_t pid;      /* the server process, 0: none */
	int64_t started_ms, quick_ends;
};

/* The path of this program: the server is started from the same binary (a package upgrade
 * that replaced it leaves the old one reachable through /proc/self/exe). */
static void own_exe(char *out, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", out, len - 1);

	if (n <= 0 || (size_t)n >= len - 1 || (n > 10 && strcmp(out + n - 10, " (deleted)") == 0) ||
	    (out[n] = '\0', access(out, X_OK) != 0))
		snprintf(out, len, "/proc/self/exe");
}

/* Starts the server process on the socket. Returns 0 or -1 (logged). */
static int start_server(struct metrics *m)
{
	posix_spawn_file_actions_t fa;
	char arg[64];
	char *argv[] = {"logmeter", "metrics-serve", "-c", m->config_path, arg, NULL};
	int rc;

	snprintf(arg, sizeof(arg), "%d:%ld", METRICS_FD, (long)getpid());
	if (posix_spawn_file_actions_init(&fa) != 0)
		return -1;
	/* The socket becomes the server's descriptor 3, without close-on-exec; everything else of
	 * the agent's is close-on-exec. */
	rc = posix_spawn_file_actions_adddup2(&fa, m->fd, METRICS_FD);
	if (rc == 0)
		rc = posix_spawn(&m->pid, m->exe, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		m->pid = 0;
		log_err("metrics: cannot start the server process %s: %s", m->exe, strerror(rc));
		return -1;
	}
	m->started_ms = clock_mono_ms();
	return 0;
}

static void stop_server(struct metrics *m)
{
	if (m->pid <= 0)
		return;
	kill(m->pid, SIGTERM);
	while (waitpid(m->pid, NULL, 0) < 0 && errno == EINTR)
		;
	m->pid = 0;
}

/* A socket listening on `listen`. Returns it, or -1 (`err` names the address). */
static int listen_on(const char *addr, unsigned *port, int *loopback, char *err, size_t errlen)
{
	struct sockaddr_storage sa;
	socklen_t salen;
	int fd, one = 1;

	if (config_parse_listen(addr, &sa, &salen, loopback, err, errlen) != 0)
		return -1;
	fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    (sa.ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
	    bind(fd, (struct sockaddr *)&sa, salen) != 0 || listen(fd, METRICS_CONNECTIONS) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &salen) != 0) {
		err_set(err, errlen, "metrics: cannot listen on %s: %s", addr, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
	                                       : ((struct sockaddr_in *)&sa)->sin_port);
	return fd;
}

struct metrics *metrics_new(const struct config *cfg, const char *config_path, char *err,
                            size_t errlen)
{
	const char *listen = cfg != NULL ? cfg->agent.metrics_listen : NULL;
	struct metrics *m;
	int loopback = 1;

	if (listen == NULL || listen[0] == '\0' || config_path == NULL) {
		err_set(err, errlen, "metrics: no metrics_listen");
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (m == NULL || (m->config_path = strdup(config_path)) == NULL) {
		err_set(err, errlen, "out of memory");
		free(m);
		return NULL;
	}
	m->fd = listen_on(listen, &m->port, &loopback, err, errlen);
	if (m->fd < 0) {
		free(m->config_path);
		free(m);
		return NULL;
	}
	own_exe(m->exe, sizeof(m->exe));
	if (start_server(m) != 0) {
		err_set(err, errlen, "metrics: cannot start the server process");
		metrics_free(m);
		return NULL;
	}
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
	(void)cfg; /* the server reads the configuration file itself */
	if (m == NULL)
		return;
	stop_server(m);
	m->quick_ends = 0;
	start_server(m);
}

void metrics_reap(struct metrics *m)
{
	int status;

	if (m == NULL || m->pid <= 0 || waitpid(m->pid, &status, WNOHANG) != m->pid)
		return;
	m->pid = 0;
	m->quick_ends =
	    clock_mono_ms() - m->started_ms < METRICS_RESPAWN_MS ? m->quick_ends + 1 : 0;
	if (m->quick_ends >= 2) {
		log_err("metrics: the server process keeps ending (status %d): no metrics endpoint "
		        "until the next reload",
		        status);
		return;
	}
	log_warn("metrics: the server process ended (status %d): starting it again", status);
	start_server(m);
}

unsigned metrics_port(const struct metrics *m)
{
	return m != NULL ? m->port : 0;
}

void metrics_free(struct metrics *m)
{
	if (m == NULL)
		return;
	stop_server(m);
	if (m->fd >= 0)
		close(m->fd);
	free(m->config_path);
	free(m);
}
