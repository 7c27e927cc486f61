/*
 * Ferry's one native addon: what Node.js does not offer.
 *
 * Resumable MD5 and SHA-256 over the OpenSSL that Node.js carries: the state of a digest is a
 * plain buffer (OpenSSL's MD5_CTX / SHA256_CTX), so it can be saved (to Redis), loaded by
 * another process of the same build, and continued. Node's own crypto hashes cannot be saved.
 *
 *   init(alg)                 -> Buffer   the state before any byte ('md5' or 'sha256')
 *   update(state, chunks, cb)            hashes chunks (Buffers) after state, on libuv's pool;
 *                                        cb(null) when done. state and chunks must not change
 *                                        until then.
 *   updateSync(state, chunk)             hashes chunk (a Buffer) after state, on the calling
 *                                        thread, now (a chunk still in the CPU cache; a
 *                                        hashing thread of Ferry's own). Never while an update
 *                                        of the same state runs.
 *   digest(state)             -> Buffer   the digest of what state covers (state is unchanged)
 *   tag                       -> string   names the state layout; a state with another tag
 *                                        cannot be loaded here
 *
 * A state buffer is [u32 alg][ctx].
 *
 * Byte-range locks of an open file (Linux open file description locks, F_OFD_SETLK): held by the
 * file description, not the process, released when it is closed or its process dies. Staging
 * writers lock what they write, so a writer whose lease lapsed (a paused process) can never write
 * between its successor's bytes (libs/storage, FsStorage).
 *
 *   lock(fd, start, length)   -> boolean  an exclusive lock of [start, start+length) (length 0: to
 *                                         the end, however far the file grows); false if another
 *                                         file description holds part of it (never waits)
 *   unlock(fd, start, length)
 *
 * Built by tools/native/build.mjs (npm install); libs/native/src says what Ferry does without it.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#define OPENSSL_SUPPRESS_DEPRECATED
#include <node_api.h>
#include <openssl/md5.h>
#include <openssl/opensslv.h>
#include <openssl/sha.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ALG_MD5 = 1, ALG_SHA256 = 2 };
#define HEADER sizeof(unsigned int)

static size_t ctx_size(unsigned int alg) {
  return alg == ALG_MD5 ? sizeof(MD5_CTX) : alg == ALG_SHA256 ? sizeof(SHA256_CTX) : 0;
}

#define CHECK(env, call)                                              \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error((env), NULL, "ferry_native: " #call " failed"); \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

/* The bytes of `value` if it is a Buffer. */
static bool buffer_of(napi_env env, napi_value value, void **bytes, size_t *length) {
  bool is_buffer = false;
  return napi_is_buffer(env, value, &is_buffer) == napi_ok && is_buffer && napi_get_buffer_info(env, value, bytes, length) == napi_ok;
}

/* The state buffer's algorithm, or 0 (and a thrown TypeError) when it is not a state. */
static unsigned int state_of(napi_env env, napi_value value, void **data) {
  size_t length = 0;
  if (!buffer_of(env, value, data, &length) || length < HEADER) {
    napi_throw_type_error(env, NULL, "ferry_native: not a digest state");
    return 0;
  }
  unsigned int alg;
  memcpy(&alg, *data, HEADER);
  if (ctx_size(alg) == 0 || length != HEADER + ctx_size(alg)) {
    napi_throw_type_error(env, NULL, "ferry_native: not a digest state");
    return 0;
  }
  return alg;
}

static napi_value init(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char name[16] = {0};
  size_t len = 0;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "ferry_native: init(alg) takes 'md5' or 'sha256'");
    return NULL;
  }
  unsigned int alg = strcmp(name, "md5") == 0 ? ALG_MD5 : strcmp(name, "sha256") == 0 ? ALG_SHA256 : 0;
  if (alg == 0) {
    napi_throw_type_error(env, NULL, "ferry_native: init(alg) takes 'md5' or 'sha256'");
    return NULL;
  }
  void *data;
  napi_value state;
  CHECK(env, napi_create_buffer(env, HEADER + ctx_size(alg), &data, &state));
  memset(data, 0, HEADER + ctx_size(alg));
  memcpy(data, &alg, HEADER);
  if (alg == ALG_MD5) MD5_Init((MD5_CTX *)((char *)data + HEADER));
  else SHA256_Init((SHA256_CTX *)((char *)data + HEADER));
  return state;
}

