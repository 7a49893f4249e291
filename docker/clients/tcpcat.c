/*
 * tcpcat HOST PORT: a minimal netcat. Connects over TCP, copies stdin to the
 * connection and the connection to stdout. At EOF on stdin it half-closes
 * (shutdown SHUT_WR) and keeps reading until the peer closes.
 *
 * It uses only the plain socket calls (getaddrinfo, socket, connect, poll, read,
 * write, shutdown, close), so under the shim (`tcplab run -- tcpcat ...`) it shows
 * what an unmodified C program does on the Python stack.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
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
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    int rc = getaddrinfo(argv[1], argv[2], &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "tcpcat: %s: %s\n", argv[1], gai_strerror(rc));
        return 1;
    }
    int s = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (s < 0) {
        perror("tcpcat: socket");
        return 1;
    }
    if (connect(s, res->ai_addr, res->ai_addrlen) < 0) {
        fprintf(stderr, "tcpcat: connect %s:%s: %s\n", argv[1], argv[2], strerror(errno));
        return 1;
    }
    freeaddrinfo(res);

    char buf[65536];
    int stdin_open = 1;
    for (;;) {
        struct pollfd fds[2] = {{.fd = s, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
        int n = poll(fds, stdin_open ? 2 : 1, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("tcpcat: poll");
            return 1;
        }
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = read(s, buf, sizeof buf);
            if (r < 0) {
                if (errno == EINTR || errno == EAGAIN)
                    continue;
                perror("tcpcat: read");
                return 1;
            }
            if (r == 0)
                break; /* peer closed */
            if (write_all(1, buf, (size_t)r) < 0) {
                perror("tcpcat: write stdout");
                return 1;
            }
        }
        if (stdin_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = read(0, buf, sizeof buf);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                stdin_open = 0;
                if (shutdown(s, SHUT_WR) < 0)
                    perror("tcpcat: shutdown");
            } else if (write_all(s, buf, (size_t)r) < 0) {
                perror("tcpcat: write socket");
                return 1;
            }
        }
    }
    close(s);
    return 0;
}
