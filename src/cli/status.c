/* status: what the spool and the running agent's live state say (report/facts.h), as text or,
 * with --json, as the versioned document of docs/status-json.md; the exit status says whether
 * the agent is healthy, so that it can serve as a health check. */
#include <stdio.h>
#include <time.h>

#include "cli/admin.h"
#include "cli/cli.h"
#include "report/facts.h"
#include "store/spool.h"
#include "util/statepin.h"

int cli_status(const struct cli_args *args)
{
	struct config *cfg;
	struct spool *sp = NULL;
	struct facts *f = NULL;
	char err[CONFIG_ERR_MAX] = "";
	int64_t now = (int64_t)time(NULL), since = FACTS_NO_SINCE;
	int rc = CLI_EXIT_RUNTIME;

	if (args->since != NULL && admin_parse_time(args->since, now, &since) != 0) {
		fprintf(stderr,
		        "logmeter status: --since '%s': expected 2026-11-29T12:00:00Z, 2026-11-29, "
		        "@SECONDS or an age such as 30m, 24h, 7d\n",
		        args->since);
		return CLI_EXIT_USAGE;
	}
	cfg = config_load(args->config, err, sizeof(err));
	if (cfg == NULL) {
		fprintf(stderr, "%s\n", err);
		return CLI_EXIT_USAGE;
	}
	sp = spool_open(cfg->agent.state_dir, SPOOL_READ_ONLY, err, sizeof(err));
	if (sp == NULL) {
		/* Not "the agent has not run yet" while one runs: its spool went under it. */
		if (statepin_claimed(cfg->agent.state_dir) == 1)
			snprintf(
			    err, sizeof(err),
			    "no spool in state_dir %s, but a logmeter runs on it: its spool was "
			    "removed or replaced under it, and it stops within seconds "
			    "(docs/durability.md)",
			    cfg->agent.state_dir);
		goto fail;
	}
	f = facts_new(cfg, sp, now, since, err, sizeof(err));
	if (f == NULL)
		goto fail;
	if (args->json) {
		if (facts_print_json(stdout, f, err, sizeof(err)) != 0)
			goto fail;
	} else {
		facts_print_text(stdout, f);
	}
	if (fflush(stdout) != 0) {
		snprintf(err, sizeof(err), "cannot write the status");
		goto fail;
	}
	/* 1 also when the status could not be read: a health check must not pass then. */
	rc = f->degraded ? CLI_EXIT_RUNTIME : CLI_EXIT_OK;
	goto out;
fail:
	fprintf(stderr, "status: %s\n", err);
	if (args->json && f == NULL)
		facts_print_json_error(stdout, now, err);
out:
	facts_free(f);
	spool_free(sp);
	config_free(cfg);
	return rc;
}