typedef struct {
  napi_async_work work;
  napi_ref state_ref, chunks_ref, cb_ref;
  unsigned int alg;
  void *ctx;
  uint32_t count;
  const void **bytes;
  size_t *lengths;
} Update;

/* Hashes `length` bytes into the context of a state of algorithm `alg` (update and updateSync). */
static void hash_bytes(unsigned int alg, void *ctx, const void *bytes, size_t length) {
  if (alg == ALG_MD5) MD5_Update((MD5_CTX *)ctx, bytes, length);
  else SHA256_Update((SHA256_CTX *)ctx, bytes, length);
}

static void update_execute(napi_env env, void *arg) {
  (void)env;
  Update *u = arg;
  for (uint32_t i = 0; i < u->count; i++) hash_bytes(u->alg, u->ctx, u->bytes[i], u->lengths[i]);
}

static void update_complete(napi_env env, napi_status status, void *arg) {
  Update *u = arg;
  napi_value cb, global, argv[1];
  if (napi_get_reference_value(env, u->cb_ref, &cb) == napi_ok && napi_get_global(env, &global) == napi_ok) {
    if (status == napi_ok) napi_get_null(env, &argv[0]);
    else {
      napi_value message;
      napi_create_string_utf8(env, "ferry_native: update cancelled", NAPI_AUTO_LENGTH, &message);
      napi_create_error(env, NULL, message, &argv[0]);
    }
    napi_call_function(env, global, cb, 1, argv, NULL);
  }
  napi_delete_reference(env, u->state_ref);
  napi_delete_reference(env, u->chunks_ref);
  napi_delete_reference(env, u->cb_ref);
  napi_delete_async_work(env, u->work);
  free(u->bytes);
  free(u->lengths);
  free(u);
}

static napi_value update(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *data;
  unsigned int alg = argc == 3 ? state_of(env, argv[0], &data) : 0;
  if (alg == 0) {
    if (argc != 3) napi_throw_type_error(env, NULL, "ferry_native: update(state, chunks, cb)");
    return NULL;
  }
  bool is_array = false;
  uint32_t count = 0;
  CHECK(env, napi_is_array(env, argv[1], &is_array));
  if (!is_array) {
    napi_throw_type_error(env, NULL, "ferry_native: update(state, chunks, cb): chunks is an array of Buffers");
    return NULL;
  }
  CHECK(env, napi_get_array_length(env, argv[1], &count));
  Update *u = calloc(1, sizeof *u);
  u->bytes = calloc(count ? count : 1, sizeof *u->bytes);
  u->lengths = calloc(count ? count : 1, sizeof *u->lengths);
  u->alg = alg;
  u->ctx = (char *)data + HEADER;
  u->count = count;
  for (uint32_t i = 0; i < count; i++) {
    napi_value chunk;
    void *bytes = NULL;
    if (napi_get_element(env, argv[1], i, &chunk) != napi_ok || !buffer_of(env, chunk, &bytes, &u->lengths[i])) {
      free(u->bytes);
      free(u->lengths);
      free(u);
      napi_throw_type_error(env, NULL, "ferry_native: update(state, chunks, cb): chunks is an array of Buffers");
      return NULL;
    }
    u->bytes[i] = bytes;
  }
  napi_value name;
  CHECK(env, napi_create_reference(env, argv[0], 1, &u->state_ref));
  CHECK(env, napi_create_reference(env, argv[1], 1, &u->chunks_ref));
  CHECK(env, napi_create_reference(env, argv[2], 1, &u->cb_ref));
  CHECK(env, napi_create_string_utf8(env, "ferry:native_hash", NAPI_AUTO_LENGTH, &name));
  CHECK(env, napi_create_async_work(env, NULL, name, update_execute, update_complete, u, &u->work));
  CHECK(env, napi_queue_async_work(env, u->work));
  return NULL;
}

