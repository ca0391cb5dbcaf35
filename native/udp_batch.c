/*
 * udp_batch: batched datagram system calls for sockxfer's UDP transport (Linux).
 *
 * Node's dgram makes one system call and one JS callback per datagram. At 1472-byte datagrams
 * that is most of a loopback transfer's CPU. This addon lets the transport
 *
 *   - send a batch of datagrams with one sendmmsg(2), runs of equal-size datagrams coalesced
 *     into one UDP GSO message (UDP_SEGMENT: the kernel splits it into the same datagrams);
 *   - read the datagrams waiting on a socket with recvmmsg(2), each into a buffer the caller
 *     gives, with the sender's address formatted exactly as Node's dgram formats it;
 *   - encode a DATA packet, and check a packet's CRC32C, in one call each.
 *
 * The sockets stay Node's (dgram.Socket): the addon only borrows their file descriptors, and
 * never blocks (MSG_DONTWAIT). Where it is not built or not Linux, sockxfer uses dgram alone.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include <errno.h>
#include <string.h>
#include <stdint.h>

#ifdef __linux__
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <net/if.h>
#define SUPPORTED 1
#else
#define SUPPORTED 0
#endif

/* Datagrams per call, and segments per GSO message (the kernel's UDP_MAX_SEGMENTS is 64 or more). */
#define MAX_BATCH 256
#define MAX_SEGMENTS 64
/* A GSO message's payload must fit one IPv4/IPv6 UDP datagram's length field. */
#define MAX_GSO_BYTES 65000

/* ---- CRC32C (Castagnoli), as the protocol's packets carry it ------------------------------ */

static uint32_t crc_table[8][256];

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    crc_table[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++)
    for (int t = 1; t < 8; t++) crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

static uint32_t crc_soft(uint32_t crc, const uint8_t* p, size_t n) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  /* Eight bytes at a time (slicing-by-8); big-endian hosts take the byte loop alone. */
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    v ^= crc;
    crc = crc_table[7][v & 0xff] ^ crc_table[6][(v >> 8) & 0xff] ^ crc_table[5][(v >> 16) & 0xff] ^ crc_table[4][(v >> 24) & 0xff] ^
          crc_table[3][(v >> 32) & 0xff] ^ crc_table[2][(v >> 40) & 0xff] ^ crc_table[1][(v >> 48) & 0xff] ^ crc_table[0][v >> 56];
    p += 8;
    n -= 8;
  }
#endif
  while (n--) crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t* p, size_t n) {
  uint64_t c = crc;
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
    p += 8;
    n -= 8;
  }
  crc = (uint32_t)c;
  while (n--) crc = _mm_crc32_u8(crc, *p++);
  return crc;
}
static int crc_hw_ok;
#endif

/* CRC32C of p[0..n) (initial value 0, as fast-crc32c's calculate()). */
static uint32_t crc32c(const uint8_t* p, size_t n) {
  uint32_t crc = 0xffffffffu;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (crc_hw_ok) return crc_hw(crc, p, n) ^ 0xffffffffu;
#endif
  return crc_soft(crc, p, n) ^ 0xffffffffu;
}

