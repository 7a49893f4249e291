"""Lab 09 reference: a TCP echo server and client in C (as strings, installed with the
package). ``write_sources(folder)`` puts ``echo_server.c`` and ``echo_client.c`` there."""

from __future__ import annotations

from pathlib import Path

SERVER = r"""/* echo_server PORT -- a TCP echo server (RFC 862), one connection after another. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a peer that resets: write() fails with EPIPE instead */
    int port = atoi(argv[1]);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) {
        perror("socket");
        return 1;
    }
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(s, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("bind");
        return 1;
    }
    if (listen(s, 16) < 0) {
        perror("listen");
        return 1;
    }
    printf("listening on port %d\n", port);
    fflush(stdout);
    for (;;) {
        struct sockaddr_in peer;
        socklen_t peer_len = sizeof peer;
        int c = accept(s, (struct sockaddr *)&peer, &peer_len);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            perror("accept");
            return 1;
        }
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
        fprintf(stderr, "connection from %s:%d\n", ip, ntohs(peer.sin_port));
        static char buf[65536];
        long total = 0;
        ssize_t n;
        while ((n = read(c, buf, sizeof buf)) != 0) {
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                perror("read");
                break;
            }
            if (write_all(c, buf, (size_t)n) < 0) {
                perror("write");
                break;
            }
            total += n;
        }
        fprintf(stderr, "echoed %ld bytes\n", total);
        close(c);
    }
}
"""

CLIENT = r"""/* echo_client HOST PORT -- send stdin to HOST:PORT, print what comes back.
 *
 * Reads and writes at the same time (poll): an echo server sends back while we are
 * still sending, and if we only wrote, both sides' buffers would fill and stop. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s HOST PORT\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct addrinfo hints = {0}, *res;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    int err = getaddrinfo(argv[1], argv[2], &hints, &res);
    if (err != 0) {
        fprintf(stderr, "echo_client: %s: %s\n", argv[1], gai_strerror(err));
        return 1;
    }
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) {
        perror("socket");
        return 1;
    }
    if (connect(s, res->ai_addr, res->ai_addrlen) < 0) {
        perror("connect");
        return 1;
    }
    freeaddrinfo(res);
    fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);

    static char out[65536], in[65536];
    size_t out_len = 0, out_off = 0;
    int stdin_open = 1;
    for (;;) {
        struct pollfd fds[2];
        fds[0].fd = (stdin_open && out_off == out_len) ? 0 : -1;
        fds[0].events = POLLIN;
        fds[1].fd = s;
        fds[1].events = POLLIN | (out_off < out_len ? POLLOUT : 0);
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            perror("poll");
            return 1;
        }
        if (fds[0].fd >= 0 && fds[0].revents) {
            ssize_t n = read(0, out, sizeof out);
            if (n <= 0) {
                stdin_open = 0;
                shutdown(s, SHUT_WR); /* half-close: "that is all I will send" */
            } else {
                out_len = (size_t)n;
                out_off = 0;
            }
        }
        if (fds[1].revents & POLLOUT) {
            ssize_t n = write(s, out + out_off, out_len - out_off);
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                perror("write");
                return 1;
            }
            if (n > 0)
                out_off += (size_t)n;
        }
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(s, in, sizeof in);
            if (n == 0)
                break; /* the server closed: all the echo has arrived */
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    continue;
                perror("read");
                return 1;
            }
            if (write_all(1, in, (size_t)n) < 0) {
                perror("write stdout");
                return 1;
            }
        }
    }
    close(s);
    return 0;
}
"""


def write_sources(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "echo_server.c").write_text(SERVER)
    (folder / "echo_client.c").write_text(CLIENT)
    return folder
