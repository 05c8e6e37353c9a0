/* cli: the commands of the command line, one file each: run.c (the agent), check.c, test_rule.c,
 * status.c, admin.c (replay, spool export/check/recover), backfill.c. main.c parses the options
 * into a struct cli_args and dispatches through its command table. Each command returns the
 * process's exit status and prints its own errors. */
#ifndef LOGMETER_CLI_H
#define LOGMETER_CLI_H

#include "config/config.h"
#include "core/rule.h"

/* Exit statuses (logmeter(8), EXIT STATUS). */
#define CLI_EXIT_OK 0
#define CLI_EXIT_RUNTIME 1 /* a runtime failure */
#define CLI_EXIT_USAGE 2   /* a bad command line or configuration */
#define CLI_EXIT_AUTH 3    /* run --once: Stripe refused the API key */

/* What the command line said. Strings point into argv. */
struct cli_args {
	const char *config; /* -c FILE; NULL if not given */
	const char *input;  /* the word after the command (test-rule's FILE, spool's verb) */
	const char *rule;   /* --rule */
	const char *reason, *since, *state;
	const char *source;  /* --source */
	char *const *inputs; /* the words after a command that takes several (backfill's PATHs) */
	int n_inputs;
	int once, no_send, markdown, stripe;
	int dead, delivered, unsure, force, dry_run, json;
	int windows;   /* spool export --windows */
	int stamp_now; /* backfill --stamp-now */
};

/* The configuration and everything compiled from it. */
struct cli_setup {
	struct config *cfg;
	struct rule_set *rules;
};

/* Loads `path` (config_load) and compiles its rules (rule_set_new), and sets the log level and
 * format. Prints the errors to standard error as they are (log_plain: the log format is not known
 * yet). Returns 0, or -1 (nothing to free). */
int cli_setup_load(struct cli_setup *s, const char *path);

/* cli_setup_load without printing: the errors, one "FILE:LINE: message" a line, into `err`
 * (`errlen` bytes, CONFIG_ERR_MAX is enough), for a caller whose log is set up already (the
 * agent's reload, which logs them in its log format). Returns 0, or -1 (nothing to free). */
int cli_setup_load_err(struct cli_setup *s, const char *path, char *err, size_t errlen);

/* Frees what cli_setup_load made; safe on a zeroed or freed setup. */
void cli_setup_free(struct cli_setup *s);

/* What every command does first, before it reads anything (docs/security.md): the process's
 * defences (harden_process: umask 077, not dumpable, no core) and the API key taken out of the
 * environment (stripe_key_take_env). Call it once, before any thread. Prints its error to
 * standard error. Returns 0, or -1 (the command should not run). */
int cli_process_setup(void);

/* At the end of the process: the key taken from the environment wiped (stripe_key_forget). */
void cli_process_end(void);

/* What `run` refuses to start with besides a bad configuration, checked alike by `check`: a
 * state directory another user could change (harden_check_state_dir; a missing one is fine,
 * `run` creates it), a spool that was lost (spool_lost_check) and, if `with_key` (not for `run
 * --once --no-send`, which sends nothing), an API key that cannot be read or is refused
 * (stripe_key_load; the key is wiped at once). Returns 0, or -1 with the reason in `err` (`errlen`
 * bytes): exit status CLI_EXIT_USAGE for both commands. */
int cli_preflight(const struct config *cfg, int with_key, char *err, size_t errlen);

/* The state directory's lock file: whoever holds it is the one agent of that spool. */
#define CLI_LOCK_NAME "agent.lock"

/* The state directory held: agent.lock's flock(2) and the directory's claim (util/statepin.h). */
struct cli_lock {
	int fd;    /* STATE_DIR/agent.lock, locked; -1: none */
	int claim; /* statepin_claim's socket; -1: none */
};

/* Takes STATE_DIR/agent.lock (creating the directory and the file) with an exclusive flock(2),
 * and the directory's claim (statepin_claim, which a wiped directory does not lose), for the
 * caller's lifetime: the kernel releases both when the process ends, so a crash never leaves a
 * stale lock. Fills *lk (cli_unlock releases it) and returns 0, or returns -1 with *lk holding
 * nothing, the reason in `err` and *held 1 if another process holds either (an agent runs),
 * else 0. */
int cli_lock_state_dir(const char *state_dir, struct cli_lock *lk, int *held, char *err,
                       size_t errlen);

/* Releases what cli_lock_state_dir took (nothing for -1 descriptors); *lk then holds nothing. */
void cli_unlock(struct cli_lock *lk);

/* Backfills take STATE_DIR/backfill.lock for their lifetime: one at a time per spool, so that
 * two never read the same content under two identities, and the one that holds it knows that
 * whoever holds agent.lock is an agent (which sends what it commits), not another backfill. */
#define CLI_BACKFILL_LOCK_NAME "backfill.lock"

/* Takes STATE_DIR/NAME (creating the directory and the file) with an exclusive flock(2) for the
 * caller's lifetime, as cli_lock_state_dir takes agent.lock (without the claim). Returns the
 * descriptor, or -1 with the reason in `err` and *held 1 if another process holds it, else 0. */
int cli_lock_file(const char *state_dir, const char *name, int *held, char *err, size_t errlen);

struct spool;

/* After a delivery was cut short (SIGTERM, SIGINT): returns 0 if nothing is pending in `sp` and
 * no aggregation window is open, else logs how many events are pending and windows open and
 * who sends them (`who`, for example "they are sent by the next run") and returns -1. */
int cli_pending_left(struct spool *sp, const char *who);

/* "s", or "" when `n` is 1: the ending of a noun that takes -s in the plural after a count in a
 * command's answer or log ("1 rule", "2 rules", "0 rules"). Static storage. */
const char *cli_s(long long n);

int cli_run(const struct cli_args *a);       /* run [--once [--no-send]] */
int cli_check(const struct cli_args *a);     /* check [--stripe] */
int cli_test_rule(const struct cli_args *a); /* test-rule [--rule NAME] [FILE|-] */
int cli_status(const struct cli_args *a);    /* status [--json] [--since TIME] */
int cli_backfill(const struct cli_args *a);  /* backfill [--source NAME] [--dry-run] [--stamp-now]
                                                PATH... */
int cli_replay(const struct cli_args *a);    /* replay --dead|--delivered|--unsure ... */
int cli_spool(const struct cli_args *a);     /* spool export|check|recover */
int cli_metrics_serve(const struct cli_args *a); /* metrics-serve FD:PID (run's server) */

#endif
