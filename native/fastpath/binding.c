/*
 * The JavaScript face of the fast path: a Loop object whose methods are the
 * verbs (listen, connect, end, destroy, adopt...) and one callback that
 * receives every event. See src/engines/fastpath/ for the typed wrapper.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fastpath.h"

#define ARGS(n)                                                     \
  size_t argc = n;                                                  \
  napi_value argv[n], self;                                         \
  Loop *L;                                                          \
  napi_get_cb_info(env, info, &argc, argv, &self, NULL);            \
  napi_unwrap(env, self, (void **)&L);                              \
  if (!L || L->closing) return NULL;

static double arg_num(napi_env env, napi_value v) { double d = 0; napi_get_value_double(env, v, &d); return d; }
static napi_value mknum(napi_env env, double v) { napi_value r; napi_create_double(env, v, &r); return r; }
static napi_value mkstr(napi_env env, const char *s) { napi_value r; napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &r); return r; }

static napi_value throw_errno(napi_env env, int e, const char *what) {
  napi_value msg, err;
  char text[160];
  snprintf(text, sizeof text, "%s %s: %s", what, uv_err_name(-e), strerror(e));
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &err);
  napi_set_named_property(env, err, "code", mkstr(env, uv_err_name(-e)));
  napi_throw(env, err);
  return NULL;
}

/* A string argument into buf (empty when it is no string). */
static void arg_str(napi_env env, napi_value v, char *buf, size_t size) {
  size_t n;
  buf[0] = 0;
  if (napi_get_value_string_utf8(env, v, buf, size, &n) != napi_ok) buf[0] = 0;
}

/* An IP literal and a port into a socket address; 0 when the text is no IP literal or the port is out of range. */
static int sockaddr_of(const char *ip, double port, struct sockaddr_in6 *out, socklen_t *len) {
  memset(out, 0, sizeof *out);
  if (!(port >= 0 && port <= 65535) || port != (int)port) return 0;
  struct sockaddr_in *v4 = (struct sockaddr_in *)out;
  if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) { v4->sin_family = AF_INET; v4->sin_port = htons(port); *len = sizeof *v4; return AF_INET; }
  if (inet_pton(AF_INET6, ip, &out->sin6_addr) == 1) { out->sin6_family = AF_INET6; out->sin6_port = htons(port); *len = sizeof *out; return AF_INET6; }
  return 0;
}

static void refresh(Loop *L) {
  if (L->closing) return;
  if (L->open_listeners || L->live) uv_ref((uv_handle_t *)&L->poll);
  else uv_unref((uv_handle_t *)&L->poll);
}

/* Around every batch, sweep and verb: connections released inside are freed when the outermost one returns. */
static void enter(Loop *L) { L->depth++; }
static void leave(Loop *L) {
  if (--L->depth) return;
  fp_reap(L);
  refresh(L);
}

/* Every batch runs in one callback scope: nextTicks and promises settle after it, as after a MakeCallback. */
static void in_scope(Loop *L, void (*work)(Loop *)) {
  napi_env env = L->env;
  napi_handle_scope hs;
  napi_callback_scope cs;
  napi_value res;
  napi_open_handle_scope(env, &hs);
  napi_get_reference_value(env, L->resource, &res);
  napi_open_callback_scope(env, res, L->actx, &cs);
  enter(L);
  work(L);
  napi_close_callback_scope(env, cs);
  napi_close_handle_scope(env, hs);
  leave(L);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  (void)status; (void)events;
  in_scope(h->data, fp_dispatch);
}

static void on_timer(uv_timer_t *t) {
  Loop *L = t->data;
  if (!L->live || L->closing) return;
  in_scope(L, fp_sweep);
}

