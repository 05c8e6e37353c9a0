/* metrics-serve: the server process of the agent's metrics endpoint (report/metrics.h), started
 * by `run` with its listening socket; not a command for people (not in the usage). It serves
 * until SIGTERM or SIGINT, and ends with the agent: the kernel sends it SIGTERM when the agent
 * dies (prctl PR_SET_PDEATHSIG, proc(5)), so that a killed agent leaves no endpoint behind that
 * would go on saying the agent runs. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "cli/cli.h"
#include "report/metrics.h"
#include "util/log.h"

int cli_metrics_serve(const struct cli_args *a)
{
	struct cli_setup s = {0};
	struct metrics_server *srv = NULL;
	char err[1024] = "", *end = NULL;
	long fd = -1, parent = 0;
	sigset_t set;
	int sig, rc = CLI_EXIT_RUNTIME;

	/* The input is FD:PID, the socket and the agent. */
	if (a->input != NULL)
		fd = strtol(a->input, &end, 10);
	if (end != NULL && *end == ':')
		parent = strtol(end + 1, &end, 10);
	if (fd < 0 || fd > 1024 || parent <= 0 || end == NULL || *end != '\0') {
		fprintf(stderr, "logmeter metrics-serve: started by `logmeter run` only\n");
		return CLI_EXIT_USAGE;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* After the mask: the signal of the agent's death waits for sigwait. The agent may have
	 * died before the call: then this process has another parent. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != (pid_t)parent) {
		close((int)fd);
		return CLI_EXIT_RUNTIME;
	}
	if (cli_setup_load(&s, a->config) != 0) {
		close((int)fd);
		return CLI_EXIT_USAGE;
	}
	srv = metrics_server_new(s.cfg, (int)fd, err, sizeof(err));
	if (srv == NULL) {
		log_err("%s", err);
		goto out;
	}
	/* SIGHUP is the agent's: a reload starts a new server. */
	while (sigwait(&set, &sig) == 0 && sig == SIGHUP)
		;
	rc = CLI_EXIT_OK;
out:
	metrics_server_free(srv);
	cli_setup_free(&s);
	return rc;
}