static void put_u32(uint8_t* p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* A u64 given as a JS number (an integer below 2^53), big-endian. */
static void put_u64(uint8_t* p, double v) {
  uint64_t x = (uint64_t)v;
  put_u32(p, (uint32_t)(x >> 32));
  put_u32(p + 4, (uint32_t)x);
}

#define CHECK(call)                                                                  \
  do {                                                                               \
    if ((call) != napi_ok) {                                                         \
      napi_throw_error(env, "E_UDP_BATCH", "udp_batch: bad arguments (" #call ")"); \
      return NULL;                                                                   \
    }                                                                                \
  } while (0)

static napi_value int_value(napi_env env, int32_t v) {
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

/* The bytes of array[index], a Buffer. */
static inline napi_status buffer_at(napi_env env, napi_value array, uint32_t index, void** data, size_t* len) {
  napi_value b;
  napi_status st = napi_get_element(env, array, index, &b);
  return st != napi_ok ? st : napi_get_buffer_info(env, b, data, len);
}

#if SUPPORTED
/* Per thread: Node worker threads may load the addon too. */
static _Thread_local struct mmsghdr msgs[MAX_BATCH];
static _Thread_local struct iovec iovs[MAX_BATCH];
static _Thread_local int segments_of[MAX_BATCH];
static _Thread_local char controls[MAX_BATCH][CMSG_SPACE(sizeof(int))];
static _Thread_local struct sockaddr_storage names[MAX_BATCH];

/*
 * send(fd, buffers, from, count, gso) -> datagrams sent (>= 0), or -errno if none was.
 * Sends buffers[from .. from+count) in order on a connected socket. With gso, a run of
 * datagrams of one size (the last of a run may be shorter) goes as one UDP_SEGMENT message.
 */
static napi_value Send(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, from, count;
  bool gso;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_value_int32(env, argv[2], &from));
  CHECK(napi_get_value_int32(env, argv[3], &count));
  CHECK(napi_get_value_bool(env, argv[4], &gso));
  if (count > MAX_BATCH) count = MAX_BATCH;
  int n_msgs = 0;
  int i = 0;
  while (i < count) {
    void* data;
    size_t len;
    CHECK(buffer_at(env, argv[1], from + i, &data, &len));
    struct iovec* first = &iovs[i];
    iovs[i].iov_base = data;
    iovs[i].iov_len = len;
    i++;
    int segments = 1;
    size_t total = len;
    const size_t segment = len;
    if (gso) {
      while (i < count && segments < MAX_SEGMENTS) {
        CHECK(buffer_at(env, argv[1], from + i, &data, &len));
        if (len == 0 || len > segment || total + len > MAX_GSO_BYTES) break;
        iovs[i].iov_base = data;
        iovs[i].iov_len = len;
        i++;
        segments++;
        total += len;
        if (len < segment) break; /* only a run's last datagram may be shorter */
      }
    }
    struct msghdr* h = &msgs[n_msgs].msg_hdr;
    memset(h, 0, sizeof(*h));
    h->msg_iov = first;
    h->msg_iovlen = segments;
    if (segments > 1) {
      h->msg_control = controls[n_msgs];
      h->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
      memset(controls[n_msgs], 0, sizeof(controls[n_msgs]));
      struct cmsghdr* c = CMSG_FIRSTHDR(h);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t s = (uint16_t)segment;
      memcpy(CMSG_DATA(c), &s, sizeof(s));
    }
    segments_of[n_msgs++] = segments;
  }
  int done = 0;
  int32_t sent = 0;
  while (done < n_msgs) {
    int r = sendmmsg(fd, msgs + done, n_msgs - done, MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (done == 0) sent = -errno;
      break;
    }
    for (int k = done; k < done + r; k++) sent += segments_of[k];
    done += r;
  }
  return int_value(env, sent);
}

/* Formats an address as Node's dgram does (uv_inet_ntop, and %scope for scoped IPv6). */
static size_t format_address(const struct sockaddr_storage* a, char* out, size_t size) {
  if (a->ss_family == AF_INET) {
    const struct sockaddr_in* a4 = (const struct sockaddr_in*)a;
    if (uv_inet_ntop(AF_INET, &a4->sin_addr, out, size) != 0) return 0;
    return strlen(out);
  }
  const struct sockaddr_in6* a6 = (const struct sockaddr_in6*)a;
  if (uv_inet_ntop(AF_INET6, &a6->sin6_addr, out, size) != 0) return 0;
  size_t n = strlen(out);
  if (a6->sin6_scope_id != 0) {
    char scope[UV_IF_NAMESIZE];
    size_t scope_size = sizeof(scope);
    if (uv_if_indextoiid(a6->sin6_scope_id, scope, &scope_size) == 0 && n + 1 + scope_size < size) {
      out[n++] = '%';
      memcpy(out + n, scope, scope_size);
      n += scope_size;
      out[n] = 0;
    }
  }
  return n;
}

static int same_address(const struct sockaddr_storage* a, const struct sockaddr_storage* b) {
  if (a->ss_family != b->ss_family) return 0;
  if (a->ss_family == AF_INET) {
    const struct sockaddr_in *x = (const void*)a, *y = (const void*)b;
    return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  const struct sockaddr_in6 *x = (const void*)a, *y = (const void*)b;
  return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
         memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

/*
 * receive(fd, buffers, max, meta, addresses) -> datagrams read (>= 0), or -errno.
 * Datagram i lands in buffers[i]. meta (Int32Array, 3 per datagram): its length (-1 if it was
 * longer than its buffer and got cut), its source port, and 1 where its source address differs
 * from the datagram before it (datagram 0 always). addresses (Array): the formatted address of
 * each datagram whose flag is 1, at its index.
 */
static napi_value Receive(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, max;
  uint32_t n_buffers;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_array_length(env, argv[1], &n_buffers));
  CHECK(napi_get_value_int32(env, argv[2], &max));
  napi_typedarray_type type;
  size_t meta_len;
  void* meta_data;
  napi_value ab;
  size_t offset;
  CHECK(napi_get_typedarray_info(env, argv[3], &type, &meta_len, &meta_data, &ab, &offset));
  if (type != napi_int32_array) {
    napi_throw_error(env, "E_UDP_BATCH", "udp_batch: bad arguments");
    return NULL;
  }
  int32_t* meta = meta_data;
  if (max > MAX_BATCH) max = MAX_BATCH;
  if ((uint32_t)max > n_buffers) max = (int32_t)n_buffers;
  if ((size_t)max > meta_len / 3) max = (int32_t)(meta_len / 3);
  if (max <= 0) return int_value(env, 0);
  for (int i = 0; i < max; i++) {
    void* data;
    size_t len;
    CHECK(buffer_at(env, argv[1], i, &data, &len));
    iovs[i].iov_base = data;
    iovs[i].iov_len = len;
    struct msghdr* h = &msgs[i].msg_hdr;
    memset(h, 0, sizeof(*h));
    h->msg_iov = &iovs[i];
    h->msg_iovlen = 1;
    h->msg_name = &names[i];
    h->msg_namelen = sizeof(names[i]);
  }
  int r;
  do {
    r = recvmmsg(fd, msgs, max, MSG_DONTWAIT, NULL);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return int_value(env, -errno);
  for (int i = 0; i < r; i++) {
    const struct sockaddr_storage* a = &names[i];
    const int truncated = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
    meta[3 * i] = truncated ? -1 : (int32_t)msgs[i].msg_len;
    meta[3 * i + 1] = a->ss_family == AF_INET ? ntohs(((const struct sockaddr_in*)a)->sin_port) : ntohs(((const struct sockaddr_in6*)a)->sin6_port);
    const int changed = i == 0 || !same_address(a, &names[i - 1]);
    meta[3 * i + 2] = changed;
    if (changed) {
      char text[INET6_ADDRSTRLEN + UV_IF_NAMESIZE + 2];
      size_t n = format_address(a, text, sizeof(text));
      napi_value s;
      CHECK(napi_create_string_latin1(env, text, n, &s));
      CHECK(napi_set_element(env, argv[4], i, s));
    }
  }
  return int_value(env, r);
}
#endif

/*
 * encodeData(slab, at, head, pn, seq, index, chunk, bytes) -> the packet's length.
 * Writes one DATA packet at slab[at..] as packet.ts lays it out: head's 16 bytes (magic, version,
 * type, session), pn (u64), seq (u64), index (u32), chunk (u64), the chunk bytes, and the
 * CRC32C of all of that (u32). One call instead of a copy, six field writes and a CRC call.
 */
static napi_value EncodeData(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *slab, *head, *bytes;
  size_t slab_len, head_len, bytes_len;
  int32_t at;
  double pn, seq, chunk;
  uint32_t index;
  CHECK(napi_get_buffer_info(env, argv[0], (void**)&slab, &slab_len));
  CHECK(napi_get_value_int32(env, argv[1], &at));
  CHECK(napi_get_buffer_info(env, argv[2], (void**)&head, &head_len));
  CHECK(napi_get_value_double(env, argv[3], &pn));
  CHECK(napi_get_value_double(env, argv[4], &seq));
  CHECK(napi_get_value_uint32(env, argv[5], &index));
  CHECK(napi_get_value_double(env, argv[6], &chunk));
  CHECK(napi_get_buffer_info(env, argv[7], (void**)&bytes, &bytes_len));
  const size_t size = 44 + bytes_len + 4;
  if (at < 0 || head_len < 16 || (size_t)at + size > slab_len || !(pn >= 0 && pn < 9007199254740992.0) || !(seq >= 0 && seq < 9007199254740992.0) ||
      !(chunk >= 0 && chunk < 9007199254740992.0)) {
    napi_throw_range_error(env, "E_UDP_BATCH", "udp_batch: encodeData out of range");
    return NULL;
  }
  uint8_t* p = slab + at;
  memcpy(p, head, 16);
  put_u64(p + 16, pn);
  put_u64(p + 24, seq);
  put_u32(p + 32, index);
  put_u64(p + 36, chunk);
  memcpy(p + 44, bytes, bytes_len);
  put_u32(p + 44 + bytes_len, crc32c(p, 44 + bytes_len));
  return int_value(env, (int32_t)size);
}

/* The bytes of a function's only argument, a Buffer; false (with a JS exception) if it is not one. */
static bool buffer_argument(napi_env env, napi_callback_info info, uint8_t** data, size_t* len) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_get_buffer_info(env, argv[0], (void**)data, len) != napi_ok) {
    napi_throw_type_error(env, "E_UDP_BATCH", "udp_batch: expected a Buffer");
    return false;
  }
  return true;
}

/* crc32c(buffer) -> its CRC32C (for tests against fast-crc32c). */
static napi_value Crc32c(napi_env env, napi_callback_info info) {
  uint8_t* data;
  size_t len;
  if (!buffer_argument(env, info, &data, &len)) return NULL;
  napi_value out;
  napi_create_uint32(env, crc32c(data, len), &out);
  return out;
}

/* crcOk(packet) -> whether its last 4 bytes are the CRC32C (big-endian) of the bytes before them. */
static napi_value CrcOk(napi_env env, napi_callback_info info) {
  uint8_t* data;
  size_t len;
  if (!buffer_argument(env, info, &data, &len)) return NULL;
  bool ok = false;
  if (len >= 4) {
    const uint8_t* t = data + len - 4;
    const uint32_t want = (uint32_t)t[0] << 24 | (uint32_t)t[1] << 16 | (uint32_t)t[2] << 8 | t[3];
    ok = crc32c(data, len - 4) == want;
  }
  napi_value out;
  napi_get_boolean(env, ok, &out);
  return out;
}

/* supported() -> true where the batched calls exist (Linux). */
static napi_value Supported(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_get_boolean(env, SUPPORTED, &out);
  return out;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value f;
  crc_init();
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  crc_hw_ok = __builtin_cpu_supports("sse4.2");
#endif
  napi_create_function(env, "encodeData", NAPI_AUTO_LENGTH, EncodeData, NULL, &f);
  napi_set_named_property(env, exports, "encodeData", f);
  napi_create_function(env, "crcOk", NAPI_AUTO_LENGTH, CrcOk, NULL, &f);
  napi_set_named_property(env, exports, "crcOk", f);
  napi_create_function(env, "crc32c", NAPI_AUTO_LENGTH, Crc32c, NULL, &f);
  napi_set_named_property(env, exports, "crc32c", f);
  napi_create_function(env, "supported", NAPI_AUTO_LENGTH, Supported, NULL, &f);
  napi_set_named_property(env, exports, "supported", f);
#if SUPPORTED
  napi_create_function(env, "send", NAPI_AUTO_LENGTH, Send, NULL, &f);
  napi_set_named_property(env, exports, "send", f);
  napi_create_function(env, "receive", NAPI_AUTO_LENGTH, Receive, NULL, &f);
  napi_set_named_property(env, exports, "receive", f);
#endif
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
