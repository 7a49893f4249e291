/* A small epoll echo server (non-blocking accept4, edge cases of half-close handled):
 * used by the tests to run a C event-loop server under `tcplab run`.
 *
 *   epoll_server PORT [CONNECTIONS]
 *
 * Listens on 0.0.0.0:PORT, echoes every byte back, and after a client's FIN finishes
 * sending and then sends its own FIN. Prints "listening PORT" once ready. With
 * CONNECTIONS it exits after serving that many connections.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536

struct conn {
    int fd;
    char buf[BUF];
    size_t len;   /* bytes waiting to be echoed */
    int eof;      /* client sent FIN */
    int shut;     /* we sent ours */
};

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void update(int ep, struct conn *c)
{
    struct epoll_event ev = {0};
    ev.data.ptr = c;
    if (!c->eof && c->len < BUF)
        ev.events |= EPOLLIN | EPOLLRDHUP;
    if (c->len)
        ev.events |= EPOLLOUT;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl mod");
}

/* Returns 1 when the connection is finished. */
static int service(int ep, struct conn *c)
{
    for (;;) {
        int progress = 0;
        if (!c->eof && c->len < BUF) {
            ssize_t n = read(c->fd, c->buf + c->len, BUF - c->len);
            if (n > 0) {
                c->len += (size_t)n;
                progress = 1;
            } else if (n == 0) {
                c->eof = 1;
                progress = 1;
            } else if (errno != EAGAIN && errno != EINTR) {
                fprintf(stderr, "read: %s\n", strerror(errno));
                return 1;
            }
        }
        if (c->len) {
            ssize_t n = write(c->fd, c->buf, c->len);
            if (n > 0) {
                memmove(c->buf, c->buf + n, c->len - (size_t)n);
                c->len -= (size_t)n;
                progress = 1;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                fprintf(stderr, "write: %s\n", strerror(errno));
                return 1;
            }
        }
        if (c->eof && !c->len && !c->shut) {
            if (shutdown(c->fd, SHUT_WR) < 0)
                fprintf(stderr, "shutdown: %s\n", strerror(errno));
            c->shut = 1;
            return 1;
        }
        if (!progress)
            break;
    }
    update(ep, c);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [CONNECTIONS]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    long limit = argc > 2 ? atol(argv[2]) : -1;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ls < 0)
        die("socket");
    int one = 1;
    if (setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        die("setsockopt");
    struct sockaddr_in sin = {0};
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    if (bind(ls, (struct sockaddr *)&sin, sizeof sin) < 0)
        die("bind");
    if (listen(ls, 64) < 0)
        die("listen");
    socklen_t sl = sizeof sin;
    if (getsockname(ls, (struct sockaddr *)&sin, &sl) < 0)
        die("getsockname");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev) < 0)
        die("epoll_ctl");
    printf("listening %d\n", ntohs(sin.sin_port));
    fflush(stdout);
    long served = 0, open = 0;
    while (limit < 0 || served < limit || open > 0) {
        struct epoll_event evs[32];
        int n = epoll_wait(ep, evs, 32, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                for (;;) {
                    struct sockaddr_in peer;
                    socklen_t pl = sizeof peer;
                    int fd = accept4(ls, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) {
                        if (errno != EAGAIN && errno != EINTR)
                            perror("accept4");
                        break;
                    }
                    c = calloc(1, sizeof *c);
                    if (!c)
                        die("calloc");
                    c->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) < 0)
                        die("epoll_ctl add");
                    open++;
                    if (service(ep, c)) {
                        close(fd);
                        free(c);
                        open--;
                        served++;
                    }
                }
                continue;
            }
            if (service(ep, c)) {
                close(c->fd);
                free(c);
                open--;
                served++;
            }
        }
    }
    close(ls);
    printf("served %ld\n", served);
    return 0;
}
