/* Unit tests of harden: the process's defences and the state directory's checks. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/harden.h"

#include "fixture.h"

/* Not dumpable and no core after harden_process; both back with allow, and off again without;
 * the umask 077. */
static void test_process(void **state)
{
	struct rlimit before, rl;
	char err[256] = "";
	mode_t old;

	(void)state;
	assert_int_equal(getrlimit(RLIMIT_CORE, &before), 0);
	assert_int_equal(harden_process(err, sizeof(err)), 0);
	assert_int_equal(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
	assert_int_equal(getrlimit(RLIMIT_CORE, &rl), 0);
	assert_int_equal(rl.rlim_cur, 0);
	assert_int_equal(rl.rlim_max, before.rlim_max);
	old = umask(022);
	assert_int_equal(old, 077);

	assert_int_equal(harden_core_dumps(1, err, sizeof(err)), 0);
	assert_int_equal(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 1);
	assert_int_equal(getrlimit(RLIMIT_CORE, &rl), 0);
	assert_int_equal(rl.rlim_cur, before.rlim_cur);
	assert_int_equal(harden_core_dumps(0, err, sizeof(err)), 0);
	assert_int_equal(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
	assert_int_equal(getrlimit(RLIMIT_CORE, &rl), 0);
	assert_int_equal(rl.rlim_cur, 0);
	/* Leave the test process as it was. */
	assert_int_equal(harden_core_dumps(1, err, sizeof(err)), 0);
}

/* check STATE MISSING_OK: harden_check_state_dir's result, its error in `err`. */
static int check(const char *dir, int missing_ok, char *err, size_t errlen)
{
	err[0] = '\0';
	return harden_check_state_dir(dir, missing_ok, err, errlen);
}

static void test_state_dir(void **state)
{
	struct fixture *fx = *state;
	char err[1024], dir[PATH_MAX], real[PATH_MAX], cwd[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s", fixture_path(fx, "state"));
	assert_int_equal(check(dir, 1, err, sizeof(err)), 0); /* not there yet: run makes it */
	assert_int_equal(check(dir, 0, err, sizeof(err)), -1);
	assert_non_null(strstr(err, strerror(ENOENT)));

	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(check(dir, 0, err, sizeof(err)), 0);
	/* A '/' at the end, "." and ".." as written in a configuration: the same directory. */
	snprintf(real, sizeof(real), "%s/./x/../state/", fx->dir);
	assert_int_equal(check(real, 0, err, sizeof(err)), 0);

	assert_int_equal(chmod(dir, 0770), 0);
	assert_int_equal(check(dir, 0, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "is writable by its group (mode 0770)"));
	assert_int_equal(chmod(dir, 0703), 0);
	assert_int_equal(check(dir, 0, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "is writable by others (mode 0703)"));
	assert_int_equal(chmod(dir, 0750), 0);
	assert_int_equal(check(dir, 0, err, sizeof(err)), 0);

	/* The files of the spool: regular files only. */
	assert_int_equal(symlink("/nowhere", fixture_path(fx, "state/spool.db-shm")), 0);
	assert_int_equal(check(dir, 0, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "spool.db-shm is a symbolic link, not a regular file"));
	assert_int_equal(unlink(fixture_path(fx, "state/spool.db-shm")), 0);
	fixture_write_text(fixture_path(fx, "state/agent.state"), "");
	assert_int_equal(chmod(fixture_path(fx, "state/agent.state"), 0666), 0);
	assert_int_equal(check(dir, 0, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "agent.state is writable by others (mode 0666)"));
	assert_int_equal(chmod(fixture_path(fx, "state/agent.state"), 0600), 0);
	assert_int_equal(check(dir, 0, err, sizeof(err)), 0);

	/* Through a link: refused, with the real path to write instead. */
	assert_int_equal(symlink(dir, fixture_path(fx, "link")), 0);
	assert_int_equal(check(fixture_path(fx, "link"), 0, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "is reached through a symbolic link (its real path is "));
	assert_non_null(strstr(err, "set state_dir = "));

	/* Relative: the working directory's. */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(fx->dir), 0);
	assert_int_equal(check("state", 0, err, sizeof(err)), 0);
	assert_int_equal(check("link", 0, err, sizeof(err)), -1);
	assert_int_equal(chdir(cwd), 0);

	/* Not a directory. */
	fixture_write_text(fixture_path(fx, "file"), "");
	assert_int_equal(check(fixture_path(fx, "file"), 0, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "is not a directory"));
	assert_int_equal(check("", 1, err, sizeof(err)), -1);
	assert_int_equal(check(NULL, 1, err, sizeof(err)), -1);
}

/* The directories above it: writable by others or the group only with the sticky bit (whoever
 * may write one may rename the state directory away), for a missing state directory too. */
static void test_state_dir_parents(void **state)
{
	struct fixture *fx = *state;
	char err[1024], parent[PATH_MAX], dir[PATH_MAX], deep[PATH_MAX];

	snprintf(parent, sizeof(parent), "%s", fixture_path(fx, "shared"));
	snprintf(dir, sizeof(dir), "%s", fixture_path(fx, "shared/state"));
	snprintf(deep, sizeof(deep), "%s", fixture_path(fx, "shared/a/b/state"));
	assert_int_equal(mkdir(parent, 0755), 0);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(check(dir, 0, err, sizeof(err)), 0);
	assert_int_equal(chmod(parent, 0777), 0);
	assert_int_equal(check(dir, 0, err, sizeof(err)), -1);
	assert_non_null(
	    strstr(err, "which is writable by others without the sticky bit (mode 0777)"));
	assert_int_equal(check(deep, 1, err, sizeof(err)),
	                 -1); /* not there yet: where run makes it */
	assert_non_null(
	    strstr(err, "which is writable by others without the sticky bit (mode 0777)"));
	assert_int_equal(chmod(parent, 0775), 0);
	assert_int_equal(check(dir, 0, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "which is writable by its group without the sticky bit"));
	assert_int_equal(chmod(parent, 01777), 0); /* as /tmp */
	assert_int_equal(check(dir, 0, err, sizeof(err)), 0);
	assert_int_equal(check(deep, 1, err, sizeof(err)), 0);
	if (geteuid() == 0) {
		assert_int_equal(chmod(parent, 0755), 0);
		assert_int_equal(chown(parent, 65534, 65534), 0);
		assert_int_equal(check(dir, 0, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "which belongs to uid 65534"));
		assert_int_equal(chown(parent, 0, 0), 0);
	}
}

/* Another owner: only root can make one. */
static void test_state_dir_owner(void **state)
{
	struct fixture *fx = *state;
	char err[1024], dir[PATH_MAX];

	if (geteuid() != 0)
		skip();
	snprintf(dir, sizeof(dir), "%s", fixture_path(fx, "theirs"));
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(chown(dir, 65534, 65534), 0);
	assert_int_equal(check(dir, 0, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "belongs to uid 65534"));
	assert_non_null(strstr(err, "not to the user running logmeter (uid 0"));
	assert_int_equal(chown(dir, 0, 0), 0);
	fixture_write_text(fixture_path(fx, "theirs/spool.db"), "");
	assert_int_equal(chown(fixture_path(fx, "theirs/spool.db"), 65534, 65534), 0);
	assert_int_equal(check(dir, 0, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "spool.db belongs to uid 65534"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_process),
	    cmocka_unit_test_setup_teardown(test_state_dir, fixture_setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_state_dir_owner, fixture_setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_state_dir_parents, fixture_setup,
	                                    fixture_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
