/* status: what the spool and the running agent's live state say. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "ingest/space.h"
#include "send/sender.h"
#include "store/spool.h"
#include "util/clock.h"

static int status_file(const struct spool_file *f, void *ud)
{
	struct stat st;
	long long size = f->size;

	(void)ud;
	/* The live size, when the path still names the same file, shows the lag behind the writer.
	 */
	if (f->state != SPOOL_FILE_GONE && stat(f->path, &st) == 0 &&
	    (uint64_t)st.st_dev == f->dev && (uint64_t)st.st_ino == f->ino)
		size = (long long)st.st_size;
	printf("  %s\n", f->path);
	printf("    source %s  identity %s (dev %llu, inode %llu)  state %s\n", f->source, f->uid,
	       (unsigned long long)f->dev, (unsigned long long)f->ino,
	       spool_file_state_name(f->state));
	printf("    offset %lld  size %lld  lag %lld bytes\n", (long long)f->offset, size,
	       size > f->offset ? size - (long long)f->offset : 0LL);
	printf("    lines %lld  matched %lld  unmatched %lld  invalid %lld  long lines %lld  "
	       "NUL bytes %lld  events %lld  checkpoint resets %lld\n",
	       (long long)f->counters.lines, (long long)f->counters.matched,
	       (long long)f->counters.unmatched, (long long)f->counters.invalid,
	       (long long)f->counters.long_lines, (long long)f->counters.nul_bytes,
	       (long long)f->counters.events, (long long)f->counters.resets);
	return 0;
}

#define STATUS_WINDOWS_MAX 20 /* open windows listed; the rest are counted */

struct status_windows {
	int64_t open, late;
};

static int status_window(const struct spool_window *w, void *ud)
{
	struct status_windows *sw = ud;
	char a[32], b[32];

	if (sw->open++ >= STATUS_WINDOWS_MAX)
		return 0;
	clock_utc_text(w->start, a, sizeof(a));
	clock_utc_text(w->start + w->length, b, sizeof(b));
	printf("  rule %s  customer %s  %s .. %s  total %s over %lld lines (%lld late)  closes "
	       "after %lld\n",
	       w->rule, w->customer, a, b, w->total, (long long)w->lines, (long long)w->late,
	       (long long)w->close_after);
	return 0;
}

int cli_status(const struct cli_args *args)
{
	const char *path = args->config;
	struct config *cfg;
	struct spool *sp = NULL;
	struct spool_counts counts;
	char err[CONFIG_ERR_MAX] = "", last[EVENT_ERROR_MAX] = "", instance[128] = "";
	int rc = CLI_EXIT_RUNTIME;

	cfg = config_load(path, err, sizeof(err));
	if (cfg == NULL) {
		fprintf(stderr, "%s\n", err);
		return CLI_EXIT_USAGE;
	}
	sp = spool_open(cfg->agent.state_dir, SPOOL_READ_ONLY, err, sizeof(err));
	if (sp == NULL)
		goto fail;
	if (spool_counts(sp, &counts, err, sizeof(err)) != 0 ||
	    spool_last_error(sp, last, sizeof(last), err, sizeof(err)) != 0)
		goto fail;
	/* Read-only: show the stored instance without changing it. */
	if (spool_instance(sp, NULL, instance, sizeof(instance), err, sizeof(err)) != 0)
		snprintf(instance, sizeof(instance), "?");
	printf("spool: %s\n", spool_path(sp));
	printf("instance: %s\n", instance);
	printf("events: pending %lld, delivered %lld, dead letters %lld, unsure %lld\n",
	       (long long)counts.pending, (long long)counts.delivered, (long long)counts.dead,
	       (long long)counts.unsure);
	if (counts.unsure > 0)
		printf("unsure: %lld events had an attempt with an unknown outcome more than "
		       "unsure_after ago and are not re-sent by themselves: check Stripe, then "
		       "`logmeter replay --unsure` (docs/stripe-contract.md)\n",
		       (long long)counts.unsure);
	printf("last error: %s\n", last[0] ? last : "none");
	space_status_print(stdout, cfg, sp); /* "ingest: ..." and "space: ..." */
	sender_status_print(stdout, cfg);    /* "sender: ...", "rate: ...", "held: ..." */
	{
		struct status_windows sw = {0, 0};

		printf("windows: open aggregation windows and their running totals\n");
		if (spool_windows_foreach(sp, 1, status_window, NULL, &sw, err, sizeof(err)) != 0)
			goto fail;
		if (sw.open > STATUS_WINDOWS_MAX)
			printf("  ... and %lld more\n", (long long)(sw.open - STATUS_WINDOWS_MAX));
		printf("  %lld open\n", (long long)sw.open);
	}
	printf("files:\n");
	if (spool_files_foreach(sp, status_file, NULL, err, sizeof(err)) != 0)
		goto fail;
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "status: %s\n", err);
out:
	spool_free(sp);
	config_free(cfg);
	return rc;
}
