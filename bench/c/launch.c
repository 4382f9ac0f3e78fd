/* Not a benchmark: the C suite's launcher (bench/src/process.rs). It forks, execs PROGRAM with
 * LD_PRELOAD set to PRELOAD in the child alone, waits for it and writes to RESULT_FILE how it
 * ended, its wall time from fork to exit and its rusage from wait4.
 *
 * Why a launcher: the kernel's ru_maxrss of a process counts the resident set it had before
 * exec. hakmem-bench starts children with vfork and exec, so a benchmark started directly would
 * report at least hakmem-bench's own peak (hundreds of MiB after the Rust suite). A child forked
 * from this small program starts from this program's few hundred KiB instead.
 *
 * Usage: launch RESULT_FILE PRELOAD PROGRAM [ARGS...]   (PRELOAD "-": nothing preloaded)
 * RESULT_FILE gets one line: "exited N|signaled N wall SECS maxrss_kib KIB cpu SECS". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: launch RESULT_FILE PRELOAD PROGRAM [ARGS...]\n");
        return 2;
    }
    FILE *result = fopen(argv[1], "w");
    if (!result) {
        perror(argv[1]);
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 2;
    }
    if (pid == 0) {
        if (strcmp(argv[2], "-") != 0)
            setenv("LD_PRELOAD", argv[2], 1);
        execv(argv[3], &argv[3]);
        perror(argv[3]);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid) {
        perror("wait4");
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
    fprintf(result, "%s %d wall %.6f maxrss_kib %ld cpu %.6f\n",
            WIFSIGNALED(status) ? "signaled" : "exited",
            WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), wall, ru.ru_maxrss, cpu);
    return fclose(result) == 0 ? 0 : 2;
}
