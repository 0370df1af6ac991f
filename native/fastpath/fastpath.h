/* Shared between the relay core (fastpath.c) and its JavaScript binding (binding.c). */
#ifndef FASTPATH_H
#define FASTPATH_H
#include <node_api.h>
#include <uv.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stddef.h>

#define MAX_ATT 4        /* connect attempts of one connection, racing or in turn (numbers never reused) */
#define LINGER_MS 2000   /* after a closing reply: how long what the client still sends is read and dropped */
#define SCRATCH (64 * 1024)  /* the loop's one read buffer: data is written on at once */
#define BURST 16         /* reads per readiness event and socket: one busy connection cannot hold the loop */
#define DEFAULT_HEAD (64 * 1024)  /* head mode: maxHead when the listener gives none */

enum { EV_ACCEPT = 1, EV_HEAD, EV_CONNECT_FAILED, EV_CONNECT_SLOW, EV_CONNECTED, EV_CLOSED, EV_HEAD_TIMEOUT };
enum { REASON_CLOSED, REASON_CLIENT_ERROR, REASON_REMOTE_ERROR, REASON_IDLE, REASON_ENDED, REASON_CLIENT_CLOSED, REASON_SHUTDOWN };
enum { ST_HEAD = 1, ST_WAIT, ST_CONNECTING, ST_RELAY, ST_LINGER, ST_DEAD };
enum { R_LISTENER = 1, R_CLIENT, R_ATTEMPT, R_UPSTREAM };
enum { MODE_RELAY, MODE_HEAD };

typedef struct conn Conn;

/* What an epoll event points at: a listener or one socket of a connection. */
typedef struct side {
  uint8_t role;
  uint8_t idx;       /* attempt number */
  int fd;
  Conn *c;
  double deadline;   /* attempt: connect timeout */
  double race_at;    /* attempt: when JS hears it is slow (0: told, or never) */
} Side;

typedef struct listener {
  uint8_t role;      /* R_LISTENER: first, as in Side */
  uint8_t open;
  uint8_t mode;
  int fd;
  uint32_t id;
  uint32_t idle_ms, head_ms, max_head;
  struct listener *next;
} Listener;

typedef struct { char *buf; size_t len, off; } Pending;

struct conn {
  uint32_t slot, gen, lid;
  uint8_t state, finishing, silent, quiet_connect, reason_after;
  uint8_t eof[2], shut[2];   /* per direction: 0 client -> upstream, 1 upstream -> client (linger: eof[0] is the client's FIN) */
  uint32_t acc;              /* epoll events of the client seen before relaying (what to read once connected) */
  uint8_t natt;              /* attempts started */
  int8_t up;                 /* the attempt that connected */
  Side cl;
  Side att[MAX_ATT];
  Pending pend[2];
  char *head;                /* head mode: what was read before JS decided */
  size_t hlen, hcap, seen, rest, max_head;
  char *on_connect;          /* written to the client once connected (a CONNECT's 200) */
  size_t on_connect_len;
  uint64_t from_client, to_client, last_bytes;
  double last_change, deadline;
  uint32_t idle_ms;
  struct sockaddr_in6 peer;  /* an IPv4 peer is kept as a sockaddr_in in the same bytes */
  Conn *next_dead;
};

typedef struct {
  napi_env env;
  napi_ref cb, resource;
  napi_async_context actx;
  uv_poll_t poll;
  uv_timer_t timer;
  int ep;
  int reserve;            /* a spare fd: on EMFILE one pending client is accepted and closed (as libuv does) */
  char *scratch;          /* SCRATCH bytes */
  uint8_t closing, closed;
  uint8_t holds;          /* the two uv handles and the JS object: freed when all three are gone */
  uint32_t depth;         /* inside a batch, a sweep or a verb: frees wait until the outermost returns */
  Conn **slots;
  uint32_t *freelist;
  uint32_t nslots, cap, nfree, gen, live, next_lid, open_listeners;
  Listener *listeners, *dead_listeners;
  Conn *dead;
} Loop;

Conn *fp_find(Loop *L, double id);
Conn *fp_find_any(Loop *L, double id);
Conn *fp_new_conn(Loop *L);
void fp_reap(Loop *L);
void fp_dispatch(Loop *L);
void fp_sweep(Loop *L);
void fp_finish(Loop *L, Conn *c, int reason, int err);
void fp_end(Loop *L, Conn *c, const char *reply, size_t n, int reason);
void fp_connected(Loop *L, Conn *c, int i, uint32_t ev);
double fp_now(void);
napi_value fp_emit(Loop *L, int type, Conn *c, napi_value a, napi_value b, napi_value d, napi_value e);

/* Shared by fastpath.c and relay.c. */
void fp_fd_close(Loop *L, int *fd);
void fp_reset_on_close(int fd);
int fp_so_error(int fd);
void fp_rearm(Loop *L, Side *s);
napi_value fp_num(napi_env env, double v);
napi_value fp_code_of(napi_env env, int err);
void fp_pending_clear(Pending *p);
void fp_relay_event(Loop *L, Conn *c, int side, uint32_t ev);
void fp_linger_step(Loop *L, Conn *c);
void fp_head_read(Loop *L, Conn *c);
void fp_attempt_done(Loop *L, Conn *c, int i, uint32_t ev);
#endif
