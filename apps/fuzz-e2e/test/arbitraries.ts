import fc from 'fast-check';

/** Marks names the fuzz makes up: a file named with it outside the data directory is an escape. */
export const MARK = 'FZXesc';

/** Path segments that try to break out of a directory or a parser. */
const hostileSegments = [
  '..',
  '.',
  `../../${MARK}`,
  `..%2F..%2F${MARK}`,
  `%2e%2e%2f%2e%2e%2f${MARK}`,
  `..\\..\\${MARK}`,
  `%2e%2e%5c${MARK}`,
  '%00',
  `${MARK}%00.txt`,
  '%2F',
  '%',
  '%zz',
  '%C0%AE%C0%AE%2F',
  '%ff%fe',
  '%E2%80%AE',
  '~',
  '*',
  '?',
  '#',
  ';',
  '%3B',
  '%20',
  '+',
  'null',
  'undefined',
  '__proto__',
  'constructor',
  '0',
  '-1',
  '99999999999999999999999',
  '1e400',
  'NaN',
  '/etc/passwd',
  `/tmp/${MARK}`,
];

/** A path parameter: hostile, long, unicode (percent-encoded), or random. */
export const pathParam = (real: string[]): fc.Arbitrary<string> =>
  fc.oneof<fc.WeightedArbitrary<string>[]>(
    { arbitrary: fc.constantFrom(...hostileSegments), weight: 4 },
    { arbitrary: fc.constantFrom(...real), weight: 2 },
    { arbitrary: fc.string({ maxLength: 40 }).map(encodeURIComponent), weight: 2 },
    { arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }).map(encodeURIComponent), weight: 1 },
    { arbitrary: fc.string({ unit: 'binary', maxLength: 20 }).map((s) => encodeURIComponent(s).replace(/%2F/g, '/')), weight: 1 },
    { arbitrary: fc.integer({ min: 100, max: 9000 }).map((n) => 'a'.repeat(n)), weight: 1 },
    { arbitrary: fc.string({ unit: fc.constantFrom(...'0123456789abcdef'.split('')), minLength: 64, maxLength: 64 }), weight: 1 },
    { arbitrary: fc.string({ maxLength: 30 }).map((s) => `${MARK}${encodeURIComponent(s)}`), weight: 1 },
  );

export const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
export const httpMethod = fc.oneof(
  { arbitrary: fc.constantFrom(...METHODS), weight: 10 },
  { arbitrary: fc.constantFrom('TRACE', 'PROPFIND', 'MKCOL', 'FOO', 'get', 'M-SEARCH', 'PURGE', 'LINK'), weight: 1 },
);

const tokenChars = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~+/=';
const token = (max: number) => fc.string({ unit: fc.constantFrom(...tokenChars.split('')), maxLength: max });
/** Printable ASCII (a header value Node's parser takes), sometimes with latin1 bytes. */
export const headerValue = fc.oneof(
  { arbitrary: fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 60 }), weight: 6 },
  { arbitrary: fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 30 }), weight: 1 },
  { arbitrary: fc.constantFrom('', '0', '-1', '1.5', '99999999999999999999', '1e9', 'abc', ' 12', '0x10', 'true', '[]'), weight: 3 },
);

const numberish = fc.oneof(
  fc.constantFrom('0', '1', '-1', '', 'abc', '99999999999999999999', '1.5', '+5', '0x10', '5 ', '4294967296', '9007199254740993'),
  fc.nat().map(String),
);

/** A broken or random Authorization header; `hawk` makes a well-signed one for the request. */
export type AuthChoice =
  | { kind: 'none' }
  | { kind: 'valid' }
  | { kind: 'raw'; value: string }
  | { kind: 'truncatedHawk'; cut: number }
  | { kind: 'tamperedHawk'; field: 'id' | 'ts' | 'nonce' | 'mac' | 'ext' | 'hash'; value: string };

