/* Regression for issue 11 (SO_REUSEPORT): NPROC processes each make their own socket,
 * set SO_REUSEPORT, bind the same port and listen (the way multi-process servers
 * share a port without a common listener). Each answers every connection with
 * "pid <its pid>" and closes it.
 *
 *   reuseport_server PORT NPROC
 *
 * Each process prints "ready <pid>" once listening; the parent waits for SIGTERM, then
 * stops them all.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void serve(int port)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
        perror("SO_REUSEPORT");
        exit(2);
    }
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (bind(l, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(l, 16) < 0) {
        printf("error %s\n", strerror(errno));
        fflush(stdout);
        exit(2);
    }
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            exit(1);
        }
        char out[64];
        int n = snprintf(out, sizeof out, "pid %d\n", (int)getpid());
        if (write(c, out, (size_t)n) != n)
            perror("write");
        close(c);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: reuseport_server PORT NPROC\n");
        return 2;
    }
    int port = atoi(argv[1]), n = atoi(argv[2]);
    pid_t pids[32];
    if (n > 32)
        n = 32;
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        if (pids[i] == 0)
            serve(port);
        if (pids[i] < 0)
            return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sig;
    sigwait(&set, &sig);
    for (int i = 0; i < n; i++)
        kill(pids[i], SIGTERM);
    for (int i = 0; i < n; i++)
        waitpid(pids[i], NULL, 0);
    return 0;
}
