/* Regression for issue 11 (2): a one-shot server that sends a file to each client with
 * one of several send paths, under one of several readiness APIs, on a non-blocking
 * socket, the way web servers do.
 *
 *   send_server PORT FILE NCLIENTS METHOD WAIT
 *     METHOD: write | sendfile | writev | splice | msgmore | cork
 *     WAIT:   et (epoll EPOLLET) | lt (epoll level-triggered) | poll | select
 *
 * Prints "listening PORT", then "sent N" per client. Each client gets the whole file
 * (the test checks its sha256), then the server closes the connection.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static const char *method, *waitmode;
static int fdin;
static off_t fsize;
static char *map; /* the file's bytes, for write/writev/msgmore */

static void die(const char *what)
{
    fprintf(stderr, "send_server: %s: %s\n", what, strerror(errno));
    exit(2);
}

/* Wait until fd is writable, the way WAIT says. */
static void wait_writable(int fd)
{
    if (!strcmp(waitmode, "et") || !strcmp(waitmode, "lt")) {
        static int ep = -1, registered = -1;
        if (ep < 0 && (ep = epoll_create1(0)) < 0)
            die("epoll_create1");
        if (registered != fd) {
            struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
            if (!strcmp(waitmode, "et"))
                ev.events |= EPOLLET;
            if (registered >= 0)
                epoll_ctl(ep, EPOLL_CTL_DEL, registered, NULL);
            if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
                die("epoll_ctl");
            registered = fd;
        }
        struct epoll_event out;
        int n = epoll_wait(ep, &out, 1, 20000);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        if (n == 0) {
            fprintf(stderr, "send_server: no EPOLLOUT for 20 s (stalled)\n");
            exit(3);
        }
    } else if (!strcmp(waitmode, "poll")) {
        struct pollfd p = {fd, POLLOUT, 0};
        int n = poll(&p, 1, 20000);
        if (n == 0) {
            fprintf(stderr, "send_server: no POLLOUT for 20 s (stalled)\n");
            exit(3);
        }
    } else {
        fd_set w;
        FD_ZERO(&w);
        FD_SET(fd, &w);
        struct timeval tv = {20, 0};
        int n = select(fd + 1, NULL, &w, NULL, &tv);
        if (n == 0) {
            fprintf(stderr, "send_server: not writable for 20 s (stalled)\n");
            exit(3);
        }
    }
}

/* One attempt to move bytes at *off; returns bytes moved, 0 for EAGAIN. */
static ssize_t send_some(int s, off_t *off, int pipefd[2])
{
    size_t left = (size_t)(fsize - *off);
    ssize_t n;
    if (!strcmp(method, "sendfile")) {
        n = sendfile(s, fdin, off, left);
        if (n > 0)
            return n; /* sendfile advanced *off */
    } else if (!strcmp(method, "splice")) {
        /* file -> pipe -> socket, as a proxy would */
        static size_t inpipe;
        if (!inpipe) {
            loff_t lo = *off;
            ssize_t m = splice(fdin, &lo, pipefd[1], NULL, left < 65536 ? left : 65536,
                               SPLICE_F_MOVE);
            if (m < 0)
                die("splice file->pipe");
            inpipe = (size_t)m;
        }
        n = splice(pipefd[0], NULL, s, NULL, inpipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            inpipe -= (size_t)n;
            *off += n;
            return n;
        }
    } else if (!strcmp(method, "writev")) {
        /* three pieces per call, the way a server writes header + body pieces */
        size_t a = left < 1000 ? left : 1000, rest = left - a;
        size_t b = rest < 70000 ? rest : 70000, c = rest - b < 200000 ? rest - b : 200000;
        struct iovec iov[3] = {{map + *off, a}, {map + *off + a, b}, {map + *off + a + b, c}};
        n = writev(s, iov, 3);
        if (n > 0) {
            *off += n;
            return n;
        }
    } else if (!strcmp(method, "msgmore")) {
        size_t chunk = left < 3000 ? left : 3000; /* small pieces, all but the last MORE */
        n = send(s, map + *off, chunk, chunk < left ? MSG_MORE : 0);
        if (n > 0) {
            *off += n;
            return n;
        }
    } else { /* write, cork */
        n = write(s, map + *off, left < 100000 ? left : 100000);
        if (n > 0) {
            *off += n;
            return n;
        }
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR)
        die(method);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: send_server PORT FILE NCLIENTS "
                        "write|sendfile|writev|splice|msgmore|cork et|lt|poll|select\n");
        return 2;
    }
    int port = atoi(argv[1]), nclients = atoi(argv[3]);
    method = argv[4];
    waitmode = argv[5];
    fdin = open(argv[2], O_RDONLY);
    if (fdin < 0)
        die("open");
    struct stat st;
    fstat(fdin, &st);
    fsize = st.st_size;
    map = malloc((size_t)fsize + 1);
    if (!map || pread(fdin, map, (size_t)fsize, 0) != fsize)
        die("read file");
    int pipefd[2];
    if (pipe(pipefd) < 0)
        die("pipe");
    int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (l < 0 || bind(l, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(l, 16) < 0)
        die("listen");
    printf("listening %d\n", port);
    fflush(stdout);
    for (int i = 0; i < nclients; i++) {
        struct pollfd p = {l, POLLIN, 0};
        if (poll(&p, 1, 60000) != 1)
            die("poll listener");
        int s = accept4(l, NULL, NULL, SOCK_NONBLOCK);
        if (s < 0)
            die("accept4");
        if (!strcmp(method, "cork") && setsockopt(s, IPPROTO_TCP, TCP_CORK, &one, sizeof one) < 0)
            die("TCP_CORK");
        off_t off = 0;
        while (off < fsize) {
            if (!send_some(s, &off, pipefd))
                wait_writable(s);
        }
        if (!strcmp(method, "cork")) {
            int zero = 0;
            if (setsockopt(s, IPPROTO_TCP, TCP_CORK, &zero, sizeof zero) < 0)
                die("uncork");
        }
        printf("sent %lld\n", (long long)off);
        fflush(stdout);
        shutdown(s, SHUT_WR);
        /* wait for the client's end (EOF) before closing, so nothing is reset */
        char buf[256];
        for (;;) {
            struct pollfd q = {s, POLLIN, 0};
            if (poll(&q, 1, 30000) != 1)
                break;
            ssize_t r = read(s, buf, sizeof buf);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                break;
        }
        close(s);
    }
    return 0;
}
