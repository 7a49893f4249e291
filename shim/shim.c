/* libsocketoverride.so: moves a program's IPv4 and IPv6 (dual-stack) TCP and UDP sockets
 * onto the tcplab stack.
 *
 * Loaded with LD_PRELOAD (`tcplab run -- CMD` sets it up). The design, in short (the
 * full story is docs/shim-protocol.md):
 *
 *  - socket(AF_INET, SOCK_STREAM|SOCK_DGRAM) asks the daemon for a socket over a control
 *    connection (AF_UNIX SOCK_SEQPACKET at $TCPLAB_SOCKET). The daemon answers with one
 *    end of a socketpair (SOCK_STREAM for TCP, SOCK_SEQPACKET for UDP) and keeps the
 *    other end. The program gets a real kernel fd, so read/write/poll/epoll/select/dup/
 *    fork/exec/sendfile work untouched and back-pressure is the socket buffer's.
 *  - The daemon binds the program's end to an abstract name "\0tcplab-T-..." (or -U-),
 *    so any process can tell, statelessly (getsockname), that an fd is a stack socket:
 *    this survives dup, fork and exec without tables.
 *  - Control calls (bind, listen, connect, shutdown, get/setsockopt, get*name, UDP
 *    sendto with an address) send a request with the socket's own fd attached
 *    (SCM_RIGHTS): the daemon recognises the socket by the fd's inode, so a process can
 *    only act on sockets it holds.
 *  - accept is no control call: a listener's own stream carries its connections (one
 *    record each, the connection attached), so it keeps working after setuid, chroot
 *    or closefrom; a forked child gets a control connection of its own from its parent
 *    (ADOPT), so its other calls work after it drops privileges too.
 *  - AF_INET6 sockets are the stack's AF_INET6 sockets (dual-stack unless IPV6_V6ONLY);
 *    their addresses travel as they are (family 10, v4-mapped ones included).
 *  - Everything else (other families and types, non-stack fds) goes to libc untouched.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "tlproto.h"

#define EXPORT __attribute__((visibility("default")))

#define DEFAULT_SOCKET_PATH "/run/tcplab/stack.sock"
#define NAME_PREFIX "tcplab-"   /* abstract names: "\0tcplab-T-..." / "\0tcplab-U-..." */
#define CTL_TIMEOUT_MS 30000    /* a daemon that does not answer within this is broken */
#define CTL_FD_MIN 512          /* keep the control fd out of the way of low fd numbers */
#define CRED_MARK 0x54430000u   /* UDP source addresses ride in SCM_CREDENTIALS: */
#define CRED_MARK_MASK 0xFFFF0000u /* uid = IPv4 address, gid = CRED_MARK | port */

enum kind { K_NONE = 0, K_TCP = 1, K_UDP = 2 };

/* ------------------------------------------------------------------ libc entry points */

static struct {
    int (*socket)(int, int, int);
    int (*bind)(int, const struct sockaddr *, socklen_t);
    int (*listen)(int, int);
    int (*accept)(int, struct sockaddr *, socklen_t *);
    int (*accept4)(int, struct sockaddr *, socklen_t *, int);
    int (*connect)(int, const struct sockaddr *, socklen_t);
    int (*shutdown)(int, int);
    int (*getsockname)(int, struct sockaddr *, socklen_t *);
    int (*getpeername)(int, struct sockaddr *, socklen_t *);
    int (*getsockopt)(int, int, int, void *, socklen_t *);
    int (*setsockopt)(int, int, int, const void *, socklen_t);
    ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
    ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
    ssize_t (*sendmsg)(int, const struct msghdr *, int);
    ssize_t (*recvmsg)(int, struct msghdr *, int);
    int (*recvmmsg)(int, struct mmsghdr *, unsigned int, int, struct timespec *);
    ssize_t (*recvfrom_chk)(int, void *, size_t, size_t, int, struct sockaddr *,
                            socklen_t *);
    int (*close)(int);
    int (*dup2)(int, int);
    int (*dup3)(int, int, int);
} real;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static int debug;

/* The control connection: one per process, guarded by a mutex (requests are short:
 * the daemon never makes a reply wait, blocking waits happen outside the lock). */
static pthread_mutex_t ctl_lock = PTHREAD_MUTEX_INITIALIZER;
static int ctl_fd = -1;
static pid_t ctl_pid;
static dev_t ctl_dev;
static ino_t ctl_ino;
static uint32_t ctl_seq;
static int warned;
static int creds_refused; /* SCM_CREDENTIALS refused once: send none (under ctl_lock) */

static void *next_symbol(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);
    return p;
}

/* fork: the child must not share the parent's control connection (their replies would
 * cross), and it may drop privileges or chroot before it makes its first call, when it
 * could no longer open the socket file. So before a fork the parent makes a
 * connection for the child (a socketpair, one end handed to the daemon with ADOPT);
 * the child starts with it, the parent closes its copy. */
static int child_ctl = -1;
static dev_t child_dev;
static ino_t child_ino;
#define ADOPT_TIMEOUT_MS 5000 /* a fork waits at most this for a daemon that hangs */

static int ctl_valid(void);
static int ctl_call_locked(struct tl_request *req, int fd_in, uint8_t *buf, size_t cap,
                           struct tl_reply *rep, int *fd_out, int timeout_ms);

static void atfork_prepare(void)
{
    pthread_mutex_lock(&ctl_lock);
    child_ctl = -1;
    if (!ctl_valid())
        return; /* no connection: the child opens one when it needs it, if it can */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 2 * CTL_FD_MIN) {
        int high = fcntl(sv[0], F_DUPFD_CLOEXEC, CTL_FD_MIN);
        if (high >= 0) {
            real.close(sv[0]);
            sv[0] = high;
        }
    }
    struct tl_request req;
    memset(&req, 0, sizeof req);
    req.op = TL_ADOPT;
    struct tl_reply rep;
    uint8_t buf[TL_HEADER_SIZE + 2 * TL_ADDR_SIZE + TL_MAX_OPTVAL];
    int fd_out, saved = errno;
    struct stat st;
    if (ctl_call_locked(&req, sv[1], buf, sizeof buf, &rep, &fd_out, ADOPT_TIMEOUT_MS) == 0 &&
        rep.status == 0 && fstat(sv[0], &st) == 0) {
        child_ctl = sv[0];
        child_dev = st.st_dev;
        child_ino = st.st_ino;
    } else {
        real.close(sv[0]);
    }
    if (fd_out >= 0)
        real.close(fd_out);
    real.close(sv[1]);
    errno = saved;
}

static void atfork_parent(void)
{
    if (child_ctl >= 0)
        real.close(child_ctl);
    child_ctl = -1;
    pthread_mutex_unlock(&ctl_lock);
}

static void atfork_child(void)
{
    /* (the getpid() check in ctl_valid() catches forks that skip these handlers) */
    if (ctl_fd >= 0)
        real.close(ctl_fd);
    ctl_fd = -1;
    if (child_ctl >= 0) {
        ctl_fd = child_ctl;
        ctl_pid = getpid();
        ctl_dev = child_dev;
        ctl_ino = child_ino;
    }
    child_ctl = -1;
    pthread_mutex_unlock(&ctl_lock);
}

static void init(void)
{
#define RESOLVE(field, name) real.field = next_symbol(name)
    RESOLVE(socket, "socket");
    RESOLVE(bind, "bind");
    RESOLVE(listen, "listen");
    RESOLVE(accept, "accept");
    RESOLVE(accept4, "accept4");
    RESOLVE(connect, "connect");
    RESOLVE(shutdown, "shutdown");
    RESOLVE(getsockname, "getsockname");
    RESOLVE(getpeername, "getpeername");
    RESOLVE(getsockopt, "getsockopt");
    RESOLVE(setsockopt, "setsockopt");
    RESOLVE(sendto, "sendto");
    RESOLVE(recvfrom, "recvfrom");
    RESOLVE(sendmsg, "sendmsg");
    RESOLVE(recvmsg, "recvmsg");
    RESOLVE(recvmmsg, "recvmmsg");
    RESOLVE(recvfrom_chk, "__recvfrom_chk");
    RESOLVE(close, "close");
    RESOLVE(dup2, "dup2");
    RESOLVE(dup3, "dup3");
#undef RESOLVE
    const char *path = getenv("TCPLAB_SOCKET");
    if (!path || !*path)
        path = DEFAULT_SOCKET_PATH;
    snprintf(socket_path, sizeof socket_path, "%s", path);
    const char *dbg = getenv("TCPLAB_DEBUG");
    debug = dbg && *dbg && strcmp(dbg, "0") != 0;
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static void ensure_init(void)
{
    pthread_once(&init_once, init);
}

__attribute__((constructor)) static void shim_constructor(void)
{
    ensure_init();
}

/* One line on stderr without stdio (no locks, no buffering surprises). */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    int saved = errno;
    ssize_t w = write(2, buf, (size_t)n);
    (void)w;
    errno = saved;
}

