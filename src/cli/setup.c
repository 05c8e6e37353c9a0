#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "cli/cli.h"
#include "store/spool.h"
#include "send/stripe.h"
#include "util/harden.h"
#include "util/log.h"
#include "util/path.h"
#include "util/statepin.h"

void cli_setup_free(struct cli_setup *s)
{
	rule_set_free(s->rules);
	config_free(s->cfg);
	s->rules = NULL;
	s->cfg = NULL;
}

int cli_setup_load_err(struct cli_setup *s, const char *path, char *err, size_t errlen)
{
	enum log_level level;
	enum log_format format = LOG_FORMAT_TEXT;

	err_set(err, errlen, "%s", "");
	s->cfg = config_load(path, err, errlen);
	if (s->cfg == NULL)
		goto fail;
	s->rules = rule_set_new(s->cfg, err, errlen);
	if (s->rules == NULL)
		goto fail;
	if (log_level_parse(s->cfg->agent.log_level, &level) == 0)
		log_set_level(level);
	/* The option table allows only what log_format_parse takes. */
	(void)log_format_parse(s->cfg->agent.log_format, &format);
	log_setup(format);
	return 0;
fail:
	cli_setup_free(s);
	return -1;
}

int cli_setup_load(struct cli_setup *s, const char *path)
{
	char err[CONFIG_ERR_MAX];

	if (cli_setup_load_err(s, path, err, sizeof(err)) == 0)
		return 0;
	log_plain(LOG_LVL_ERR, err);
	return -1;
}

int cli_process_setup(void)
{
	char err[256] = "";

	if (harden_process(err, sizeof(err)) != 0) {
		fprintf(stderr, "logmeter: %s\n", err);
		return -1;
	}
	stripe_key_take_env();
	return 0;
}

void cli_process_end(void)
{
	stripe_key_forget();
}

int cli_preflight(const struct config *cfg, int with_key, char *err, size_t errlen)
{
	char key[STRIPE_KEY_MAX];
	int rc;

	if (harden_check_state_dir(cfg->agent.state_dir, 1, err, errlen) != 0)
		return -1;
	/* A lost spool needs an operator as a bad key does: exit 2, which systemd does not
	 * restart into the same refusal (RestartPreventExitStatus=2). */
	if (spool_lost_check(cfg->agent.state_dir, err, errlen) != 0)
		return -1;
	if (!with_key)
		return 0;
	rc = stripe_key_load(cfg, key, sizeof(key), err, errlen);
	explicit_bzero(key, sizeof(key));
	return rc;
}

int cli_lock_file(const char *state_dir, const char *name, int *held, char *err, size_t errlen)
{
	char path[4096];
	int fd;

	*held = 0;
	/* The directory may not exist yet: the lock is taken before anything else touches it,
	 * and once it exists it is checked as `check` checks it (cli_preflight). */
	if (path_mkdirs(state_dir, err, errlen) != 0 ||
	    harden_check_state_dir(state_dir, 0, err, errlen) != 0)
		return -1;
	snprintf(path, sizeof(path), "%s/%s", state_dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		err_set(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		*held = errno == EWOULDBLOCK;
		if (*held)
			err_set(err, errlen, "%s is locked", path);
		else
			err_set(err, errlen, "cannot lock %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int cli_lock_state_dir(const char *state_dir, struct cli_lock *lk, int *held, char *err,
                       size_t errlen)
{
	lk->claim = -1;
	lk->fd = cli_lock_file(state_dir, CLI_LOCK_NAME, held, err, errlen);
	if (lk->fd < 0)
		return -1;
	/* Held by an agent whose agent.lock was removed, or whose whole directory was wiped and
	 * made again: the new lock file proves nothing. */
	lk->claim = statepin_claim(state_dir, held, err, errlen);
	if (lk->claim < 0) {
		cli_unlock(lk);
		return -1;
	}
	return 0;
}

void cli_unlock(struct cli_lock *lk)
{
	if (lk->fd >= 0)
		close(lk->fd);
	if (lk->claim >= 0)
		close(lk->claim);
	lk->fd = lk->claim = -1;
}

const char *cli_s(long long n)
{
	return n == 1 ? "" : "s";
}

int cli_pending_left(struct spool *sp, const char *who)
{
	struct spool_counts counts;
	int64_t windows = 0, lines = 0, last = 0;
	char err[512] = "";

	if (spool_counts(sp, &counts, err, sizeof(err)) != 0 ||
	    spool_windows_open_count(sp, &windows, &lines, &last, err, sizeof(err)) != 0) {
		log_err("%s", err);
		return -1;
	}
	if (counts.pending == 0 && windows == 0)
		return 0;
	log_warn("stopped before delivering everything: %lld event%s still pending, %lld "
	         "aggregation window%s (%lld line%s) still open (%s)",
	         (long long)counts.pending, cli_s(counts.pending), (long long)windows,
	         cli_s(windows), (long long)lines, cli_s(lines), who);
	return -1;
}