export const brokenAuth: fc.Arbitrary<AuthChoice> = fc.oneof(
  fc.constant<AuthChoice>({ kind: 'none' }),
  fc
    .oneof(
      token(80).map((t) => `Bearer ${t}`),
      fc.constantFrom(
        'Bearer',
        'Bearer ',
        'bearer dev-secret',
        'Bearer dev-secret ',
        'Bearer  dev-secret',
        'Bearer dev-secre',
        'Bearer dev-secretX',
        'Basic ZGV2OmRldi1zZWNyZXQ=',
        'Basic',
        'Hawk',
        'Hawk ',
        'Hawk id=',
        'Hawk id="dev"',
        'Negotiate abc',
        'dev-secret',
      ),
      headerValue.map((v) => `Hawk ${v}`),
      fc
        .record({ id: headerValue, ts: numberish, nonce: token(12), mac: token(44), ext: headerValue })
        .map((h) => `Hawk id="${h.id}", ts="${h.ts}", nonce="${h.nonce}", mac="${h.mac}", ext="${h.ext}"`),
      fc.integer({ min: 1, max: 2000 }).map((n) => `Bearer ${'x'.repeat(n)}`),
    )
    .map((value): AuthChoice => ({ kind: 'raw', value })),
  fc.nat({ max: 200 }).map((cut): AuthChoice => ({ kind: 'truncatedHawk', cut })),
  fc
    .record({ field: fc.constantFrom('id', 'ts', 'nonce', 'mac', 'ext', 'hash'), value: fc.oneof(token(30), numberish) })
    .map((r): AuthChoice => ({ kind: 'tamperedHawk', field: r.field as 'id', value: r.value })),
);

export const auth: fc.Arbitrary<AuthChoice> = fc.oneof(
  { arbitrary: fc.constant<AuthChoice>({ kind: 'valid' }), weight: 3 },
  { arbitrary: brokenAuth, weight: 2 },
);

/** Headers of the protocols Ferry speaks, with random values, and random others. */
export const extraHeaders: fc.Arbitrary<[string, string][]> = fc.array(
  fc.oneof(
    fc.tuple(fc.constantFrom('tus-resumable'), fc.oneof(fc.constant('1.0.0'), headerValue)),
    fc.tuple(fc.constantFrom('upload-length', 'upload-offset', 'upload-defer-length', 'x-ferry-part-size'), numberish),
    fc.tuple(
      fc.constantFrom('upload-metadata'),
      fc.oneof(
        headerValue,
        fc
          .array(fc.tuple(token(10), fc.oneof(token(20), headerValue)), { maxLength: 4 })
          .map((kv) => kv.map(([k, v]) => `${k} ${v}`).join(',')),
      ),
    ),
    fc.tuple(
      fc.constantFrom('upload-concat'),
      fc.oneof(fc.constantFrom('partial', 'final;', 'final; /files/a /files/b', 'final;/files/../x'), headerValue),
    ),
    fc.tuple(fc.constantFrom('upload-checksum'), fc.oneof(fc.constantFrom('sha1 ', 'md5 AAAA', 'sha256 !!!', 'crc32 x'), headerValue)),
    fc.tuple(
      fc.constantFrom('content-type'),
      fc.oneof(
        fc.constantFrom(
          'application/json',
          'application/offset+octet-stream',
          'application/octet-stream',
          'text/plain',
          'multipart/form-data; boundary=x',
          'application/json; charset=utf-7',
          'application/x-www-form-urlencoded',
        ),
        headerValue,
      ),
    ),
    fc.tuple(
      fc.constantFrom('range'),
      fc.oneof(
        fc.constantFrom(
          'bytes=0-0',
          'bytes=5-1',
          'bytes=-',
          'bytes=-0',
          'bytes=0-',
          'bytes=99999999999999999999-',
          'items=0-1',
          'bytes=0-1,2-3,4-5',
          'bytes=a-b',
        ),
        headerValue,
      ),
    ),
    fc.tuple(fc.constantFrom('x-http-method-override', 'x-method-override'), fc.oneof(fc.constantFrom(...METHODS), headerValue)),
    fc.tuple(fc.constantFrom('origin'), fc.oneof(fc.constantFrom('null', 'http://evil.example', 'https://x'), headerValue)),
    fc.tuple(
      fc.constantFrom('content-md5', 'content-encoding', 'accept-encoding', 'if-match', 'if-none-match', 'expect', 'x-goog-hash', 'accept'),
      headerValue,
    ),
    fc.tuple(
      token(20).filter((n) => /^[a-zA-Z0-9-]+$/.test(n) && !/^(content-length|transfer-encoding|connection|host)$/i.test(n)),
      headerValue,
    ),
  ),
  { maxLength: 6 },
);

/** How the body's Content-Length is sent: right, too small (the rest looks like a next request), absent, junk, chunked. */
export const lengthMode = fc.constantFrom('exact', 'exact', 'exact', 'smaller', 'none', 'junk', 'chunked', 'negative', 'double');

