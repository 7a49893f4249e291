/* Regression for issue 11 (1) and (5): a pre-forked server that drops privileges, the
 * way production servers run. The master binds and listens as root and forks workers;
 * each worker drops to nobody (setgroups, setgid, setuid) before its first accept(),
 * after one more step that MODE names:
 *
 *   prefork_server PORT NWORKERS MODE
 *     MODE: setuid    (only that)
 *           chroot    (chroot into an empty directory first)
 *           closefrom (close every descriptor but 0-2 and the listener first)
 *
 * Workers accept forever; per connection they set TCP_NODELAY, read one line, and
 * answer "served <pid> uid <uid> peer <addr> local <addr> nodelay <ok|errno>" (the
 * peer from accept, the local address from getsockname, "-" if that failed).
 * Each worker prints "worker <pid> uid <uid> ready" and, when accept fails, "worker
 * <pid> accept <ERRNO>" and exits 1. The master prints "listening PORT" and waits; on
 * SIGTERM it stops the workers; it exits 0 once every worker is gone.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOBODY 65534

static const char *errname(int e)
{
    switch (e) {
    case EACCES: return "EACCES";
    case ENETDOWN: return "ENETDOWN";
    case ECONNRESET: return "ECONNRESET";
    case EINVAL: return "EINVAL";
    case EBADF: return "EBADF";
    case EPROTO: return "EPROTO";
    case ENOENT: return "ENOENT";
    case ETIMEDOUT: return "ETIMEDOUT";
    default: return "E?";
    }
}

static void worker(int l, const char *mode, const char *jail)
{
    if (!strcmp(mode, "chroot")) {
        if (chroot(jail) < 0 || chdir("/") < 0) {
            perror("chroot");
            exit(2);
        }
    } else if (!strcmp(mode, "closefrom")) {
        if (l != 3) {
            if (dup2(l, 3) < 0)
                exit(2);
            close(l);
            l = 3;
        }
        closefrom(4);
    }
    if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0) {
        perror("drop privileges");
        exit(2);
    }
    printf("worker %d uid %d ready\n", (int)getpid(), (int)getuid());
    fflush(stdout);
    for (;;) {
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        int c = accept(l, (struct sockaddr *)&peer, &plen);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            printf("worker %d accept %s\n", (int)getpid(), errname(errno));
            fflush(stdout);
            exit(1);
        }
        int one = 1;
        const char *nodelay =
            setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0 ? "ok" : errname(errno);
        char local[64] = "-", remote[64] = "-";
        struct sockaddr_in me;
        socklen_t mlen = sizeof me;
        if (getsockname(c, (struct sockaddr *)&me, &mlen) == 0)
            snprintf(local, sizeof local, "%s:%d", inet_ntoa(me.sin_addr), ntohs(me.sin_port));
        snprintf(remote, sizeof remote, "%s:%d", inet_ntoa(peer.sin_addr), ntohs(peer.sin_port));
        char line[256];
        ssize_t n = read(c, line, sizeof line);
        (void)n;
        char out[512];
        int len = snprintf(out, sizeof out, "served %d uid %d peer %s local %s nodelay %s\n",
                           (int)getpid(), (int)getuid(), remote, local, nodelay);
        if (write(c, out, (size_t)len) != len)
            perror("write");
        close(c);
        printf("%s", out);
        fflush(stdout);
    }
}

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: prefork_server PORT NWORKERS setuid|chroot|closefrom\n");
        return 2;
    }
    int port = atoi(argv[1]), nworkers = atoi(argv[2]);
    const char *mode = argv[3];
    char jail[] = "/tmp/prefork-jail-XXXXXX";
    if (!strcmp(mode, "chroot") && !mkdtemp(jail)) {
        perror("mkdtemp");
        return 2;
    }
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (l < 0 || bind(l, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(l, 64) < 0) {
        perror("listen");
        return 2;
    }
    pid_t pids[64];
    if (nworkers > 64)
        nworkers = 64;
    for (int i = 0; i < nworkers; i++) {
        pids[i] = fork();
        if (pids[i] < 0) {
            perror("fork");
            return 2;
        }
        if (pids[i] == 0)
            worker(l, mode, jail);
    }
    close(l);
    printf("listening %d\n", port);
    fflush(stdout);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    int left = nworkers;
    while (left > 0) {
        if (stop) {
            for (int i = 0; i < nworkers; i++)
                kill(pids[i], SIGTERM);
            stop = 0;
        }
        if (waitpid(-1, NULL, 0) > 0)
            left--;
    }
    if (!strcmp(mode, "chroot"))
        rmdir(jail);
    return 0;
}
