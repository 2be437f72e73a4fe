/* commands.h: the forge tool's commands; each returns the process exit code. */
#ifndef FORGE_COMMANDS_H
#define FORGE_COMMANDS_H

int cmd_run(int argc, char **argv);
int cmd_attn(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_check(int argc, char **argv);
/* forge bench prefill (bench_prefill.c), argv after "prefill". */
int bench_prefill(int argc, char **argv);
/* forge bench decode (bench_decode.c), argv after "decode". */
int bench_decode(int argc, char **argv);

#endif
