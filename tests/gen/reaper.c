// SPDX-License-Identifier: MIT
/*
 * reaper STATUSFILE CMD [ARG...]: run CMD as a child subreaper, so that a
 * daemon CMD forks (`udfs mount` without -f) becomes our child when its
 * parent exits; wait for every descendant and append one line per exit to
 * STATUSFILE: "PID exit N" or "PID signal N". Exits 0 when all of them
 * exited 0, else 1. Lets the mount tests run the daemon the way fstab and
 * systemd do and still learn how it ended.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	FILE *out;
	pid_t pid;
	int status, bad = 0;

	if (argc < 3) {
		fprintf(stderr, "usage: reaper STATUSFILE CMD [ARG...]\n");
		return 2;
	}
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
		perror("reaper: PR_SET_CHILD_SUBREAPER");
		return 2;
	}
	out = fopen(argv[1], "a");
	if (!out) {
		perror(argv[1]);
		return 2;
	}
	setvbuf(out, NULL, _IOLBF, 0);
	pid = fork();
	if (pid < 0) {
		perror("reaper: fork");
		return 2;
	}
	if (pid == 0) {
		fclose(out);
		execvp(argv[2], argv + 2);
		perror(argv[2]);
		_exit(127);
	}
	while ((pid = wait(&status)) > 0 || errno == EINTR) {
		if (pid <= 0)
			continue;
		if (WIFEXITED(status)) {
			fprintf(out, "%d exit %d\n", (int)pid,
				WEXITSTATUS(status));
			bad |= WEXITSTATUS(status) != 0;
		} else if (WIFSIGNALED(status)) {
			fprintf(out, "%d signal %d\n", (int)pid,
				WTERMSIG(status));
			bad = 1;
		}
	}
	fclose(out);
	return bad;
}
