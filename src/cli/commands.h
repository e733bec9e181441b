/*
 * commands - the subcommands of the fastblocks binary. Each takes the argv
 * that follows "fastblocks" (argv[0] is the subcommand's name) and returns
 * the process exit code: 0 ok, 1 failure, 2 usage (see common.h).
 *
 * fb_cmd_serve lives in cmd_serve.c (the HTTP service); every other one in
 * cmd_<name>.c.
 */
#ifndef FB_CLI_COMMANDS_H
#define FB_CLI_COMMANDS_H

int fb_cmd_put(int argc, char **argv);
int fb_cmd_get(int argc, char **argv);
int fb_cmd_rm(int argc, char **argv);
int fb_cmd_ls(int argc, char **argv);
int fb_cmd_stat(int argc, char **argv);
int fb_cmd_verify(int argc, char **argv);
int fb_cmd_compact(int argc, char **argv);
int fb_cmd_keygen(int argc, char **argv);
int fb_cmd_rekey(int argc, char **argv);
int fb_cmd_serve(int argc, char **argv);

#endif