#define TRACE(fmt, ...)                                                                    \
    do {                                                                                   \
        if (debug)                                                                         \
            say("tcplab-shim[%d]: " fmt, (int)getpid(), __VA_ARGS__);                      \
    } while (0)

/* --------------------------------------------------------------- which fds are ours */

/* The letter of a stack socket's name ('T' TCP, 'U' UDP), 0 for anything else; errno
 * is preserved. */
static char shim_letter(int fd)
{
    struct sockaddr_un sa;
    socklen_t len = sizeof sa;
    int saved = errno;
    char c = 0;
    if (fd >= 0 && real.getsockname(fd, (struct sockaddr *)&sa, &len) == 0 &&
        sa.sun_family == AF_UNIX &&
        len >= offsetof(struct sockaddr_un, sun_path) + 1 + strlen(NAME_PREFIX) + 2 &&
        sa.sun_path[0] == '\0' && !memcmp(sa.sun_path + 1, NAME_PREFIX, strlen(NAME_PREFIX)))
        c = sa.sun_path[1 + strlen(NAME_PREFIX)];
    errno = saved;
    return c;
}

/* K_TCP / K_UDP for a stack socket, K_NONE for anything else; errno is preserved. */
static enum kind shim_kind(int fd)
{
    char c = shim_letter(fd);
    return c == 'T' ? K_TCP : c == 'U' ? K_UDP : K_NONE;
}

static int is_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && (fl & O_NONBLOCK);
}

static int is_loopback(uint32_t ip_net)
{
    return (ntohl(ip_net) >> 24) == 127;
}

/* -------------------------------------------------------------- control connection */

static void ctl_drop(void)
{
    if (ctl_fd >= 0)
        real.close(ctl_fd);
    ctl_fd = -1;
}

/* Is the cached control fd still ours (same process, same open socket)? */
static int ctl_valid(void)
{
    if (ctl_fd < 0)
        return 0;
    struct stat st;
    int same = fstat(ctl_fd, &st) == 0 && st.st_dev == ctl_dev && st.st_ino == ctl_ino;
    if (ctl_pid != getpid()) {
        /* A child that inherited the parent's connection: drop its copy, make its own. */
        if (same)
            real.close(ctl_fd);
        ctl_fd = -1;
        return 0;
    }
    if (!same) /* the program closed or reused our fd number: forget it, never close it */
        ctl_fd = -1;
    return same;
}

static int map_unreachable(int err)
{
    if (err == EACCES || err == EPERM)
        return EACCES;
    return ENETDOWN;
}

/* Move a new control fd out of the way (>= CTL_FD_MIN) and remember it as ours. */
static int ctl_adopt_fd(int fd)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 2 * CTL_FD_MIN) {
        int high = fcntl(fd, F_DUPFD_CLOEXEC, CTL_FD_MIN);
        if (high >= 0) {
            real.close(fd);
            fd = high;
        }
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        real.close(fd);
        errno = ENETDOWN;
        return -1;
    }
    ctl_fd = fd;
    ctl_pid = getpid();
    ctl_dev = st.st_dev;
    ctl_ino = st.st_ino;
    return 0;
}

/* The listener this process last accepted on (a hint, checked before use). */
static int hint_fd = -1;
static dev_t hint_dev;
static ino_t hint_ino;

static void remember_listener(int fd)
{
    struct stat st;
    if (fd != hint_fd && fstat(fd, &st) == 0) {
        hint_dev = st.st_dev;
        hint_ino = st.st_ino;
        hint_fd = fd;
    }
}

static char shim_letter(int fd);
static int is_listening(int fd);

/* No control connection, and the socket file cannot be opened (the process closed the
 * shim's descriptor, then dropped privileges or chrooted): hand the daemon one end of a
 * new socketpair through a listener the process holds (`fd` itself, or the one it last
 * accepted on), as SCM_RIGHTS on a one-byte message on the listener's own stream. The
 * daemon serves that end as a control connection for sockets the process holds (it
 * may not make new ones). Returns 0, or -1 when there is no such listener. */
static int ctl_via_listener(int fd)
{
    int l = -1;
    struct stat st;
    if (fd >= 0 && shim_letter(fd) == 'T' && is_listening(fd))
        l = fd;
    else if (hint_fd >= 0 && fstat(hint_fd, &st) == 0 && st.st_dev == hint_dev &&
             st.st_ino == hint_ino && shim_letter(hint_fd) == 'T' && is_listening(hint_fd))
        l = hint_fd;
    if (l < 0)
        return -1;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } cm;
    memset(&cm, 0, sizeof cm);
    char one = 1;
    struct iovec iov = {&one, 1};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cm.buf;
    msg.msg_controllen = sizeof cm.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &sv[1], sizeof(int));
    ssize_t n;
    do
        n = real.sendmsg(l, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    real.close(sv[1]);
    if (n != 1) {
        real.close(sv[0]);
        return -1;
    }
    TRACE("control connection handed in through listener %d", l);
    return ctl_adopt_fd(sv[0]);
}

static int ctl_open(int fd_in)
{
    int fd = real.socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, socket_path, strlen(socket_path));
    int rc;
    do
        rc = real.connect(fd, (struct sockaddr *)&sa, sizeof sa);
    while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        int err = errno;
        real.close(fd);
        if (ctl_via_listener(fd_in) == 0)
            return 0;
        if (!__atomic_exchange_n(&warned, 1, __ATOMIC_SEQ_CST))
            say("tcplab: cannot reach the stack daemon at %s: %s", socket_path, strerror(err));
        errno = map_unreachable(err);
        return -1;
    }
    return ctl_adopt_fd(fd);
}

/* Send one request (with fd_in attached when >= 0) and read its reply into buf.
 * Returns 0 with *rep decoded (rep->status may carry an errno) and *fd_out set to a
 * received descriptor or -1; or -1 with errno when the daemon cannot be asked (ENETDOWN,
 * EACCES) or answered nonsense (EPROTO), or the connection broke (ECONNRESET). */
static int ctl_call(struct tl_request *req, int fd_in, uint8_t *buf, size_t cap,
                    struct tl_reply *rep, int *fd_out)
{
    pthread_mutex_lock(&ctl_lock);
    int rc = ctl_call_locked(req, fd_in, buf, cap, rep, fd_out, CTL_TIMEOUT_MS);
    int err = errno;
    pthread_mutex_unlock(&ctl_lock);
    errno = err;
    return rc;
}

