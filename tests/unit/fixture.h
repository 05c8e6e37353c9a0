/* fixture: what the unit drivers share: a temporary directory removed with everything in it, a
 * state directory with a spool, and a configuration loaded as the agent loads one
 * (config_load_text: defaults and bounds from the option table), so that no test builds a
 * struct config by hand. Every function fails the running test (cmocka) when it cannot do its
 * work, so none returns an error. */
#ifndef LOGMETER_TEST_FIXTURE_H
#define LOGMETER_TEST_FIXTURE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/event.h"
#include "store/spool.h"

/* The sizes keep every path a test makes from them within its buffers of a few hundred bytes. */
struct fixture {
	char dir[64];       /* a new directory, mkdtemp(3); fixture_free removes it */
	char state[96];     /* DIR/state: the state_dir of fixture_config's configurations */
	char db[128];       /* STATE/spool.db */
	char conf[96];      /* DIR/test.conf: the name fixture_config's text is loaded as */
	struct config *cfg; /* the last fixture_config, or NULL; owned by the fixture */
	struct spool *sp;   /* fixture_spool's read-write handle, or NULL; owned by the fixture */
};

/* Makes the directory /tmp/NAME.XXXXXX (NAME, at most 40 bytes, names the test that left a
 * directory behind). Returns the fixture, freed by fixture_free. */
struct fixture *fixture_new(const char *name);

/* Frees fx->cfg and fx->sp (whatever they point to then) and removes the directory with
 * everything in it. NULL is a no-op. */
void fixture_free(struct fixture *fx);

/* cmocka setup and teardown of a group or a test whose state is a bare fixture
 * (fixture_new("logmeter-unit") and fixture_free). */
int fixture_setup(void **state);
int fixture_teardown(void **state);

/* DIR/REL, in one of 8 static buffers used in turn (PATH_MAX bytes each): valid until the eighth
 * call after it. */
const char *fixture_path(const struct fixture *fx, const char *rel);

/* Writes `len` bytes of `data` to `path`, truncating it or (`append` non-zero) at its end;
 * created with mode 0644. */
void fixture_write(const char *path, const void *data, size_t len, int append);

/* fixture_write of the string `text`, truncating. */
void fixture_write_text(const char *path, const char *text);

/* Loads the configuration text that `fmt` and its arguments make (printf(3)) as the main file
 * DIR/test.conf, with "[agent] state_dir = STATE" appended, so that relative paths are in DIR
 * and the line numbers of the text are its own (it may have an [agent] section, without
 * state_dir). Replaces fx->cfg (freeing the previous one: pointers into it go stale) and
 * returns it; fails the test with config_load_text's errors if it does not load. */
struct config *fixture_config(struct fixture *fx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Opens fx->sp, read-write on STATE (creating both), unless it is open; returns it. */
struct spool *fixture_spool(struct fixture *fx);

/* Adds a file record of `source` with device 1 and inode `ino` to fixture_spool's spool (path
 * DIR/SOURCE.log, checkpoint 0) and fills *f with it, its id and uid included. */
void fixture_file_add(struct fixture *fx, const char *source, uint64_t ino, struct spool_file *f);

/* Fills *ev as a pending event of the file `file_id` whose line starts at `line_offset`: rule
 * r1, event name api_calls, payload keys stripe_customer_id and value, customer cus_A (its key
 * the same), value 1, timestamp now. Its identifier is made when it is committed
 * (fixture_commit). */
void fixture_event(struct event *ev, int64_t file_id, int64_t line_offset);

/* The instance whose identifiers fixture_commit's events get. */
#define FIXTURE_INSTANCE "test"

/* Commits the `n` events of `evs` (in file order) with the file record *f through spool_commit,
 * as the tail does: each event's rule name, event name and payload keys stand for its
 * configured rule, its customer key, customer, value and timestamp are its fields, and an event
 * in state EVENT_DEAD is a dead letter with its last_error. Then fills each event committed now
 * with its id, queue position, identifier and created time as the spool gives them back
 * (spool_events_foreach), and gives those a line read again left out id 0. Returns
 * spool_commit's result (`err`). */
int fixture_commit(struct spool *sp, const struct spool_file *f, struct event *evs, size_t n,
                   char *err, size_t errlen);

#endif