/* listen(host, port, mode, backlog, idleMs, headMs, maxHead) -> listener id */
static napi_value js_listen(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7], self;
  Loop *L;
  napi_get_cb_info(env, info, &argc, argv, &self, NULL);
  napi_unwrap(env, self, (void **)&L);
  if (!L || L->closing) return throw_errno(env, EBADF, "listen on a closed fast path");
  char host[64];
  arg_str(env, argv[0], host, sizeof host);
  struct sockaddr_in6 sa;
  socklen_t len;
  int fam = sockaddr_of(host, arg_num(env, argv[1]), &sa, &len);
  if (!fam) return throw_errno(env, EINVAL, "listen");
  int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "listen");
  int one = 1, zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* accepted sockets inherit it: one call per listener, not per client */
  if (fam == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero); /* '::' takes IPv4 too */
  int backlog = (int)arg_num(env, argv[3]);
  if (bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, backlog > 0 ? backlog : 511) < 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, e, "listen");
  }
  Listener *l = calloc(1, sizeof *l);
  if (!l) { close(fd); return throw_errno(env, ENOMEM, "listen"); }
  l->role = R_LISTENER;
  l->open = 1;
  l->fd = fd;
  l->id = ++L->next_lid;
  l->mode = (uint8_t)arg_num(env, argv[2]);
  l->idle_ms = (uint32_t)arg_num(env, argv[4]);
  l->head_ms = (uint32_t)arg_num(env, argv[5]);
  l->max_head = (uint32_t)arg_num(env, argv[6]);
  l->next = L->listeners;
  L->listeners = l;
  L->open_listeners++;
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = l };
  epoll_ctl(L->ep, EPOLL_CTL_ADD, fd, &ev);
  refresh(L);
  return mknum(env, l->id);
}

static Listener *find_listener(Loop *L, uint32_t id) {
  for (Listener *l = L->listeners; l; l = l->next) if (l->id == id) return l;
  return NULL;
}

/* port(listener) -> the bound port (for port 0) */
static napi_value js_port(napi_env env, napi_callback_info info) {
  ARGS(1);
  Listener *l = find_listener(L, (uint32_t)arg_num(env, argv[0]));
  if (!l || !l->open) return NULL;
  struct sockaddr_in6 sa;
  socklen_t len = sizeof sa;
  getsockname(l->fd, (struct sockaddr *)&sa, &len);
  return mknum(env, ntohs(sa.sin6_port)); /* sin_port sits at the same offset */
}

static void listener_close(Loop *L, Listener *l) {
  if (!l->open) return;
  l->open = 0;
  epoll_ctl(L->ep, EPOLL_CTL_DEL, l->fd, NULL);
  close(l->fd);
  l->fd = -1;
  L->open_listeners--;
}

/* closeListener(listener): the port refuses from now on; open connections stay. */
static napi_value js_close_listener(napi_env env, napi_callback_info info) {
  ARGS(1);
  for (Listener **p = &L->listeners; *p; p = &(*p)->next) {
    if ((*p)->id != (uint32_t)arg_num(env, argv[0])) continue;
    Listener *l = *p;
    listener_close(L, l);
    *p = l->next;
    /* An event of the running batch may still point at it: freed after the batch. */
    l->next = L->dead_listeners;
    L->dead_listeners = l;
    break;
  }
  refresh(L);
  return NULL;
}

/* connect(id, address, port, localAddress|null, timeoutMs, raceMs, onConnect Buffer|null, restOffset, quiet)
 * -> attempt number (0..MAX_ATT-1, never reused for one connection), or an error code string when the connect
 * failed at once (ECONNABORTED: the id is gone; EISCONN: relaying already; EMFILE: no attempt left). */