/* ctl_call with ctl_lock held (and left held). */
static int ctl_call_locked(struct tl_request *req, int fd_in, uint8_t *buf, size_t cap,
                           struct tl_reply *rep, int *fd_out, int timeout_ms)
{
    *fd_out = -1;
    for (int attempt = 0;; attempt++) {
        if (!ctl_valid() && ctl_open(fd_in) < 0)
            goto fail_locked;
        req->seq = ++ctl_seq;
        uint8_t head[TL_HEADER_SIZE + 8 + TL_MAX_OPTVAL]; /* SETSOCKOPT, the largest head */
        ssize_t hlen = tl_encode_request_head(req, head, sizeof head);
        if (hlen < 0) {
            errno = EINVAL;
            goto fail_locked;
        }
        struct iovec iov[2] = {{head, (size_t)hlen}, {(void *)req->payload, 0}};
        if (req->op == TL_SENDTO)
            iov[1].iov_len = req->payload_len;
        /* Every request carries who asks, now (SCM_CREDENTIALS: the kernel checks them
         * against our own ids; the daemon checks a privileged bind with them), and the
         * socket it is about (SCM_RIGHTS). */
        union {
            char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } cm;
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = iov;
        msg.msg_iovlen = iov[1].iov_len ? 2 : 1;
        memset(&cm, 0, sizeof cm);
        msg.msg_control = cm.buf;
        int creds = !creds_refused;
        msg.msg_controllen = (creds ? CMSG_SPACE(sizeof(struct ucred)) : 0) +
                             (fd_in >= 0 ? CMSG_SPACE(sizeof(int)) : 0);
        struct cmsghdr *c = msg.msg_controllen ? CMSG_FIRSTHDR(&msg) : NULL;
        if (creds) {
            struct ucred me = {getpid(), geteuid(), getegid()};
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_CREDENTIALS;
            c->cmsg_len = CMSG_LEN(sizeof me);
            memcpy(CMSG_DATA(c), &me, sizeof me);
        }
        if (!msg.msg_controllen)
            msg.msg_control = NULL;
        if (fd_in >= 0) {
            if (creds)
                c = CMSG_NXTHDR(&msg, c);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(c), &fd_in, sizeof(int));
        }
        ssize_t n;
        do
            n = real.sendmsg(ctl_fd, &msg, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0 && errno == EPERM && creds) {
            /* The kernel refused our ids (it should not: they are our own); let it put
             * in our real ids instead, from now on. */
            creds_refused = 1;
            attempt--;
            continue;
        }
        if (n < 0) {
            int err = errno;
            ctl_drop();
            /* The daemon restarted since we connected: the request never arrived. */
            if (attempt == 0 && (err == EPIPE || err == ECONNRESET || err == ENOTCONN))
                continue;
            errno = (err == EBADF || err == EINVAL) ? EBADF : ECONNRESET;
            goto fail_locked;
        }
        /* The reply: bounded wait, then exactly one record. */
        struct pollfd pfd = {ctl_fd, POLLIN, 0};
        int pr;
        do
            pr = poll(&pfd, 1, timeout_ms);
        while (pr < 0 && errno == EINTR);
        if (pr <= 0) {
            ctl_drop();
            say("tcplab: the stack daemon at %s did not answer", socket_path);
            errno = ETIMEDOUT;
            goto fail_locked;
        }
        union {
            char buf[CMSG_SPACE(4 * sizeof(int))];
            struct cmsghdr align;
        } rcm;
        struct iovec riov = {buf, cap};
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = &riov;
        msg.msg_iovlen = 1;
        msg.msg_control = rcm.buf;
        msg.msg_controllen = sizeof rcm.buf;
        do
            n = real.recvmsg(ctl_fd, &msg, MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        if (n <= 0) {
            ctl_drop();
            errno = ECONNRESET;
            goto fail_locked;
        }
        int fds[8], nfds = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < count && nfds < 8; i++)
                memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        }
        int rc = (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
                     ? TL_E_LENGTH
                     : tl_decode_reply(buf, (size_t)n, nfds, rep);
        if (rc == TL_OK && (rep->seq != req->seq || rep->op != req->op))
            rc = TL_E_VALUE;
        if (rc != TL_OK) {
            for (int i = 0; i < nfds; i++)
                real.close(fds[i]);
            ctl_drop();
            say("tcplab: bad reply from the stack daemon (%s)", tl_error_name(rc));
            errno = EPROTO;
            goto fail_locked;
        }
        if (nfds == 1)
            *fd_out = fds[0];
        TRACE("%s -> status %u fd %d", tl_op_name(req->op), rep->status, *fd_out);
        return 0;
    }
fail_locked:
    {
        int err = errno;
        TRACE("%s -> transport error %d", tl_op_name(req->op), err);
        errno = err;
    }
    return -1;
}

/* A control call whose reply is small (everything but DETACH). */
struct small_reply {
    struct tl_reply r;
    uint8_t buf[TL_HEADER_SIZE + 2 * TL_ADDR_SIZE + TL_MAX_OPTVAL];
};

/* Ask and turn a status into errno. Returns 0 on success (status 0), -1 otherwise. */
static int ask(struct tl_request *req, int fd, struct small_reply *out, int *fd_out)
{
    int dummy;
    if (ctl_call(req, fd, out->buf, sizeof out->buf, &out->r, fd_out ? fd_out : &dummy) < 0)
        return -1;
    if (!fd_out && dummy >= 0)
        real.close(dummy);
    if (out->r.status) {
        errno = (int)out->r.status;
        return -1;
    }
    return 0;
}

/* SETSOCKOPT of `len` bytes at `val` on the stack socket behind fd. */
static int ask_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    struct tl_request req;
    memset(&req, 0, sizeof req);
    req.op = TL_SETSOCKOPT;
    req.level = level;
    req.name = name;
    req.value = val;
    req.value_len = len;
    struct small_reply rep;
    return ask(&req, fd, &rep, NULL);
}

static void addr_to_tl(const struct sockaddr_in *sin, struct tl_addr *a)
{
    a->family = TL_AF_INET;
    a->port = ntohs(sin->sin_port);
    a->ip = sin->sin_addr.s_addr;
}

/* Copy an IPv4 address out the way the kernel does: truncate, report the full size. */
static void put_sockaddr(const struct tl_addr *a, struct sockaddr *sa, socklen_t *len)
{
    if (!sa || !len)
        return;
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(a->port);
    sin.sin_addr.s_addr = a->ip;
    size_t n = *len < sizeof sin ? *len : sizeof sin;
    memcpy(sa, &sin, n);
    *len = sizeof sin;
}

/* ---------------------------------------------------------------- AF_INET6 sockets
 *
 * AF_INET6 sockets are the stack's AF_INET6 sockets, as Linux with bindv6only=0 has
 * them: native IPv6 peers ride the stack's IPv6, v4-mapped ones (::ffff:a.b.c.d) its
 * IPv4, and a `[::]` listener hears both. Addresses go to the daemon as they are (family
 * 10); it answers with family 10 for IPv6 ends and family 2 for IPv4 ones, which the
 * program sees v4-mapped. `::1` goes to the kernel (like 127/8).
 *
 * The marks. Which family the program asked for, and whether the socket listens, are
 * marked on the program's end itself, in its SO_PRIORITY (which nothing reads on an
 * AF_UNIX socket, and which the program's own SO_PRIORITY never touches: that one goes
 * to the stack), so they hold across dup, fork and exec without tables, like the name.
 * The shim sets the family; the daemon sets "listening" at LISTEN (docs 5.2, 5.9). */
#define MARK_V6 4             /* AF_INET6, dual-stack */
#define MARK_V6ONLY 5         /* AF_INET6 with IPV6_V6ONLY */
#define MARK_LISTEN_V4 1      /* listening, AF_INET */
#define MARK_LISTEN_V6 2      /* listening, AF_INET6 */
#define MARK_LISTEN_V6ONLY 3  /* listening, AF_INET6 with IPV6_V6ONLY */

static int raw_mark(int fd)
{
    int v = 0;
    socklen_t l = sizeof v;
    int saved = errno;
    if (real.getsockopt(fd, SOL_SOCKET, SO_PRIORITY, &v, &l) < 0)
        v = 0;
    errno = saved;
    return v;
}

/* The family mark: 0 (AF_INET), MARK_V6 or MARK_V6ONLY. */
static int mark_of(int fd)
{
    switch (raw_mark(fd)) {
    case MARK_V6:
    case MARK_LISTEN_V6:
        return MARK_V6;
    case MARK_V6ONLY:
    case MARK_LISTEN_V6ONLY:
        return MARK_V6ONLY;
    default:
        return 0;
    }
}

static int is_listening(int fd)
{
    int v = raw_mark(fd);
    return v >= MARK_LISTEN_V4 && v <= MARK_LISTEN_V6ONLY;
}

static void set_mark(int fd, int mark)
{
    int saved = errno;
    (void)real.setsockopt(fd, SOL_SOCKET, SO_PRIORITY, &mark, sizeof mark);
    errno = saved;
}

static void copy_mark(int from, int to)
{
    int m = mark_of(from);
    if (m)
        set_mark(to, m);
}

static const uint8_t V4MAPPED_PREFIX[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* An address as Linux shows it on an AF_INET6 socket: an IPv6 one as it is, an IPv4 one
 * as ::ffff:a.b.c.d, and `::` for 0.0.0.0 (an unbound or wildcard-bound socket). */
static void put_sockaddr6(const struct tl_addr *a, struct sockaddr *sa, socklen_t *len)
{
    if (!sa || !len)
        return;
    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof sin6);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(a->port);
    if (a->family == TL_AF_INET6) {
        memcpy(sin6.sin6_addr.s6_addr, a->ip6, 16);
        sin6.sin6_flowinfo = htonl(a->flowinfo);
        sin6.sin6_scope_id = a->scope_id;
    } else if (a->ip != htonl(INADDR_ANY)) {
        memcpy(sin6.sin6_addr.s6_addr, V4MAPPED_PREFIX, 12);
        memcpy(sin6.sin6_addr.s6_addr + 12, &a->ip, 4);
    }
    size_t n = *len < sizeof sin6 ? *len : sizeof sin6;
    memcpy(sa, &sin6, n);
    *len = sizeof sin6;
}

/* put_sockaddr or put_sockaddr6, as the socket's family says. */
static void put_name(int fd, const struct tl_addr *a, struct sockaddr *sa, socklen_t *len)
{
    if (mark_of(fd))
        put_sockaddr6(a, sa, len);
    else
        put_sockaddr(a, sa, len);
}

