/*
 * main - the fastblocks binary's dispatcher: "fastblocks CMD [options]",
 * "fastblocks --version", "fastblocks --help". Each subcommand parses its
 * own arguments (commands.h); this file only picks one.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/common.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"put", fb_cmd_put, "store images (files, directories or stdin); print their ids"},
    {"get", fb_cmd_get, "write an image's WebP bytes to a file or a pipe"},
    {"rm", fb_cmd_rm, "delete images"},
    {"ls", fb_cmd_ls, "list the stored images"},
    {"stat", fb_cmd_stat, "show store, block and cache statistics"},
    {"verify", fb_cmd_verify, "check every record of every block; report damage"},
    {"compact", fb_cmd_compact, "reclaim the space of deleted images"},
    {"keygen", fb_cmd_keygen, "print a new Fernet encryption key"},
    {"rekey", fb_cmd_rekey, "re-encrypt every image with the first key"},
    {"serve", fb_cmd_serve, "run the HTTP image service"},
};

static void usage(FILE *f)
{
    fputs("Usage: fastblocks COMMAND [OPTIONS] [ARGS]\n"
          "\n"
          "FastBlocks stores images as WebP in append-only block files.\n"
          "\n"
          "Commands:\n",
          f);
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        fprintf(f, "  %-9s %s\n", commands[k].name, commands[k].summary);
    fputs("\n"
          "Run 'fastblocks COMMAND --help' for the options and examples of a command.\n"
          "Every command takes --data DIR (default ./data, or FASTBLOCKS_DATA).\n"
          "\n"
          "Exit codes: 0 ok, 1 failure, 2 usage error.\n"
          "  fastblocks --version    print the version\n",
          f);
}

int main(int argc, char **argv)
{
    const char *name;
    if (argc < 2) {
        usage(stderr);
        return FB_EXIT_USAGE;
    }
    name = argv[1];
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0 || strcmp(name, "version") == 0) {
        printf("fastblocks %s\n", fb_version());
        return FB_EXIT_OK;
    }
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return FB_EXIT_OK;
    }
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++) {
        if (strcmp(name, commands[k].name) != 0)
            continue;
        /* A server must survive clients that hang up (libmicrohttpd expects
         * the application to ignore SIGPIPE); the other commands keep the
         * default, so that "fastblocks ls | head" ends quietly. */
        if (commands[k].run == fb_cmd_serve)
            signal(SIGPIPE, SIG_IGN);
        return commands[k].run(argc - 1, argv + 1);
    }
    if (name[0] == '-')
        fprintf(stderr, "fastblocks: unknown option '%s' (see 'fastblocks --help')\n", name);
    else
        fprintf(stderr, "fastblocks: unknown command '%s' (see 'fastblocks --help')\n", name);
    return FB_EXIT_USAGE;
}