static napi_value update_sync(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *data;
  unsigned int alg = argc == 2 ? state_of(env, argv[0], &data) : 0;
  if (alg == 0) {
    if (argc != 2) napi_throw_type_error(env, NULL, "ferry_native: updateSync(state, chunk)");
    return NULL;
  }
  void *bytes = NULL;
  size_t length = 0;
  if (!buffer_of(env, argv[1], &bytes, &length)) {
    napi_throw_type_error(env, NULL, "ferry_native: updateSync(state, chunk): chunk is a Buffer");
    return NULL;
  }
  hash_bytes(alg, (char *)data + HEADER, bytes, length);
  return NULL;
}

static napi_value digest(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  void *data, *bytes;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  unsigned int alg = argc == 1 ? state_of(env, argv[0], &data) : 0;
  if (alg == 0) {
    if (argc != 1) napi_throw_type_error(env, NULL, "ferry_native: digest(state)");
    return NULL;
  }
  if (alg == ALG_MD5) {
    MD5_CTX copy;
    memcpy(&copy, (char *)data + HEADER, sizeof copy);
    CHECK(env, napi_create_buffer(env, MD5_DIGEST_LENGTH, &bytes, &out));
    MD5_Final(bytes, &copy);
  } else {
    SHA256_CTX copy;
    memcpy(&copy, (char *)data + HEADER, sizeof copy);
    CHECK(env, napi_create_buffer(env, SHA256_DIGEST_LENGTH, &bytes, &out));
    SHA256_Final(bytes, &copy);
  }
  return out;
}

/* fd, start, length as integers; false (and a thrown TypeError) when they are not. */
static bool range_args(napi_env env, napi_callback_info info, int *fd, int64_t *start, int64_t *length) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 || napi_get_value_int32(env, argv[0], fd) != napi_ok ||
      napi_get_value_int64(env, argv[1], start) != napi_ok || napi_get_value_int64(env, argv[2], length) != napi_ok || *fd < 0 ||
      *start < 0 || *length < 0) {
    napi_throw_type_error(env, NULL, "ferry_native: (fd, start, length) are non-negative integers");
    return false;
  }
  return true;
}

static napi_value set_lock(napi_env env, napi_callback_info info, short type) {
  int fd;
  int64_t start, length;
  if (!range_args(env, info, &fd, &start, &length)) return NULL;
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = (off_t)start;
  fl.l_len = (off_t)length;
  napi_value result;
  if (fcntl(fd, F_OFD_SETLK, &fl) == 0) {
    napi_get_boolean(env, true, &result);
    return result;
  }
  if (type != F_UNLCK && (errno == EAGAIN || errno == EACCES)) {
    napi_get_boolean(env, false, &result);
    return result;
  }
  char message[96];
  snprintf(message, sizeof message, "ferry_native: fcntl(F_OFD_SETLK) failed: %s", strerror(errno));
  napi_throw_error(env, NULL, message);
  return NULL;
}

static napi_value lock(napi_env env, napi_callback_info info) { return set_lock(env, info, F_WRLCK); }

static napi_value unlock(napi_env env, napi_callback_info info) { return set_lock(env, info, F_UNLCK); }

NAPI_MODULE_INIT() {
  napi_value fn, tag;
  char text[96];
  snprintf(text, sizeof text, "openssl-%lx-md5:%zu-sha256:%zu", (unsigned long)OPENSSL_VERSION_NUMBER, sizeof(MD5_CTX),
           sizeof(SHA256_CTX));
  napi_create_function(env, "init", NAPI_AUTO_LENGTH, init, NULL, &fn);
  napi_set_named_property(env, exports, "init", fn);
  napi_create_function(env, "update", NAPI_AUTO_LENGTH, update, NULL, &fn);
  napi_set_named_property(env, exports, "update", fn);
  napi_create_function(env, "updateSync", NAPI_AUTO_LENGTH, update_sync, NULL, &fn);
  napi_set_named_property(env, exports, "updateSync", fn);
  napi_create_function(env, "digest", NAPI_AUTO_LENGTH, digest, NULL, &fn);
  napi_set_named_property(env, exports, "digest", fn);
  napi_create_function(env, "lock", NAPI_AUTO_LENGTH, lock, NULL, &fn);
  napi_set_named_property(env, exports, "lock", fn);
  napi_create_function(env, "unlock", NAPI_AUTO_LENGTH, unlock, NULL, &fn);
  napi_set_named_property(env, exports, "unlock", fn);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &tag);
  napi_set_named_property(env, exports, "tag", tag);
  return exports;
}