enum v6kind { V6_MAPPED, V6_ANY, V6_LOOPBACK, V6_NATIVE };

static enum v6kind classify6(const struct in6_addr *a)
{
    static const uint8_t zero[16];
    if (!memcmp(a->s6_addr, V4MAPPED_PREFIX, 12))
        return V6_MAPPED;
    if (!memcmp(a->s6_addr, zero, 16))
        return V6_ANY;
    if (!memcmp(a->s6_addr, zero, 15) && a->s6_addr[15] == 1)
        return V6_LOOPBACK;
    return V6_NATIVE;
}

/* An AF_INET6 socket's address argument as the stack takes it: family 10, v4-mapped
 * addresses included (the stack's AF_INET6 socket maps them to IPv4, docs 5.9).
 * Returns 0 with *out set; 1 when the address is for the kernel (::1, ::ffff:127.x.y.z,
 * and `::` or ::ffff:0.0.0.0 for connect); -1 with errno. */
static int v6_to_tl(int fd, const struct sockaddr *sa, socklen_t len, int for_bind,
                    struct tl_addr *out)
{
    if (!sa) {
        errno = EFAULT;
        return -1;
    }
    if (len < sizeof(sa_family_t)) {
        errno = EINVAL;
        return -1;
    }
    if (sa->sa_family != AF_INET6) {
        errno = for_bind ? EINVAL : EAFNOSUPPORT;
        return -1;
    }
    if (len < 24) { /* SIN6_LEN_RFC2133: sockaddr_in6 without sin6_scope_id */
        errno = EINVAL;
        return -1;
    }
    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof sin6);
    memcpy(&sin6, sa, len < sizeof sin6 ? len : sizeof sin6);
    memset(out, 0, sizeof *out);
    out->family = TL_AF_INET6;
    out->port = ntohs(sin6.sin6_port);
    memcpy(out->ip6, sin6.sin6_addr.s6_addr, 16);
    out->flowinfo = ntohl(sin6.sin6_flowinfo);
    out->scope_id = sin6.sin6_scope_id;
    int v6only = mark_of(fd) == MARK_V6ONLY;
    switch (classify6(&sin6.sin6_addr)) {
    case V6_MAPPED: {
        if (v6only) { /* as Linux: a V6ONLY socket takes no IPv4 */
            errno = for_bind ? EINVAL : ENETUNREACH;
            return -1;
        }
        uint32_t ip;
        memcpy(&ip, sin6.sin6_addr.s6_addr + 12, 4);
        if (is_loopback(ip) || (!for_bind && ip == htonl(INADDR_ANY)))
            return 1; /* 127/8 and "this host" are the kernel's, as for AF_INET */
        return 0;
    }
    case V6_ANY:
        return for_bind ? 0 : 1; /* connect to `::` means this host: the kernel's */
    case V6_LOOPBACK:
        return 1;
    default:
        return 0; /* native IPv6: the stack's */
    }
}

/* Wait for events on fd; honours the socket's SO_RCVTIMEO/SO_SNDTIMEO (as Linux does for
 * accept and connect). Returns revents, 0 on timeout, -1 with errno (EINTR). */
static int wait_fd(int fd, short events, int timeo_opt)
{
    struct timeval tv = {0, 0};
    socklen_t tl = sizeof tv;
    int timeout = -1;
    if (real.getsockopt(fd, SOL_SOCKET, timeo_opt, &tv, &tl) == 0 && (tv.tv_sec || tv.tv_usec))
        timeout = (int)(tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000);
    struct pollfd p = {fd, events, 0};
    int r = poll(&p, 1, timeout);
    if (r < 0)
        return -1;
    return r == 0 ? 0 : p.revents;
}

/* Hand a fresh stack socket back to the kernel (for loopback): the daemon forgets it and
 * returns its bound port and the options set so far; a kernel socket with the same
 * options, flags and fd number takes its place (dup3 over it). */
