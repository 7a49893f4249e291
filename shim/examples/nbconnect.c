/* A non-blocking connect with epoll, then (optionally) an echo check: used by the tests
 * to check EINPROGRESS / writable-when-connected / SO_ERROR under `tcplab run`.
 *
 *   nbconnect [-b] HOST PORT [NBYTES]
 *
 * -b uses a blocking connect instead. Prints "connected LOCAL PEER", or
 * "error ERRNAME" (exit 3) when the connection fails. With NBYTES it sends that many
 * pattern bytes, shuts down writing, reads the echo to EOF and prints "echo ok N"
 * (exit 0) or "echo mismatch ..." (exit 4).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail(const char *what, int err)
{
    printf("error %s (%s: %s)\n", strerrorname_np(err) ? strerrorname_np(err) : "?", what,
           strerror(err));
    return 3;
}

static unsigned char pattern(size_t i)
{
    return (unsigned char)((i * 7 + i / 251) & 0xFF);
}

int main(int argc, char **argv)
{
    int blocking = 0, a = 1;
    if (argc > 1 && !strcmp(argv[1], "-b")) {
        blocking = 1;
        a = 2;
    }
    if (argc - a < 2) {
        fprintf(stderr, "usage: %s [-b] HOST PORT [NBYTES]\n", argv[0]);
        return 2;
    }
    size_t nbytes = argc - a > 2 ? strtoul(argv[a + 2], NULL, 10) : 0;
    struct sockaddr_in sin = {0};
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)atoi(argv[a + 1]));
    if (inet_pton(AF_INET, argv[a], &sin.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", argv[a]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM | (blocking ? 0 : SOCK_NONBLOCK), 0);
    if (fd < 0)
        return fail("socket", errno);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
        if (blocking || errno != EINPROGRESS)
            return fail("connect", errno);
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        struct epoll_event out;
        int n = epoll_wait(ep, &out, 1, 20000);
        if (n == 0)
            return fail("epoll_wait (no writability in 20 s)", ETIMEDOUT);
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            return fail("getsockopt", errno);
        if (err)
            return fail("SO_ERROR", err);
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    } else if (!blocking) {
        printf("note: non-blocking connect completed at once\n");
    }
    struct sockaddr_in me, peer;
    socklen_t ml = sizeof me, pl = sizeof peer;
    if (getsockname(fd, (struct sockaddr *)&me, &ml) < 0)
        return fail("getsockname", errno);
    if (getpeername(fd, (struct sockaddr *)&peer, &pl) < 0)
        return fail("getpeername", errno);
    char mine[32], theirs[32];
    inet_ntop(AF_INET, &me.sin_addr, mine, sizeof mine);
    inet_ntop(AF_INET, &peer.sin_addr, theirs, sizeof theirs);
    printf("connected %s:%d %s:%d\n", mine, ntohs(me.sin_port), theirs, ntohs(peer.sin_port));
    fflush(stdout);
    if (!nbytes)
        return 0;
    if (blocking) { /* the echo part is non-blocking either way */
        int one = 1;
        ioctl(fd, FIONBIO, &one);
    }
    ev.events = EPOLLIN | EPOLLOUT;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    size_t sent = 0, got = 0;
    int shut = 0;
    unsigned char buf[65536];
    while (got < nbytes || !shut) {
        struct epoll_event out;
        int n = epoll_wait(ep, &out, 1, 30000);
        if (n == 0)
            return fail("echo (stalled 30 s)", ETIMEDOUT);
        if (sent < nbytes) {
            size_t k = 0;
            for (; k < sizeof buf && sent + k < nbytes; k++)
                buf[k] = pattern(sent + k);
            ssize_t w = write(fd, buf, k);
            if (w > 0)
                sent += (size_t)w;
            else if (w < 0 && errno != EAGAIN)
                return fail("write", errno);
        } else if (!shut) {
            shutdown(fd, SHUT_WR);
            shut = 1;
            ev.events = EPOLLIN;
            epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
        }
        ssize_t r = read(fd, buf, sizeof buf);
        if (r > 0) {
            for (ssize_t i = 0; i < r; i++)
                if (buf[i] != pattern(got + (size_t)i)) {
                    printf("echo mismatch at %zu\n", got + (size_t)i);
                    return 4;
                }
            got += (size_t)r;
        } else if (r == 0) {
            if (got < nbytes) {
                printf("echo mismatch: EOF after %zu of %zu\n", got, nbytes);
                return 4;
            }
        } else if (errno != EAGAIN) {
            return fail("read", errno);
        }
    }
    /* the server's FIN follows */
    int flags = 0;
    ioctl(fd, FIONBIO, &flags);
    ssize_t r = read(fd, buf, sizeof buf);
    if (r != 0) {
        printf("echo mismatch: %zd extra bytes\n", r);
        return 4;
    }
    printf("echo ok %zu\n", got);
    close(fd);
    return 0;
}