static napi_value js_connect(napi_env env, napi_callback_info info) {
  ARGS(9);
  Conn *c = fp_find(L, arg_num(env, argv[0]));
  if (!c || c->state == ST_LINGER) return mkstr(env, "ECONNABORTED");
  if (c->state == ST_RELAY) return mkstr(env, "EISCONN");
  if (c->natt >= MAX_ATT) return mkstr(env, "EMFILE");
  char ip[64];
  arg_str(env, argv[1], ip, sizeof ip);
  struct sockaddr_in6 sa;
  socklen_t len;
  int fam = sockaddr_of(ip, arg_num(env, argv[2]), &sa, &len);
  if (!fam) return mkstr(env, "EINVAL");
  int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return mkstr(env, uv_err_name(-errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  napi_valuetype t;
  napi_typeof(env, argv[3], &t);
  if (t == napi_string) {
    char lip[64];
    arg_str(env, argv[3], lip, sizeof lip);
    struct sockaddr_in6 la;
    socklen_t llen;
    /* A source of the other family cannot be bound: EINVAL, as net.connect says (never leave unbound: in
     * host placement the connection would leave from the node's own address, not EGRESS_SOURCE). */
    if (sockaddr_of(lip, 0, &la, &llen) != fam) { close(fd); return mkstr(env, "EINVAL"); }
    if (bind(fd, (struct sockaddr *)&la, llen) < 0) {
      int e = errno;
      close(fd);
      return mkstr(env, uv_err_name(-e));
    }
  }
  if (connect(fd, (struct sockaddr *)&sa, len) < 0 && errno != EINPROGRESS) {
    int e = errno;
    close(fd);
    return mkstr(env, uv_err_name(-e));
  }
  int slot = c->natt++;
  Side *a = &c->att[slot];
  a->fd = fd;
  a->role = R_ATTEMPT;
  double now = fp_now();
  double timeout = arg_num(env, argv[4]), race = arg_num(env, argv[5]);
  a->deadline = now + (timeout > 0 ? timeout : 1e12);
  a->race_at = race > 0 ? now + race : 0;
  if (c->state != ST_CONNECTING) {
    /* The first attempt: what is sent once connected. The head is no longer read (C has given it to JS). */
    napi_typeof(env, argv[6], &t);
    if (t == napi_object) {
      void *data;
      size_t dl;
      if (napi_get_buffer_info(env, argv[6], &data, &dl) == napi_ok && dl > 0) {
        c->on_connect = malloc(dl);
        memcpy(c->on_connect, data, dl);
        c->on_connect_len = dl;
      }
    }
    double rest = arg_num(env, argv[7]);
    c->rest = rest > 0 && rest < (double)c->hlen ? (size_t)rest : rest > 0 ? c->hlen : 0;
    bool quiet = false;
    napi_get_value_bool(env, argv[8], &quiet);
    c->quiet_connect = quiet;
    c->state = ST_CONNECTING;
  }
  struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = a };
  epoll_ctl(L->ep, EPOLL_CTL_ADD, fd, &ev);
  return mknum(env, slot);
}

/* end(id, reply Buffer|null): the reply, a FIN, then what the client still sends is dropped for a while. */
static napi_value js_end(napi_env env, napi_callback_info info) {
  ARGS(2);
  Conn *c = fp_find(L, arg_num(env, argv[0]));
  if (!c || c->finishing || c->state == ST_LINGER) return NULL;
  void *data = NULL;
  size_t dl = 0;
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (t == napi_object && napi_get_buffer_info(env, argv[1], &data, &dl) != napi_ok) dl = 0;
  enter(L);
  fp_end(L, c, data, dl, REASON_ENDED);
  leave(L);
  return NULL;
}

/* destroy(id): every socket closed now. */
static napi_value js_destroy(napi_env env, napi_callback_info info) {
  ARGS(1);
  Conn *c = fp_find(L, arg_num(env, argv[0]));
  enter(L);
  if (c) fp_finish(L, c, REASON_ENDED, 0);
  leave(L);
  return NULL;
}

/* cancel(id, attempt): one connect attempt given up (a lost race), the others go on. */
static napi_value js_cancel(napi_env env, napi_callback_info info) {
  ARGS(2);
  Conn *c = fp_find(L, arg_num(env, argv[0]));
  int i = (int)arg_num(env, argv[1]);
  if (c && c->state == ST_CONNECTING && i >= 0 && i < MAX_ATT && c->att[i].fd >= 0) {
    epoll_ctl(L->ep, EPOLL_CTL_DEL, c->att[i].fd, NULL);
    close(c->att[i].fd);
    c->att[i].fd = -1;
  }
  return NULL;
}

/* adopt(id) -> the client's fd, now JavaScript's (a plain HTTP request goes to the JS front). */
static napi_value js_adopt(napi_env env, napi_callback_info info) {
  ARGS(1);
  Conn *c = fp_find(L, arg_num(env, argv[0]));
  if (!c || c->cl.fd < 0 || c->state == ST_RELAY || c->state == ST_LINGER) return mknum(env, -1);
  int fd = c->cl.fd;
  epoll_ctl(L->ep, EPOLL_CTL_DEL, fd, NULL);
  c->cl.fd = -1;
  c->silent = 1;
  enter(L);
  fp_finish(L, c, REASON_ENDED, 0);
  leave(L);
  return mknum(env, fd);
}

/* peer(id) -> [address, port] as accepted (IPv4-mapped IPv6 shown as IPv4). */
static napi_value js_peer(napi_env env, napi_callback_info info) {
  ARGS(1);
  Conn *c = fp_find_any(L, arg_num(env, argv[0])); /* inside closed() too */
  if (!c) return NULL;
  char text[INET6_ADDRSTRLEN];
  int port;
  if (c->peer.sin6_family == AF_INET) {
    struct sockaddr_in *v4 = (struct sockaddr_in *)&c->peer;
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    port = ntohs(v4->sin_port);
  } else if (IN6_IS_ADDR_V4MAPPED(&c->peer.sin6_addr)) {
    inet_ntop(AF_INET, &c->peer.sin6_addr.s6_addr[12], text, sizeof text);
    port = ntohs(c->peer.sin6_port);
  } else {
    inet_ntop(AF_INET6, &c->peer.sin6_addr, text, sizeof text);
    port = ntohs(c->peer.sin6_port);
  }
  napi_value arr;
  napi_create_array_with_length(env, 2, &arr);
  napi_set_element(env, arr, 0, mkstr(env, text));
  napi_set_element(env, arr, 1, mknum(env, port));
  return arr;
}

/* Every live connection of listener lid that `pick` selects is closed with `reason` (each reported). */
static void close_where(Loop *L, uint32_t lid, int (*pick)(const Conn *), int reason) {
  enter(L);
  for (uint32_t i = 0; i < L->nslots && !L->closing; i++) {
    Conn *c = L->slots[i];
    if (c && !c->finishing && c->lid == lid && pick(c)) fp_finish(L, c, reason, 0);
  }
  leave(L);
}

static int byteless_head(const Conn *c) { return c->state == ST_HEAD && c->hlen == 0; }
static int any(const Conn *c) { (void)c; return 1; }

/* drainIdle(listener): connections of this listener that have not sent a byte are closed. */
static napi_value js_drain_idle(napi_env env, napi_callback_info info) {
  ARGS(1);
  close_where(L, (uint32_t)arg_num(env, argv[0]), byteless_head, REASON_ENDED);
  return NULL;
}

/* destroyAll(listener): every connection of this listener closed now (each reported), whatever its state. */
static napi_value js_destroy_all(napi_env env, napi_callback_info info) {
  ARGS(1);
  close_where(L, (uint32_t)arg_num(env, argv[0]), any, REASON_SHUTDOWN);
  return NULL;
}

/* sweepEvery(ms): how often deadlines (head, connect, race, idle, linger) are checked. */
static napi_value js_sweep_every(napi_env env, napi_callback_info info) {
  ARGS(1);
  double ms = arg_num(env, argv[0]);
  if (!(ms >= 1)) ms = 1;
  uv_timer_start(&L->timer, on_timer, (uint64_t)ms, (uint64_t)ms);
  return NULL;
}

static napi_value js_active(napi_env env, napi_callback_info info) {
  ARGS(1);
  (void)argv;
  return mknum(env, L->live);
}

static void loop_free(Loop *L) {
  if (--L->holds) return;
  fp_reap(L);
  free(L->slots);
  free(L->freelist);
  free(L->scratch);
  free(L);
}

static void on_closed(uv_handle_t *h) { loop_free(h->data); }

static void loop_close(Loop *L, int emit) {
  if (L->closing) return;
  L->closing = 1; /* verbs are no-ops from here, also from inside the closed() callbacks below */
  enter(L);
  while (L->listeners) { Listener *l = L->listeners; L->listeners = l->next; listener_close(L, l); l->next = L->dead_listeners; L->dead_listeners = l; }
  for (uint32_t i = 0; i < L->nslots; i++) {
    Conn *c = L->slots[i];
    if (!c) continue;
    if (!emit) c->silent = 1;
    fp_finish(L, c, REASON_SHUTDOWN, 0);
  }
  L->closed = 1;
  uv_poll_stop(&L->poll);
  uv_close((uv_handle_t *)&L->poll, on_closed);
  uv_timer_stop(&L->timer);
  uv_close((uv_handle_t *)&L->timer, on_closed);
  close(L->ep);
  if (L->reserve >= 0) close(L->reserve);
  L->reserve = -1;
  leave(L);
}

/* close(): every listener and connection closed (each connection reported), the loop ends. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  ARGS(1);
  (void)argv;
  loop_close(L, 1);
  return NULL;
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  Loop *L = data;
  loop_close(L, 0);
  napi_delete_reference(env, L->cb);
  napi_delete_reference(env, L->resource);
  napi_async_destroy(env, L->actx);
  loop_free(L); /* the rest when libuv has closed both handles */
}