static int handoff(int fd, enum kind k)
{
    int mark = mark_of(fd);
    struct tl_request req;
    memset(&req, 0, sizeof req);
    req.op = TL_DETACH;
    size_t cap = TL_MAX_SHIM_REPLY;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    struct tl_reply rep;
    int fd_out;
    if (ctl_call(&req, fd, buf, cap, &rep, &fd_out) < 0) {
        free(buf);
        return -1;
    }
    if (fd_out >= 0)
        real.close(fd_out);
    if (rep.status) {
        free(buf);
        errno = (int)rep.status;
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    int fdfl = fcntl(fd, F_GETFD);
    int kfd = real.socket(mark ? AF_INET6 : AF_INET,
                          (k == K_TCP ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
    if (kfd < 0) {
        free(buf);
        return -1;
    }
    if (mark) {
        int only = mark == MARK_V6ONLY;
        (void)real.setsockopt(kfd, IPPROTO_IPV6, IPV6_V6ONLY, &only, sizeof only);
    }
    for (uint32_t i = 0; i < rep.noptions; i++) {
        int32_t level, name;
        const uint8_t *value;
        uint32_t len;
        if (tl_reply_option(&rep, i, &level, &name, &value, &len) == TL_OK)
            (void)real.setsockopt(kfd, level, name, value, len);
    }
    if ((rep.addr.family == TL_AF_INET || rep.addr.family == TL_AF_INET6) && rep.addr.port) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        socklen_t sl = sizeof(struct sockaddr_in);
        if (mark) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            s6->sin6_family = AF_INET6;
            s6->sin6_port = htons(rep.addr.port);
            sl = sizeof *s6;
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            s4->sin_family = AF_INET;
            s4->sin_port = htons(rep.addr.port);
        }
        if (real.bind(kfd, (struct sockaddr *)&ss, sl) < 0) {
            int err = errno;
            real.close(kfd);
            free(buf);
            errno = err;
            return -1;
        }
    }
    free(buf);
    if (fl >= 0 && (fl & O_NONBLOCK))
        fcntl(kfd, F_SETFL, O_NONBLOCK);
    int rc = real.dup3(kfd, fd, (fdfl >= 0 && (fdfl & FD_CLOEXEC)) ? O_CLOEXEC : 0);
    int err = errno;
    real.close(kfd);
    if (rc < 0) {
        errno = err;
        return -1;
    }
    TRACE("fd %d handed to the kernel", fd);
    return 0;
}

/* Check an IPv4 sockaddr argument like the kernel does. */
static int check_sockaddr_in(const struct sockaddr *sa, socklen_t len, int allow_unspec)
{
    if (!sa) {
        errno = EFAULT;
        return -1;
    }
    if (len < sizeof(sa_family_t)) {
        errno = EINVAL;
        return -1;
    }
    if (sa->sa_family == AF_UNSPEC && allow_unspec)
        return 0;
    if (sa->sa_family != AF_INET) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    if (len < sizeof(struct sockaddr_in)) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

/* ----------------------------------------------------------------- the interposers */

EXPORT int socket(int domain, int type, int protocol)
{
    ensure_init();
    int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    enum kind k = K_NONE;
    int inet = domain == AF_INET || domain == AF_INET6;
    if (inet && base == SOCK_STREAM && (protocol == 0 || protocol == IPPROTO_TCP))
        k = K_TCP;
    else if (inet && base == SOCK_DGRAM && (protocol == 0 || protocol == IPPROTO_UDP))
        k = K_UDP;
    if (k == K_NONE)
        return real.socket(domain, type, protocol);
    struct tl_request req;
    memset(&req, 0, sizeof req);
    req.op = TL_SOCKET;
    req.kind = k == K_TCP ? TL_KIND_TCP : TL_KIND_UDP;
    req.family = domain == AF_INET6 ? TL_AF_INET6 : TL_AF_INET;
    struct small_reply rep;
    int fd;
    if (ask(&req, -1, &rep, &fd) < 0)
        return -1;
    if (fd < 0) {
        errno = EPROTO;
        return -1;
    }
    /* Received with MSG_CMSG_CLOEXEC (no leak to a concurrent fork+exec); undo if asked. */
    if (!(type & SOCK_CLOEXEC))
        fcntl(fd, F_SETFD, 0);
    if (type & SOCK_NONBLOCK)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (domain == AF_INET6)
        set_mark(fd, MARK_V6); /* bindv6only=0: dual-stack until IPV6_V6ONLY says not */
    TRACE("socket(%s%s) = %d", k == K_TCP ? "tcp" : "udp", domain == AF_INET6 ? "6" : "", fd);
    return fd;
}

EXPORT int bind(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len)
{
    ensure_init();
    const struct sockaddr *sa = addr.__sockaddr__;
    enum kind k = shim_kind(fd);
    if (k == K_NONE)
        return real.bind(fd, sa, len);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    struct tl_request req;
    memset(&req, 0, sizeof req);
    req.op = TL_BIND;
    struct small_reply rep;
    if (mark_of(fd)) {
        int r = v6_to_tl(fd, sa, len, 1, &req.addr);
        if (r < 0)
            return -1;
        if (r == 1) { /* ::1, ::ffff:127.x */
            if (handoff(fd, k) < 0)
                return -1;
            return real.bind(fd, sa, len);
        }
        if (ask(&req, fd, &rep, NULL) == 0)
            return 0;
        /* A stack without IPv6 (tcplab stack --address6 none) has no place for a
         * V6ONLY `[::]` socket: the kernel's, as before the stack had IPv6. */
        static const struct in6_addr any6 = IN6ADDR_ANY_INIT;
        if (errno == EADDRNOTAVAIL && mark_of(fd) == MARK_V6ONLY &&
            !memcmp(req.addr.ip6, &any6, 16)) {
            if (handoff(fd, k) < 0)
                return -1;
            return real.bind(fd, sa, len);
        }
        return -1;
    }
    if (check_sockaddr_in(sa, len, 1) < 0)
        return -1;
    if (sa->sa_family == AF_INET)
        memcpy(&sin, sa, sizeof sin);
    else if (len >= sizeof sin) /* AF_UNSPEC with INADDR_ANY: Linux treats it as AF_INET */
        memcpy(&sin, sa, sizeof sin);
    if (sa->sa_family == AF_UNSPEC && sin.sin_addr.s_addr != htonl(INADDR_ANY)) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    sin.sin_family = AF_INET;
    if (is_loopback(sin.sin_addr.s_addr)) {
        if (handoff(fd, k) < 0)
            return -1;
        return real.bind(fd, (struct sockaddr *)&sin, sizeof sin);
    }
    addr_to_tl(&sin, &req.addr);
    return ask(&req, fd, &rep, NULL);
}

EXPORT int listen(int fd, int backlog)
{
    ensure_init();
    if (shim_kind(fd) == K_NONE)
        return real.listen(fd, backlog);
    struct tl_request req;
    memset(&req, 0, sizeof req);
    req.op = TL_LISTEN;
    req.backlog = backlog;
    struct small_reply rep;
    /* The daemon marks the socket as listening (SO_PRIORITY, above); from now on its
     * stream carries the connections. */
    return ask(&req, fd, &rep, NULL);
}

/* accept: a listener's own stream carries one ACCEPT record (local and peer address)
 * per waiting connection, with the connection attached (SCM_RIGHTS). Taking one is one
 * recvmsg on the program's fd: no control call, so it works in a process that has
 * dropped privileges, chrooted or closed every other descriptor; blocking, O_NONBLOCK,
 * SO_RCVTIMEO, signals and several processes accepting at once are the kernel's. */
static int do_accept(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
    if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) {
        errno = EINVAL;
        return -1;
    }
    if (!is_listening(fd)) {
        errno = EINVAL; /* not listening, as in Linux */
        return -1;
    }
    uint8_t rec[TL_ACCEPT_RECORD_SIZE + 1];
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } cm;
    struct iovec iov = {rec, TL_ACCEPT_RECORD_SIZE};
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cm.buf;
    m.msg_controllen = sizeof cm.buf;
    ssize_t n = real.recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
    if (n < 0) {
        if (errno == ECONNRESET) { /* the daemon went away */
            if (!__atomic_exchange_n(&warned, 1, __ATOMIC_SEQ_CST))
                say("tcplab: the stack daemon at %s went away", socket_path);
            errno = ENETDOWN;
        }
        return -1;
    }
    int fds[4], nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count && nfds < 4; i++)
            memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    if (n == 0 && !nfds) {
        /* End of the stream: shutdown(SHUT_RD) (the daemon shut its end for writing:
         * EINVAL, as Linux), or the daemon is gone (its end closed: POLLHUP). */
        struct pollfd p = {fd, 0, 0};
        if (poll(&p, 1, 0) == 1 && (p.revents & POLLHUP)) {
            if (!__atomic_exchange_n(&warned, 1, __ATOMIC_SEQ_CST))
                say("tcplab: the stack daemon at %s went away", socket_path);
            errno = ENETDOWN;
        } else {
            errno = EINVAL;
        }
        return -1;
    }
    struct tl_reply rep;
    int rc = tl_decode_reply(rec, (size_t)n, nfds, &rep);
    if (rc != TL_OK || rep.op != TL_ACCEPT || rep.status) {
        for (int i = 0; i < nfds; i++)
            real.close(fds[i]);
        if (m.msg_flags & MSG_CTRUNC) {
            errno = EMFILE; /* no room for the descriptor: the connection is lost */
            return -1;
        }
        say("tcplab: bad accept record from the stack daemon (%s)", tl_error_name(rc));
        errno = EPROTO;
        return -1;
    }
    int nfd = fds[0];
    if (!(flags & SOCK_CLOEXEC))
        fcntl(nfd, F_SETFD, 0);
    if (flags & SOCK_NONBLOCK)
        fcntl(nfd, F_SETFL, fcntl(nfd, F_GETFL) | O_NONBLOCK);
    copy_mark(fd, nfd);
    remember_listener(fd);
    put_name(fd, &rep.peer, sa, len);
    TRACE("accept(%d) = %d", fd, nfd);
    return nfd;
}

EXPORT int accept(int fd, __SOCKADDR_ARG addr, socklen_t *__restrict len)
{
    ensure_init();
    if (shim_kind(fd) == K_NONE)
        return real.accept(fd, addr.__sockaddr__, len);
    return do_accept(fd, addr.__sockaddr__, len, 0);
}

EXPORT int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *__restrict len, int flags)
{
    ensure_init();
    if (shim_kind(fd) == K_NONE)
        return real.accept4(fd, addr.__sockaddr__, len, flags);
    return do_accept(fd, addr.__sockaddr__, len, flags);
}

/* SO_ERROR from the daemon (0 when it cannot be asked any more: ECONNRESET then). */
static int pending_error(int fd)
{
    struct tl_request req;
    memset(&req, 0, sizeof req);
    req.op = TL_GETSOCKOPT;
    req.level = SOL_SOCKET;
    req.name = SO_ERROR;
    req.optlen = sizeof(int);
    struct small_reply rep;
    if (ask(&req, fd, &rep, NULL) < 0)
        return errno == ENETDOWN || errno == ECONNRESET ? ECONNRESET : errno;
    int err = 0;
    if (rep.r.value_len == sizeof(int))
        memcpy(&err, rep.r.value, sizeof err);
    return err;
}

EXPORT int connect(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len)
{
    ensure_init();
    const struct sockaddr *sa = addr.__sockaddr__;
    enum kind k = shim_kind(fd);
    if (k == K_NONE)
        return real.connect(fd, sa, len);
    struct tl_request req;
    memset(&req, 0, sizeof req);
    req.op = TL_CONNECT;
    if (mark_of(fd) && !(sa && len >= sizeof(sa_family_t) && sa->sa_family == AF_UNSPEC)) {
        int r = v6_to_tl(fd, sa, len, 0, &req.addr);
        if (r < 0)
            return -1;
        if (r == 1) {
            if (handoff(fd, k) < 0)
                return -1;
            return real.connect(fd, sa, len);
        }
    } else if (check_sockaddr_in(sa, len, 1) < 0) {
        return -1;
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        /* 127.0.0.0/8 and 0.0.0.0 (which Linux takes as "this host") stay with the
         * kernel: the program gets a kernel socket in place of the stack's. */
        if (is_loopback(sin->sin_addr.s_addr) || sin->sin_addr.s_addr == htonl(INADDR_ANY)) {
            if (handoff(fd, k) < 0)
                return -1;
            return real.connect(fd, sa, len);
        }
        addr_to_tl(sin, &req.addr);
    } else {
        req.addr.family = TL_AF_UNSPEC;
    }
    struct small_reply rep;
    if (ask(&req, fd, &rep, NULL) == 0)
        return 0;
    if (errno != EINPROGRESS || is_nonblocking(fd))
        return -1;
    /* A blocking connect: the daemon keeps our fd unwritable until the handshake ends
     * either way, then SO_ERROR says how it went. */
    int ev = wait_fd(fd, POLLOUT, SO_SNDTIMEO);
    if (ev < 0)
        return -1; /* EINTR: the connection goes on in the background, as in Linux */
    if (ev == 0) {
        errno = EINPROGRESS;
        return -1;
    }
    int err = pending_error(fd);
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}

