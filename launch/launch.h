/* launch.h — what the `dpt` command's files share: exit statuses and subcommands. */
#ifndef DPT_LAUNCH_H
#define DPT_LAUNCH_H

/* Exit status of the dpt command (README "Exit status"). */
enum { DPT_EXIT_OK = 0, DPT_EXIT_RUN = 1, DPT_EXIT_USAGE = 2, DPT_EXIT_STOPPED = 3 };

/* `dpt data ...`; called after MPI_Init on every rank. Returns the exit status. */
int dpt_launch_data(int argc, char **argv, int rank);

#endif
