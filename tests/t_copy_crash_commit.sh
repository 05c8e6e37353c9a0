#!/usr/bin/env bash
# t_copy_crash_read_from_tail.sh with the agent dead just after the commit of the copy's lines
# (spool_commit_after:2; the first commit is the original's first lines), before read_copy marks
# the copy's record drained and before the original gets its new record from reset().
COPY_CRASH_AT=spool_commit_after:2
. "$(dirname "$0")/t_copy_crash_read_from_tail.sh"