EXPORT int shutdown(int fd, int how)
{
    ensure_init();
    if (shim_kind(fd) == K_NONE)
        return real.shutdown(fd, how);
    if (how < SHUT_RD || how > SHUT_RDWR) {
        errno = EINVAL;
        return -1;
    }
    struct tl_request req;
    memset(&req, 0, sizeof req);
    req.op = TL_SHUTDOWN;
    req.how = (uint32_t)how;
    struct small_reply rep;
    return ask(&req, fd, &rep, NULL);
}

static int get_name(int fd, struct sockaddr *sa, socklen_t *len, int op)
{
    if (!len) {
        errno = EFAULT;
        return -1;
    }
    struct tl_request req;
    memset(&req, 0, sizeof req);
    req.op = (uint8_t)op;
    struct small_reply rep;
    if (ask(&req, fd, &rep, NULL) < 0)
        return -1;
    struct tl_addr a = rep.r.addr;
    if (a.family != TL_AF_INET6)
        a.family = TL_AF_INET;
    put_name(fd, &a, sa, len);
    return 0;
}

EXPORT int getsockname(int fd, __SOCKADDR_ARG addr, socklen_t *__restrict len)
{
    ensure_init();
    if (shim_kind(fd) == K_NONE)
        return real.getsockname(fd, addr.__sockaddr__, len);
    return get_name(fd, addr.__sockaddr__, len, TL_GETSOCKNAME);
}

EXPORT int getpeername(int fd, __SOCKADDR_ARG addr, socklen_t *__restrict len)
{
    ensure_init();
    if (shim_kind(fd) == K_NONE)
        return real.getpeername(fd, addr.__sockaddr__, len);
    return get_name(fd, addr.__sockaddr__, len, TL_GETPEERNAME);
}

/* Options that belong to the program's end of the socketpair itself. */
static int local_option(int level, int name)
{
    return level == SOL_SOCKET &&
           (name == SO_RCVTIMEO || name == SO_SNDTIMEO || name == SO_RCVLOWAT ||
            name == SO_SNDLOWAT);
}

static int put_int_opt(void *val, socklen_t *len, int v)
{
    if (!val || !len) {
        errno = EFAULT;
        return -1;
    }
    socklen_t n = *len < sizeof v ? *len : (socklen_t)sizeof v;
    memcpy(val, &v, n);
    *len = n;
    return 0;
}

EXPORT int getsockopt(int fd, int level, int name, void *__restrict val,
                      socklen_t *__restrict len)
{
    ensure_init();
    enum kind k = shim_kind(fd);
    if (k == K_NONE || local_option(level, name))
        return real.getsockopt(fd, level, name, val, len);
    if (level == SOL_SOCKET && name == SO_ACCEPTCONN)
        return put_int_opt(val, len, is_listening(fd));
    if (level == SOL_SOCKET && name == SO_DOMAIN)
        return put_int_opt(val, len, mark_of(fd) ? AF_INET6 : AF_INET);
    if (level == IPPROTO_IPV6 && !mark_of(fd)) {
        errno = EOPNOTSUPP; /* as Linux, on an AF_INET socket */
        return -1;
    }
    if (level == IPPROTO_IPV6 && name == IPV6_V6ONLY)
        return put_int_opt(val, len, mark_of(fd) == MARK_V6ONLY);
    if (level == SOL_SOCKET && name == SO_TYPE)
        return put_int_opt(val, len, k == K_TCP ? SOCK_STREAM : SOCK_DGRAM);
    if (level == SOL_SOCKET && name == SO_PROTOCOL)
        return put_int_opt(val, len, k == K_TCP ? IPPROTO_TCP : IPPROTO_UDP);
    if (!len || (*len && !val)) {
        errno = EFAULT;
        return -1;
    }
    if (level == SOL_SOCKET && name == SO_ERROR)
        return put_int_opt(val, len, pending_error(fd));
    struct tl_request req;
    memset(&req, 0, sizeof req);
    req.op = TL_GETSOCKOPT;
    req.level = level;
    req.name = name;
    req.optlen = *len;
    struct small_reply rep;
    if (ask(&req, fd, &rep, NULL) < 0)
        return -1;
    socklen_t n = rep.r.value_len < *len ? rep.r.value_len : *len;
    if (n)
        memcpy(val, rep.r.value, n);
    *len = n;
    return 0;
}

EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    ensure_init();
    if (shim_kind(fd) == K_NONE || local_option(level, name))
        return real.setsockopt(fd, level, name, val, len);
    if (level == IPPROTO_IPV6 && !mark_of(fd)) {
        errno = ENOPROTOOPT; /* as Linux, on an AF_INET socket */
        return -1;
    }
    if (level == IPPROTO_IPV6 && name == IPV6_V6ONLY) { /* kept in the family mark */
        int on = 0;
        if (len < sizeof(int) || !val) {
            errno = val ? EINVAL : EFAULT;
            return -1;
        }
        memcpy(&on, val, sizeof on);
        if (is_listening(fd)) {
            errno = EINVAL; /* as Linux, once bound */
            return -1;
        }
        /* the stack's AF_INET6 socket takes it too (EINVAL once bound, as Linux) */
        if (ask_setsockopt(fd, level, name, val, sizeof(int)) < 0)
            return -1;
        set_mark(fd, on ? MARK_V6ONLY : MARK_V6);
        return 0;
    }
    if (len > TL_MAX_OPTVAL || (len && !val)) {
        errno = len > TL_MAX_OPTVAL ? EINVAL : EFAULT;
        return -1;
    }
    return ask_setsockopt(fd, level, name, val, len);
}

/* UDP sendto with an address: the datagram goes over the control connection. */
static ssize_t udp_sendto(int fd, const void *buf, size_t n, int flags,
                          const struct sockaddr *sa, socklen_t alen,
                          const struct tl_addr *src)
{
    struct tl_request req;
    memset(&req, 0, sizeof req);
    req.op = TL_SENDTO;
    if (mark_of(fd)) {
        int r = v6_to_tl(fd, sa, alen, 0, &req.addr);
        if (r < 0)
            return -1;
        if (r == 1) {
            if (handoff(fd, K_UDP) < 0)
                return -1;
            return real.sendto(fd, buf, n, flags, sa, alen);
        }
    } else {
        if (check_sockaddr_in(sa, alen, 0) < 0)
            return -1;
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        if (n <= TL_MAX_PAYLOAD && is_loopback(sin->sin_addr.s_addr)) {
            if (handoff(fd, K_UDP) < 0)
                return -1;
            return real.sendto(fd, buf, n, flags, sa, alen);
        }
        addr_to_tl(sin, &req.addr);
    }
    if (n > TL_MAX_PAYLOAD) {
        errno = EMSGSIZE;
        return -1;
    }
    if (src) /* IP_PKTINFO's ipi_spec_dst (IPV6_PKTINFO's ipi6_addr): the daemon checks it */
        req.src = *src;
    req.msg_flags = (uint32_t)flags;
    req.payload = buf;
    req.payload_len = (uint32_t)n;
    struct small_reply rep;
    if (ask(&req, fd, &rep, NULL) < 0)
        return -1;
    return (ssize_t)rep.r.sent;
}

/* TCP sendto with MSG_FASTOPEN and an address (RFC 7413, as Linux): connect, with the
 * data for the SYN, over the control connection (SENDTO on a TCP socket); the daemon
 * queues the data (at most TL_MAX_PAYLOAD bytes) for the SYN. Like Linux, a blocking
 * socket then waits for the handshake (the daemon keeps the fd unwritable until it
 * ends) and reports its failure; a non-blocking one returns at once. */
static ssize_t tcp_fastopen_sendto(int fd, const void *buf, size_t n, int flags,
                                   const struct sockaddr *sa, socklen_t alen)
{
    struct tl_request req;
    memset(&req, 0, sizeof req);
    req.op = TL_SENDTO;
    if (mark_of(fd)) { /* AF_INET6: as connect() takes the address */
        int r = v6_to_tl(fd, sa, alen, 0, &req.addr);
        if (r < 0)
            return -1;
        if (r == 1) { /* loopback: the kernel's socket, as for connect() */
            if (handoff(fd, K_TCP) < 0)
                return -1;
            return real.sendto(fd, buf, n, flags, sa, alen);
        }
    } else {
        if (check_sockaddr_in(sa, alen, 0) < 0)
            return -1;
        addr_to_tl((const struct sockaddr_in *)sa, &req.addr);
    }
    req.msg_flags = (uint32_t)flags;
    req.payload = buf;
    req.payload_len = (uint32_t)(n > TL_MAX_PAYLOAD ? TL_MAX_PAYLOAD : n);
    struct small_reply rep;
    if (ask(&req, fd, &rep, NULL) < 0)
        return -1;
    if (!is_nonblocking(fd) && !(flags & MSG_DONTWAIT)) {
        int ev = wait_fd(fd, POLLOUT, SO_SNDTIMEO);
        if (ev < 0)
            return -1; /* EINTR: the connection goes on in the background */
        if (ev > 0) {
            int err = pending_error(fd);
            if (err) {
                errno = err;
                return -1;
            }
        }
    }
    return (ssize_t)rep.r.sent;
}

EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, __CONST_SOCKADDR_ARG addr,
                      socklen_t alen)
{
    ensure_init();
    const struct sockaddr *sa = addr.__sockaddr__;
    if (!sa) /* the common case for TCP: no lookup needed */
        return real.sendto(fd, buf, n, flags, NULL, 0);
    enum kind k = shim_kind(fd);
    if (k == K_NONE)
        return real.sendto(fd, buf, n, flags, sa, alen);
    if (k == K_TCP && (flags & MSG_FASTOPEN))
        return tcp_fastopen_sendto(fd, buf, n, flags, sa, alen);
    if (k == K_TCP) /* TCP ignores the address, as Linux does on a connected socket */
        return real.sendto(fd, buf, n, flags & ~MSG_FASTOPEN, NULL, 0);
    return udp_sendto(fd, buf, n, flags, sa, alen, NULL);
}

/* The stack's interface index, as the last PKTINFO record said (0: not seen yet). */
static unsigned stack_ifindex;

/* Append one control message to a program's msghdr the way the kernel's put_cmsg()
 * does: what does not fit is cut and MSG_CTRUNC set; *used counts the bytes taken. */
static void put_cmsg(struct msghdr *app, size_t *used, int level, int type, const void *data,
                     size_t len)
{
    size_t room = app->msg_controllen > *used ? app->msg_controllen - *used : 0;
    if (!app->msg_control || room < sizeof(struct cmsghdr)) {
        app->msg_flags |= MSG_CTRUNC;
        return;
    }
    size_t cmlen = CMSG_LEN(len);
    if (room < cmlen) {
        app->msg_flags |= MSG_CTRUNC;
        cmlen = room;
    }
    struct cmsghdr h;
    memset(&h, 0, sizeof h);
    h.cmsg_level = level;
    h.cmsg_type = type;
    h.cmsg_len = cmlen;
    uint8_t *at = (uint8_t *)app->msg_control + *used;
    memcpy(at, &h, sizeof h);
    if (cmlen > CMSG_LEN(0))
        memcpy(at + CMSG_LEN(0), data, cmlen - CMSG_LEN(0));
    size_t step = CMSG_SPACE(len);
    *used += step < room ? step : room;
}

/* The control messages of a received datagram, as Linux gives them: IPV6_PKTINFO (an
 * AF_INET6 socket with IPV6_RECVPKTINFO: the v4-mapped destination), then IP_PKTINFO
 * (ip(7): the interface, ipi_spec_dst and ipi_addr both the destination, as for any
 * unicast datagram to a local address). `info` is the datagram's PKTINFO record, NULL
 * if it came without one (the socket asked for none). */
static void put_pktinfo(int fd, struct msghdr *app, const struct tl_reply *info)
{
    size_t used = 0;
    if (info && (info->want & TL_WANT_IPV6_PKTINFO) && mark_of(fd)) {
        struct in6_pktinfo p6;
        memset(&p6, 0, sizeof p6);
        if (info->dst.family == TL_AF_INET6) {
            memcpy(p6.ipi6_addr.s6_addr, info->dst.ip6, 16);
        } else {
            memcpy(p6.ipi6_addr.s6_addr, V4MAPPED_PREFIX, 12);
            memcpy(p6.ipi6_addr.s6_addr + 12, &info->dst.ip, 4);
        }
        p6.ipi6_ifindex = info->ifindex;
        put_cmsg(app, &used, IPPROTO_IPV6, IPV6_PKTINFO, &p6, sizeof p6);
    }
    if (info && (info->want & TL_WANT_IP_PKTINFO) && info->dst.family != TL_AF_INET6) {
        struct in_pktinfo p4;
        memset(&p4, 0, sizeof p4);
        p4.ipi_ifindex = (int)info->ifindex;
        p4.ipi_spec_dst.s_addr = info->dst.ip;
        p4.ipi_addr.s_addr = info->dst.ip;
        put_cmsg(app, &used, IPPROTO_IP, IP_PKTINFO, &p4, sizeof p4);
    }
    app->msg_controllen = used;
}

/* Receive one datagram from a UDP stack socket; its source address comes as
 * SCM_CREDENTIALS (see the header), where it was sent as a PKTINFO file. */
static ssize_t udp_recv(int fd, struct msghdr *app, int flags)
{
    if (flags & MSG_ERRQUEUE) {
        errno = EAGAIN;
        return -1;
    }
    union {
        char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } cm;
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = app->msg_iov;
    m.msg_iovlen = app->msg_iovlen;
    m.msg_control = cm.buf;
    m.msg_controllen = sizeof cm.buf;
    ssize_t n = real.recvmsg(fd, &m, flags | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return -1;
    struct ucred cred;
    int have_cred = 0;
    struct tl_reply info;
    int have_info = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
            c->cmsg_len >= CMSG_LEN(sizeof cred)) {
            memcpy(&cred, CMSG_DATA(c), sizeof cred);
            have_cred = 1;
        } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            /* the datagram's PKTINFO file (docs 5.5): read its record, close it */
            size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < count; i++) {
                int ifd;
                memcpy(&ifd, CMSG_DATA(c) + i * sizeof(int), sizeof ifd);
                uint8_t rec[TL_PKTINFO_RECORD_SIZE + 1];
                ssize_t r = pread(ifd, rec, sizeof rec, 0);
                if (!have_info && r == TL_PKTINFO_RECORD_SIZE &&
                    tl_decode_reply(rec, (size_t)r, 0, &info) == TL_OK &&
                    info.op == TL_PKTINFO) {
                    have_info = 1;
                    __atomic_store_n(&stack_ifindex, info.ifindex, __ATOMIC_RELAXED);
                }
                real.close(ifd);
            }
        }
    }
    if (n == 0 && !have_cred) { /* end of file: the daemon went away */
        errno = ECONNRESET;
        return -1;
    }
    struct tl_addr a;
    memset(&a, 0, sizeof a);
    a.family = TL_AF_INET;
    if (have_info && info.src.family == TL_AF_INET6) {
        a = info.src; /* an IPv6 source: the record says it (credentials hold 32 bits) */
    } else if (have_cred && (cred.gid & CRED_MARK_MASK) == CRED_MARK) {
        a.ip = htonl(cred.uid);
        a.port = (uint16_t)(cred.gid & 0xFFFF);
    } else if (app->msg_name) {
        /* A daemon without CAP_SETUID/CAP_SETGID cannot label datagrams: a connected
         * socket's datagrams come from its peer, so say that; otherwise 0.0.0.0:0. */
        struct tl_request req;
        memset(&req, 0, sizeof req);
        req.op = TL_GETPEERNAME;
        struct small_reply rep;
        int saved = errno;
        if (ask(&req, fd, &rep, NULL) == 0)
            a = rep.r.addr;
        if (a.family != TL_AF_INET6)
            a.family = TL_AF_INET;
        errno = saved;
    }
    if (app->msg_name) {
        socklen_t len = app->msg_namelen;
        put_name(fd, &a, app->msg_name, &len);
        app->msg_namelen = len;
    } else {
        app->msg_namelen = 0;
    }
    app->msg_flags = m.msg_flags & ~MSG_CTRUNC;
    put_pktinfo(fd, app, have_info ? &info : NULL);
    return n;
}

EXPORT ssize_t recvfrom(int fd, void *__restrict buf, size_t n, int flags,
                        __SOCKADDR_ARG addr, socklen_t *__restrict alen)
{
    ensure_init();
    struct sockaddr *sa = addr.__sockaddr__;
    if (!sa) /* no address wanted: nothing to translate */
        return real.recvfrom(fd, buf, n, flags, NULL, NULL);
    enum kind k = shim_kind(fd);
    if (k == K_NONE)
        return real.recvfrom(fd, buf, n, flags, sa, alen);
    if (k == K_TCP) {
        ssize_t r = real.recvfrom(fd, buf, n, flags, NULL, NULL);
        if (r >= 0 && alen)
            *alen = 0; /* TCP reports no address, like Linux */
        return r;
    }
    struct iovec iov = {buf, n};
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_name = sa;
    m.msg_namelen = alen ? *alen : 0;
    ssize_t r = udp_recv(fd, &m, flags);
    if (r >= 0 && alen)
        *alen = m.msg_namelen;
    return r;
}

EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
                              struct sockaddr *sa, socklen_t *alen)
{
    ensure_init();
    if (n > buflen) {
        say("tcplab: buffer overflow detected in recvfrom");
        abort();
    }
    __SOCKADDR_ARG a = {.__sockaddr__ = sa};
    return recvfrom(fd, buf, n, flags, a, alen);
}

static ssize_t udp_sendmsg(int fd, const struct msghdr *msg, int flags,
                           const struct tl_addr *src);

/* The source address a sendmsg's IP_PKTINFO (or, on an AF_INET6 socket, IPV6_PKTINFO)
 * asks for, as ip(7) and ipv6(7): ipi_spec_dst (ipi6_addr) is the source (*src stays
 * AF_UNSPEC for 0.0.0.0 and `::`: none), ipi_ifindex, when not 0, the interface, which
 * must be one the stack can send on (ours: ENODEV for no such interface, ENETUNREACH for
 * another). 0 or -1 (errno). */
static int pktinfo_source(int fd, const struct msghdr *msg, struct tl_addr *src)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)msg); c;
         c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
        int ifindex = 0;
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo p4;
            if (c->cmsg_len < CMSG_LEN(sizeof p4)) {
                errno = EINVAL;
                return -1;
            }
            memcpy(&p4, CMSG_DATA(c), sizeof p4);
            memset(src, 0, sizeof *src);
            if (p4.ipi_spec_dst.s_addr != htonl(INADDR_ANY)) {
                src->family = TL_AF_INET;
                src->ip = p4.ipi_spec_dst.s_addr;
            }
            ifindex = p4.ipi_ifindex;
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
                   mark_of(fd)) {
            struct in6_pktinfo p6;
            if (c->cmsg_len < CMSG_LEN(sizeof p6)) {
                errno = EINVAL;
                return -1;
            }
            memcpy(&p6, CMSG_DATA(c), sizeof p6);
            enum v6kind v = classify6(&p6.ipi6_addr);
            memset(src, 0, sizeof *src);
            if (v == V6_MAPPED) {
                memcpy(&src->ip, p6.ipi6_addr.s6_addr + 12, 4);
                if (src->ip != htonl(INADDR_ANY))
                    src->family = TL_AF_INET;
            } else if (v != V6_ANY) {
                src->family = TL_AF_INET6; /* the daemon takes only the stack's own */
                memcpy(src->ip6, p6.ipi6_addr.s6_addr, 16);
            }
            ifindex = (int)p6.ipi6_ifindex;
        } else {
            continue;
        }
        if (ifindex) {
            char name[IF_NAMESIZE];
            if (!if_indextoname((unsigned)ifindex, name)) {
                errno = ENODEV;
                return -1;
            }
            unsigned ours = __atomic_load_n(&stack_ifindex, __ATOMIC_RELAXED);
            if (ours && (unsigned)ifindex != ours) {
                errno = ENETUNREACH;
                return -1;
            }
        }
    }
    return 0;
}

EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    ensure_init();
    if (!msg || (!msg->msg_name && !msg->msg_controllen))
        return real.sendmsg(fd, msg, flags);
    enum kind k = shim_kind(fd);
    if (k == K_NONE)
        return real.sendmsg(fd, msg, flags);
    struct tl_addr src;
    memset(&src, 0, sizeof src);
    if (k == K_UDP && msg->msg_controllen) {
        int r = pktinfo_source(fd, msg, &src);
        if (r < 0)
            return -1;
    }
    struct sockaddr_storage peer;
    if (k == K_UDP && !msg->msg_name && src.family != TL_AF_UNSPEC) {
        /* a source address to carry on a connected socket: SENDTO to its peer */
        socklen_t plen = sizeof peer;
        if (getpeername(fd, (struct sockaddr *)&peer, &plen) < 0) {
            errno = errno == ENOTCONN ? EDESTADDRREQ : errno;
            return -1;
        }
        struct msghdr m = *msg;
        m.msg_name = &peer;
        m.msg_namelen = plen;
        return udp_sendmsg(fd, &m, flags, &src);
    }
    if (k == K_TCP || !msg->msg_name) {
        /* No address to carry (TCP ignores it); other ancillary data (IP_TTL, IP_TOS,
         * ...) is not supported and dropped. */
        struct msghdr m = *msg;
        m.msg_name = NULL;
        m.msg_namelen = 0;
        m.msg_control = NULL;
        m.msg_controllen = 0;
        return real.sendmsg(fd, &m, flags & ~MSG_FASTOPEN);
    }
    return udp_sendmsg(fd, msg, flags, &src);
}

/* A UDP sendmsg with an address: the datagram goes over the control connection. */
static ssize_t udp_sendmsg(int fd, const struct msghdr *msg, int flags,
                           const struct tl_addr *src)
{
    size_t total = 0;
    for (size_t i = 0; i < (size_t)msg->msg_iovlen; i++) {
        total += msg->msg_iov[i].iov_len;
        if (total > TL_MAX_PAYLOAD) {
            errno = EMSGSIZE;
            return -1;
        }
    }
    char *buf = malloc(total ? total : 1);
    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    size_t off = 0;
    for (size_t i = 0; i < (size_t)msg->msg_iovlen; i++) {
        if (msg->msg_iov[i].iov_len)
            memcpy(buf + off, msg->msg_iov[i].iov_base, msg->msg_iov[i].iov_len);
        off += msg->msg_iov[i].iov_len;
    }
    ssize_t r = udp_sendto(fd, buf, total, flags, msg->msg_name, msg->msg_namelen, src);
    int err = errno;
    free(buf);
    errno = err;
    return r;
}

EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    ensure_init();
    enum kind k = msg ? shim_kind(fd) : K_NONE;
    if (k == K_NONE)
        return real.recvmsg(fd, msg, flags);
    if (k == K_TCP) {
        void *name = msg->msg_name;
        msg->msg_name = NULL;
        ssize_t r = real.recvmsg(fd, msg, flags);
        msg->msg_name = name;
        msg->msg_namelen = 0;
        return r;
    }
    return udp_recv(fd, msg, flags);
}

/* recvmmsg on a UDP stack socket: one udp_recv per message, so each gets its source
 * address and control messages (and a datagram's PKTINFO file is never left in the
 * program's descriptor table). The first waits as the socket and flags say; the rest
 * wait too unless MSG_WAITFORONE, MSG_DONTWAIT or a timeout is given (then they do not
 * wait at all: the timeout itself is not honoured). An
 * error after the first message ends the batch, as Linux, which reports it next. */
EXPORT int recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags,
                    struct timespec *timeout)
{
    ensure_init();
    if (!vec || shim_kind(fd) != K_UDP)
        return real.recvmmsg(fd, vec, vlen, flags, timeout);
    int base = flags & ~MSG_WAITFORONE;
    unsigned int i;
    for (i = 0; i < vlen; i++) {
        int f = base;
        if (i > 0 && ((flags & MSG_WAITFORONE) || timeout))
            f |= MSG_DONTWAIT; /* (with a timeout: return early rather than block) */
        ssize_t n = udp_recv(fd, &vec[i].msg_hdr, f);
        if (n < 0) {
            if (i == 0)
                return -1;
            break;
        }
        vec[i].msg_len = (unsigned int)n;
    }
    return (int)i;
}

/* Bookkeeping only: the daemon learns of a socket's last close from the socket itself
 * (EOF/HUP on its end), which also covers exit, crashes, dup, fork and exec. Here we only
 * make sure a program that closes (or dup2s over) our control fd does not leave us
 * talking into an fd that now belongs to it. */
static void forget_ctl_fd(int fd)
{
    int expected = fd;
    if (fd >= 0)
        __atomic_compare_exchange_n(&ctl_fd, &expected, -1, 0, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST);
}

EXPORT int close(int fd)
{
    ensure_init();
    forget_ctl_fd(fd);
    return real.close(fd);
}

EXPORT int dup2(int oldfd, int newfd)
{
    ensure_init();
    if (oldfd != newfd)
        forget_ctl_fd(newfd);
    return real.dup2(oldfd, newfd);
}

EXPORT int dup3(int oldfd, int newfd, int flags)
{
    ensure_init();
    forget_ctl_fd(newfd);
    return real.dup3(oldfd, newfd, flags);
}
