import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseBytes, parseCommand } from './args';
import { hawkHeader } from './catalog';
import { UsageError } from './errors';
import { createProgress } from './progress';
import { StateStore } from './state';

describe('ferry command line', () => {
  it('reads an upload with its defaults and the environment', () => {
    const c = parseCommand(['upload', 'a.bin', 'isos/a.bin'], { HOME: '/home/u', FERRY_GRPC_PORT: '6000' });
    expect(c).toMatchObject({
      kind: 'upload',
      file: 'a.bin',
      name: 'isos/a.bin',
      options: {
        protocol: 'bytestream',
        progress: 'auto',
        rateLimit: 0,
        stateDir: '/home/u/.local/state/ferry',
        endpoints: {
          grpcAddress: '127.0.0.1:6000',
          multipartUrl: 'http://127.0.0.1:8081',
          objectUrl: 'http://127.0.0.1:8080',
          token: 'dev-secret',
        },
      },
    });
  });

  it('lets flags win over the environment', () => {
    const c = parseCommand(['download', '-p', 'tus', '--json', '--token', 't', '--rate-limit', '4M', 'n', 'f'], {
      FERRY_TOKEN: 'env',
      FERRY_STATE_DIR: '/s',
    });
    expect(c).toMatchObject({
      kind: 'download',
      options: { protocol: 'tus', progress: 'json', rateLimit: 4 * 1024 * 1024, stateDir: '/s' },
    });
    expect(c.kind === 'download' && c.options.endpoints.token).toBe('t');
  });

  it.each([
    [['upload', '-p', 'ftp', 'a', 'b'], /unknown protocol "ftp"/],
    [['upload', 'a'], /usage: ferry upload/],
    [['copy', 'a', 'b'], /unknown command "copy"/],
    [['upload', '--bogus', 'a', 'b'], /--bogus/],
    [['upload', '--parallel', '0', 'a', 'b'], /--parallel/],
  ])('refuses %j with a UsageError', (argv, message) => {
    expect(() => parseCommand(argv, {})).toThrow(UsageError);
    expect(() => parseCommand(argv, {})).toThrow(message);
  });

  it('reads sizes', () => {
    expect(parseBytes('512k', 'x')).toBe(512 * 1024);
    expect(parseBytes('1.5MiB', 'x')).toBe(1.5 * 1024 * 1024);
    expect(() => parseBytes('fast', 'x')).toThrow(UsageError);
  });
});

/** The hawk library's server side (a dev dependency, the verifier Taskcluster services use), typed for this test only. */
const hawk = require('hawk') as {
  server: {
    authenticate(req: object, credentials: (id: string) => object): Promise<{ credentials: { id: string } }>;
  };
};

describe('Hawk signing', () => {
  it('makes headers the hawk library (as the object API) accepts', async () => {
    const url = 'http://127.0.0.1:8080/api/object/v1/metadata/a%2Fb';
    const header = hawkHeader(url, 'GET', 'dev', 'dev-secret');
    const req = { method: 'GET', url: '/api/object/v1/metadata/a%2Fb', host: '127.0.0.1', port: 8080, authorization: header };
    const credentials = (id: string) => ({ id, key: 'dev-secret', algorithm: 'sha256' as const });
    const { credentials: who } = await hawk.server.authenticate(req, credentials);
    expect(who.id).toBe('dev');
    const wrong = hawkHeader(url, 'GET', 'dev', 'other-secret');
    await expect(hawk.server.authenticate({ ...req, authorization: wrong }, credentials)).rejects.toThrow(/Bad mac/);
  });
});

describe('progress', () => {
  const sink = (isTTY: boolean) => {
    const out: string[] = [];
    return { out, target: { isTTY, columns: 100, write: (t: string) => out.push(t) } };
  };

  it('draws a bar on a terminal: percent, bytes, rate, ETA', () => {
    const { out, target } = sink(true);
    const p = createProgress('auto', target, 'f', 'name');
    p.start(4 * 1024 * 1024, 1024 * 1024);
    p.end();
    expect(out.join('')).toMatch(/name \[=+>? *\] +25\.0% +1\.0 MiB\/4\.0 MiB +[\d.]+ B\/s +ETA/);
  });

  it('is quiet off a terminal but for notes, and writes JSON lines when asked', () => {
    const quiet = sink(false);
    const p = createProgress('auto', quiet.target, 'f', 'name');
    p.start(10, 0);
    p.update(5);
    p.note('resuming at 5');
    p.end();
    expect(quiet.out.join('')).toBe('resuming at 5\n');

    const json = sink(false);
    const j = createProgress('json', json.target, 'f', 'name');
    j.start(10, 4);
    j.end();
    expect(json.out.map((l) => JSON.parse(l))).toEqual([
      expect.objectContaining({ event: 'start', from: 4, total: 10, name: 'name', file: 'f' }),
      expect.objectContaining({ event: 'end', bytes: 4 }),
    ]);
  });
});

describe('upload states', () => {
  it('finds the latest upload in progress to a name, whatever the file, and what a finished one was published as', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ferry-state-'));
    try {
      const states = new StateStore(join(dir, 'state'));
      expect(states.latestFor('tus', 'x.bin')).toBeUndefined();
      const a = { path: join(dir, 'a.bin'), size: 10, mtimeMs: 1 };
      const b = { path: join(dir, 'b.bin'), size: 20, mtimeMs: 2 };
      states.save('tus', a, 'x.bin', { url: 'http://h/files/1' }, '2026-01-01T00:00:00.000Z');
      states.save('tus', b, 'x.bin', { url: 'http://h/files/2' }, '2026-01-02T00:00:00.000Z');
      states.save('gcs', b, 'x.bin', { uploadId: 'g' }, '2026-01-03T00:00:00.000Z');
      states.save('tus', b, 'y.bin', { url: 'http://h/files/3' }, '2026-01-04T00:00:00.000Z');
      writeFileSync(join(dir, 'state', 'upload-0123.json'), '{not json');
      expect(states.latestFor('tus', 'x.bin')).toMatchObject({ file: b.path, size: 20, data: { url: 'http://h/files/2' } });
      states.remove('tus', b, 'x.bin');
      expect(states.latestFor('tus', 'x.bin')?.data).toEqual({ url: 'http://h/files/1' });

      expect(states.publishedAs('tus', 'x.bin')).toBeUndefined();
      states.published('tus', 'x.bin', 'tus/1');
      expect(states.publishedAs('tus', 'x.bin')).toBe('tus/1');
      expect(states.publishedAs('multipart', 'x.bin')).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