/* new Loop(callback) */
static napi_value js_new(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], self;
  napi_get_cb_info(env, info, &argc, argv, &self, NULL);
  Loop *L = calloc(1, sizeof *L);
  if (!L) return throw_errno(env, ENOMEM, "fast path");
  L->env = env;
  L->scratch = malloc(SCRATCH);
  L->ep = epoll_create1(EPOLL_CLOEXEC);
  if (L->ep < 0 || !L->scratch) { int e = L->scratch ? errno : ENOMEM; if (L->ep >= 0) close(L->ep); free(L->scratch); free(L); return throw_errno(env, e, "fast path"); }
  L->reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
  L->holds = 3;
  napi_create_reference(env, argv[0], 1, &L->cb);
  napi_value res, name;
  napi_create_object(env, &res);
  napi_create_reference(env, res, 1, &L->resource);
  napi_create_string_utf8(env, "egress-router:fastpath", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, res, name, &L->actx);
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  uv_poll_init(loop, &L->poll, L->ep);
  L->poll.data = L;
  uv_poll_start(&L->poll, UV_READABLE, on_poll);
  uv_timer_init(loop, &L->timer);
  L->timer.data = L;
  uv_unref((uv_handle_t *)&L->timer); /* deadlines never keep the process alive */
  uv_timer_start(&L->timer, on_timer, 100, 100);
  refresh(L);
  napi_wrap(env, self, L, finalize, NULL, NULL);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor m[] = {
    { "listen", NULL, js_listen, NULL, NULL, NULL, napi_default, NULL },
    { "port", NULL, js_port, NULL, NULL, NULL, napi_default, NULL },
    { "closeListener", NULL, js_close_listener, NULL, NULL, NULL, napi_default, NULL },
    { "connect", NULL, js_connect, NULL, NULL, NULL, napi_default, NULL },
    { "cancel", NULL, js_cancel, NULL, NULL, NULL, napi_default, NULL },
    { "end", NULL, js_end, NULL, NULL, NULL, napi_default, NULL },
    { "destroy", NULL, js_destroy, NULL, NULL, NULL, napi_default, NULL },
    { "adopt", NULL, js_adopt, NULL, NULL, NULL, napi_default, NULL },
    { "peer", NULL, js_peer, NULL, NULL, NULL, napi_default, NULL },
    { "drainIdle", NULL, js_drain_idle, NULL, NULL, NULL, napi_default, NULL },
    { "destroyAll", NULL, js_destroy_all, NULL, NULL, NULL, napi_default, NULL },
    { "sweepEvery", NULL, js_sweep_every, NULL, NULL, NULL, napi_default, NULL },
    { "active", NULL, js_active, NULL, NULL, NULL, napi_default, NULL },
    { "close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_value cls;
  napi_define_class(env, "Loop", NAPI_AUTO_LENGTH, js_new, NULL, sizeof m / sizeof *m, m, &cls);
  napi_set_named_property(env, exports, "Loop", cls);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