/** JSON documents of Ferry's request bodies, valid ones and wrong-typed ones. */
const validJson = [
  {
    projectId: 'fuzz',
    uploadId: 'FzUpload0000000000000A',
    expires: '2999-01-01T00:00:00.000Z',
    proposedUploadMethods: { putUrl: { contentType: 'application/octet-stream', contentLength: 5 } },
  },
  { projectId: 'fuzz', uploadId: 'FzUpload0000000000000A' },
  { acceptDownloadMethods: { simple: true, getUrl: true } },
  {
    fileName: 'f.bin',
    contentType: 'application/octet-stream',
    fileSizeBytes: 5,
    partSizeBytes: 5242880,
    contentMD5Hex: '5d41402abc4b2a76b9719d911017c592',
    storageLocationId: 1,
  },
  { uploadId: '1', partNumbers: [1, 2] },
];
const jsonValue = fc.jsonValue({ maxDepth: 3 });
export const body: fc.Arbitrary<Buffer> = fc.oneof(
  { arbitrary: fc.constant(Buffer.alloc(0)), weight: 3 },
  { arbitrary: fc.uint8Array({ maxLength: 2048 }).map((a) => Buffer.from(a)), weight: 3 },
  { arbitrary: fc.constantFrom(...validJson).map((j) => Buffer.from(JSON.stringify(j))), weight: 2 },
  {
    arbitrary: fc.tuple(fc.constantFrom(...validJson), fc.nat()).map(([j, n]) => {
      const s = JSON.stringify(j);
      return Buffer.from(s.slice(0, n % s.length));
    }),
    weight: 2,
  },
  {
    arbitrary: fc
      .tuple(
        fc.constantFrom(...validJson),
        fc.dictionary(
          fc.constantFrom(
            'projectId',
            'uploadId',
            'expires',
            'proposedUploadMethods',
            'fileName',
            'fileSizeBytes',
            'partSizeBytes',
            'contentMD5Hex',
            'partNumbers',
            'contentLength',
            'hashes',
            'storageLocationId',
            'acceptDownloadMethods',
            '__proto__',
          ),
          jsonValue,
        ),
      )
      .map(([j, wrong]) => Buffer.from(JSON.stringify({ ...j, ...wrong }))),
    weight: 3,
  },
  { arbitrary: jsonValue.map((j) => Buffer.from(JSON.stringify(j))), weight: 2 },
  {
    arbitrary: fc
      .integer({ min: 1000, max: 30000 })
      .map((n) => Buffer.from(JSON.stringify({ partNumbers: Array.from({ length: n }, (_, i) => i) }))),
    weight: 1,
  },
  { arbitrary: fc.integer({ min: 100, max: 5000 }).map((n) => Buffer.from('['.repeat(n) + ']'.repeat(n))), weight: 1 },
  { arbitrary: fc.integer({ min: 100_000, max: 300_000 }).map((n) => Buffer.from(JSON.stringify({ fileName: 'x'.repeat(n) }))), weight: 1 },
);

/** Byte-level mutations of an encoded protobuf message. */
export type Mutation =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'set'; at: number; value: number }
  | { op: 'truncate'; at: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'append'; bytes: Uint8Array }
  | { op: 'varint'; at: number };

export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: fc.constantFrom(0, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x08, 0x1a) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ op: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({ op: fc.constant('varint' as const), at: fc.nat() }),
);

export function mutate(b: Buffer, ms: Mutation[]): Buffer {
  let out = Buffer.from(b);
  for (const m of ms) {
    const at = out.length ? ('at' in m ? m.at % (out.length + 1) : 0) : 0;
    if (m.op === 'flip' && out.length) out[at % out.length] ^= 1 << m.bit;
    else if (m.op === 'set' && out.length) out[at % out.length] = m.value;
    else if (m.op === 'truncate') out = out.subarray(0, at);
    else if (m.op === 'insert') out = Buffer.concat([out.subarray(0, at), Buffer.from(m.bytes), out.subarray(at)]);
    else if (m.op === 'append') out = Buffer.concat([out, Buffer.from(m.bytes)]);
    // an overlong varint (10 bytes of continuation): lengths and field numbers past any limit
    else if (m.op === 'varint')
      out = Buffer.concat([
        out.subarray(0, at),
        Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        out.subarray(at),
      ]);
  }
  return out;
}
