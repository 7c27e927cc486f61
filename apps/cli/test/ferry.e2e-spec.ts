/**
 * `ferry` as a user runs it (tools/ferry.mjs, the package's "bin", running dist/apps/cli) against
 * the built stack on a private Redis: uploads and downloads per protocol with their sha256, a
 * SIGKILL mid-upload and mid-download then the same command again (it resumes), Ctrl-C, the bad
 * inputs (one line, non-zero exit), and the progress bar in a real terminal (`script`) only.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type FerryStack, type TempDir, startFerryStack, tempDir, waitFor } from '@ferry/testing';
import { FERRY, ROOT, ferry, jsonEvents, progressBytes, sha256Of, startFerry } from './ferry.harness';

const MiB = 1024 * 1024;
/** A name each protocol takes: GCS names are <bucket>/<object>; multipart file names have no "/". */
const nameFor = (protocol: string, base: string) => (protocol === 'gcs' ? `cli-gcs/${base}` : `cli-${protocol}-${base}`);
const PROTOCOLS = ['bytestream', 'gcs', 'tus', 'multipart', 'object'] as const;
/** The protocols whose server keeps what a killed upload sent (the object API's putUrl starts again). */
const RESUMABLE = ['bytestream', 'gcs', 'tus', 'multipart'] as const;
/** What each protocol publishes a name as (`ferry` prints it). */
const PUBLISHED = {
  bytestream: /^cli-bytestream-/,
  gcs: /^cli-gcs\//,
  tus: /^tus\//,
  multipart: /^fileHandle\/\d+$/,
  object: /^cli-object-/,
};

describe('ferry (the command)', () => {
  let stack: FerryStack;
  let dir: TempDir;
  let env: NodeJS.ProcessEnv;
  let small: string;
  let big: string;
  /** Other content for the Ctrl-C cases: multipart deduplicates a content its user uploaded before (answered at once). */
  let big2: string;

  beforeAll(async () => {
    for (const app of ['cli', 'ingest-grpc', 'multipart-api', 'object-api', 'assembler-worker']) {
      if (!existsSync(join(ROOT, 'dist', 'apps', app, 'main.js')))
        throw new Error(`dist/apps/${app} is not built: npx nx run-many -t build`);
    }
    stack = await startFerryStack();
    dir = tempDir('ferry-cli');
    env = {
      FERRY_GRPC_ADDRESS: stack.grpcAddress,
      FERRY_MULTIPART_URL: stack.multipartBase,
      FERRY_OBJECT_URL: stack.objectBase,
      FERRY_STATE_DIR: join(dir.path, 'state'),
      FERRY_TOKEN: 'dev-secret',
    };
    small = join(dir.path, 'small.bin');
    writeFileSync(small, randomBytes(3 * MiB + 17));
    big = join(dir.path, 'big.bin');
    writeFileSync(big, randomBytes(64 * MiB));
    big2 = join(dir.path, 'big2.bin');
    writeFileSync(big2, randomBytes(64 * MiB));
  });

  afterAll(async () => {
    await stack?.stop();
    dir?.remove();
  });

  it.each(PROTOCOLS)('%s: uploads, says the status, downloads, and the sha256 matches the catalog', async (protocol) => {
    const up = await ferry(['upload', '--protocol', protocol, small, nameFor(protocol, 'small.bin')], env);
    expect(up).toMatchObject({ code: 0 });
    const name = /(?:uploaded .* to|is already uploaded as) (\S+) \(/.exec(up.stdout)?.[1] as string;
    expect(name).toMatch(PUBLISHED[protocol]);
    expect(up.stderr).toContain(`sha256 ${sha256Of(small)} verified`);

    const status = await ferry(['status', '--protocol', protocol, name], env);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ name, committed: statSync(small).size, complete: true });

    const copy = join(dir.path, `copy-${protocol}.bin`);
    const down = await ferry(['download', '--protocol', protocol, name, copy], env);
    expect(down.code).toBe(0);
    expect(sha256Of(copy)).toBe(sha256Of(small));
    // a second download finds the file whole
    const again = await ferry(['download', '--protocol', protocol, name, copy], env);
    expect(again.stdout).toContain('nothing to download');
  });

  it.each(RESUMABLE)(
    '%s: killed with SIGKILL mid-upload, the same command resumes, sends the rest only, and the sha256 is right',
    async (protocol) => {
      const name = nameFor(protocol, 'killed.bin');
      // two multipart parts (8 MiB) at a time: with 24 MiB sent, one was added at least
      const first = startFerry(['upload', '--protocol', protocol, '--parallel', '2', '--json', '--rate-limit', '16M', big, name], env);
      await waitFor('24 MiB sent', () => progressBytes(first.stderr()) >= 24 * MiB, { timeoutMs: 120_000 });
      first.child.kill('SIGKILL');
      expect((await first.exited).signal).toBe('SIGKILL');

      // `ferry status <name>`: the server's persisted bytes of the upload the local state knows (tus URL, GCS and multipart upload ids)
      const during = await ferry(['status', '--protocol', protocol, name], env);
      expect(during.code).toBe(0);
      expect(during.stdout.trimEnd().split('\n')).toHaveLength(1);
      const inProgress = JSON.parse(during.stdout) as { committed: number; complete: boolean; state?: string };
      expect(inProgress).toMatchObject({ name, protocol, complete: false, ...(protocol === 'bytestream' ? {} : { state: 'in progress' }) });
      expect(inProgress.committed).toBeGreaterThan(0);

      const second = await ferry(['upload', '--protocol', protocol, '--json', big, name], env);
      expect(second.code).toBe(0);
      const resumedAt = Number(/resuming at (\d+) of 67108864 bytes/.exec(second.stderr)?.[1]);
      expect(resumedAt).toBeGreaterThanOrEqual(4 * MiB);
      // what status said the server held is where the next run resumed (a cut tus PATCH may still have added a little)
      expect(inProgress.committed).toBeLessThanOrEqual(resumedAt);
      if (protocol !== 'tus') expect(inProgress.committed).toBe(resumedAt);
      // multipart keeps the whole file's MD5 in its state: the resumed run does not read the file for it
      if (protocol === 'multipart')
        expect(second.stderr).toMatch(/resuming at \d+ of 67108864 bytes \(multipart upload .*, its MD5 kept\)/);
      // this run began where the server was, so it sent the rest only
      const start = jsonEvents(second.stderr).find((e) => e.event === 'start');
      expect(start?.from).toBe(resumedAt);
      expect(second.stderr).toContain(`sha256 ${sha256Of(big)} verified`);
      expect(second.stdout).toContain(`resumed at ${resumedAt}`);
      // finished: status of the same name answers the published name
      const published = /uploaded .* to (\S+) \(/.exec(second.stdout)?.[1] as string;
      expect(published).toMatch(PUBLISHED[protocol]);
      const after = await ferry(['status', '--protocol', protocol, name], env);
      expect(after.code).toBe(0);
      expect(JSON.parse(after.stdout)).toMatchObject({ name: published, committed: 64 * MiB, complete: true });
    },
  );

  it('multipart: presigned URLs that expire before their PUT are renewed (a stack with 1 s URLs), and the sha256 is right', async () => {
    const short = await startFerryStack({ env: { FERRY_SIGNED_URL_TTL_MS: '1000' } });
    try {
      const file = join(dir.path, 'expiring.bin');
      writeFileSync(file, randomBytes(32 * MiB));
      // 4 parts of 8 MiB, their URLs asked in one batch, one part at a time at 8 MiB/s: parts 3 and 4 wait > 2 s for their PUT
      const r = await ferry(['upload', '-p', 'multipart', '--parallel', '1', '--json', '--rate-limit', '8M', file, 'expiring.bin'], {
        ...env,
        FERRY_MULTIPART_URL: short.multipartBase,
        FERRY_GRPC_ADDRESS: short.grpcAddress,
        FERRY_OBJECT_URL: short.objectBase,
      });
      expect(r.code).toBe(0);
      const renewed = jsonEvents(r.stderr).filter(
        (e) => e.event === 'note' && /^part \d+: its presigned URL expired before the PUT: renewed$/.test(e.message ?? ''),
      );
      expect(renewed.length).toBeGreaterThan(0);
      expect(r.stderr).toContain(`sha256 ${sha256Of(file)} verified`);
    } finally {
      await short.stop();
    }
  });

  it('object: killed with SIGKILL mid-PUT, the same command continues its upload (a new putUrl, from 0) and the sha256 is right', async () => {
    const name = nameFor('object', 'killed.bin');
    const first = startFerry(['upload', '--protocol', 'object', '--json', '--rate-limit', '16M', big, name], env);
    await waitFor('16 MiB sent', () => progressBytes(first.stderr()) >= 16 * MiB, { timeoutMs: 120_000 });
    first.child.kill('SIGKILL');
    await first.exited;
    const second = await ferry(['upload', '--protocol', 'object', big, name], env);
    expect(second.code).toBe(0);
    expect(second.stderr).toMatch(/continuing upload [\w-]{22} \(begun .*\): the object API's putUrl cannot resume, so resuming at 0/);
    expect(second.stderr).toContain(`sha256 ${sha256Of(big)} verified`);
  });

  it('retries with backoff while the server is down, and finishes once it is back', async () => {
    const name = 'cli/server-restarted.bin';
    const run = startFerry(['upload', '--json', '--rate-limit', '16M', big, name], env);
    await waitFor('8 MiB sent', () => progressBytes(run.stderr()) >= 8 * MiB, { timeoutMs: 120_000 });
    await stack.kill('ingest-grpc');
    await waitFor('a retry announced', () => /retrying in/.test(run.stderr()), { timeoutMs: 60_000 });
    await stack.start('ingest-grpc');
    const r = await run.exited;
    expect(r.code).toBe(0);
    expect(jsonEvents(r.stderr).some((e) => e.event === 'note' && /^(upload|status): .*retrying in/.test(e.message ?? ''))).toBe(true);
    expect(r.stderr).toContain(`sha256 ${sha256Of(big)} verified`);
  });

  it.each(PROTOCOLS)('%s: Ctrl-C stops an upload cleanly, says how to continue, and that command finishes it', async (protocol) => {
    const name = nameFor(protocol, 'interrupted.bin');
    // one multipart part at a time: with 12 MiB sent, one (8 MiB) was added
    const run = startFerry(['upload', '-p', protocol, '--parallel', '1', '--json', '--rate-limit', '16M', big2, name], env);
    await waitFor('12 MiB sent', () => progressBytes(run.stderr()) >= 12 * MiB, { timeoutMs: 120_000 });
    run.child.kill('SIGINT');
    const r = await run.exited;
    expect(r.code).toBe(130);
    expect(r.stderr).toMatch(
      protocol === 'object'
        ? /upload interrupted \(the object API PUT starts again at 0 next time\); to continue/
        : /upload interrupted (at byte [1-9]\d* of 67108864|with [1-9]\d* of 67108864 bytes in parts) .*the server keeps/,
    );
    const again = /; to continue, run again:\n {2}ferry (.*)\n/.exec(r.stderr)?.[1] as string;
    expect(again).toBe(`upload -p ${protocol} --parallel 1 --json --rate-limit 16M ${big2} ${name}`);
    const resumed = await ferry(
      again.split(' ').filter((a) => a !== '--rate-limit' && a !== '16M'),
      env,
    );
    expect(resumed.code).toBe(0);
    expect(resumed.stderr).toMatch(protocol === 'object' ? /continuing upload/ : /resuming at [1-9]\d* of 67108864 bytes/);
    expect(resumed.stderr).toContain(`sha256 ${sha256Of(big2)} verified`);
  });

  it.each(PROTOCOLS)('%s: a download killed half-way resumes from the partial file', async (protocol) => {
    const up = await ferry(['upload', '-p', protocol, big, nameFor(protocol, 'download.bin')], env);
    expect(up.code).toBe(0);
    const name = /(?:uploaded .* to|is already uploaded as) (\S+) \(/.exec(up.stdout)?.[1] as string;
    const file = join(dir.path, `partial-${protocol}.bin`);
    const first = startFerry(['download', '-p', protocol, '--json', '--rate-limit', '16M', name, file], env);
    await waitFor('16 MiB read', () => progressBytes(first.stderr()) >= 16 * MiB, { timeoutMs: 120_000 });
    first.child.kill('SIGKILL');
    await first.exited;
    const partial = statSync(file).size;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(64 * MiB);

    const second = await ferry(['download', '-p', protocol, name, file], env);
    expect(second.code).toBe(0);
    expect(second.stderr).toContain(`resuming at ${partial} of 67108864 bytes`);
    expect(second.stdout).toContain(`resumed at ${partial}`);
    expect(sha256Of(file)).toBe(sha256Of(big));
  });

  it.each([
    ['a missing file', ['upload', 'no-such-file.bin', 'cli/x.bin'], {}, 3, /^ferry: no-such-file\.bin: no such file$/],
    ['a bad token', ['upload', 'SMALL', 'cli/x.bin'], { FERRY_TOKEN: 'wrong' }, 4, /^ferry: .*UNAUTHENTICATED.*FERRY_TOKEN/],
    ['a bad token (tus)', ['upload', '-p', 'tus', 'SMALL', 'cli/x.bin'], { FERRY_TOKEN: 'wrong' }, 4, /^ferry: tus: 401.*FERRY_TOKEN/],
    [
      'a bad token (multipart)',
      ['upload', '-p', 'multipart', 'SMALL', 'x.bin'],
      { FERRY_TOKEN: 'wrong' },
      4,
      /^ferry: multipart: 401.*FERRY_TOKEN/,
    ],
    [
      'a name multipart refuses',
      ['upload', '-p', 'multipart', 'SMALL', 'a/b.bin'],
      {},
      5,
      /^ferry: multipart: 400 INVALID_ARGUMENT .*fileName: must not contain "\/"$/,
    ],
    [
      'bad Taskcluster credentials (object)',
      ['upload', '-p', 'object', 'SMALL', 'x.bin'],
      { TASKCLUSTER_ACCESS_TOKEN: 'wrong' },
      4,
      /^ferry: object API: 401 .*TASKCLUSTER_ACCESS_TOKEN/,
    ],
    ['an unknown protocol', ['upload', '--protocol', 'ftp', 'SMALL', 'cli/x.bin'], {}, 2, /^ferry: unknown protocol "ftp"/],
    ['a name the server refuses', ['upload', 'SMALL', 'cli/../x.bin'], {}, 5, /^ferry: .*INVALID_ARGUMENT: resource_name may not contain/],
    ['an unknown name', ['download', 'cli/never-uploaded.bin', 'OUT'], {}, 6, /^ferry: cli\/never-uploaded\.bin: not found$/],
    ['no command', [], {}, 2, /^ferry: no command/],
  ])('%s: one line and a non-zero exit', async (_what, args, extra, exitCode, line) => {
    const argv = (args as string[]).map((a) => (a === 'SMALL' ? small : a === 'OUT' ? join(dir.path, 'out.bin') : a));
    const r = await ferry(argv, { ...env, ...(extra as NodeJS.ProcessEnv) });
    expect(r.code).toBe(exitCode);
    expect(r.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(line as RegExp)]);
  });

  it('refuses to upload over a name that holds other content (one line, exit 5); the same file again is nothing to send', async () => {
    const name = 'cli/taken.bin';
    expect((await ferry(['upload', small, name], env)).code).toBe(0);
    const same = await ferry(['upload', small, name], env);
    expect(same.code).toBe(0);
    expect(same.stdout).toContain('nothing to send');
    const other = join(dir.path, 'other.bin');
    writeFileSync(other, randomBytes(statSync(small).size));
    const r = await ferry(['upload', other, name], env);
    expect(r.code).toBe(5);
    expect(r.stderr.trimEnd().split('\n')).toEqual([`ferry: ${name} already holds another object of the same size: choose another name`]);
  });

  it('shows a progress bar in a terminal, and none when not a terminal', async () => {
    const command = [process.execPath, FERRY, 'upload', '--rate-limit', '32M', big, 'cli/tty.bin'].join(' ');
    // `script` gives the command a pseudo-terminal, as a user's shell does
    const tty = spawnSync('script', ['-qfec', command, '/dev/null'], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
      timeout: 300_000,
    });
    expect(tty.status).toBe(0);
    expect(tty.stdout).toMatch(/cli\/tty\.bin \[=*>? *\] +\d+\.\d% +[\d.]+ MiB\/64\.0 MiB +[\d.]+ MiB\/s +ETA \d\d:\d\d/);
    expect(tty.stdout).toContain('100.0%');

    const piped = await ferry(['upload', '--rate-limit', '32M', big, 'cli/piped.bin'], env);
    expect(piped.code).toBe(0);
    expect(piped.stderr).not.toMatch(/%|MiB\/s|\r/);
  });

  it('costs little over the plain ByteStream client (tools/cli/bytestream.mjs): same file, alternating runs', async () => {
    const plain = async (name: string) => {
      const child = spawn(process.execPath, [join(ROOT, 'tools', 'cli', 'bytestream.mjs'), 'upload', big, name], {
        env: { ...process.env, ...env },
        stdio: 'ignore',
      });
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      expect(code).toBe(0);
    };
    const timed = async (run: () => Promise<unknown>) => {
      const t0 = performance.now();
      await run();
      return performance.now() - t0;
    };
    const ferryMs: number[] = [];
    const plainMs: number[] = [];
    for (let i = 0; i < 2; i++) {
      plainMs.push(await timed(() => plain(`cli/bench-plain-${i}.bin`)));
      ferryMs.push(await timed(async () => expect((await ferry(['upload', big, `cli/bench-ferry-${i}.bin`], env)).code).toBe(0)));
    }
    const best = (xs: number[]) => Math.min(...xs);
    // ferry also hashes the file and asks the catalog at the end: a bounded extra, not a factor
    expect(best(ferryMs)).toBeLessThan(2 * best(plainMs) + 3000);
  });

  it('installs globally with `npm link` (a link to the clone) and runs from anywhere', () => {
    const prefix = join(dir.path, 'global');
    const link = spawnSync('npm', ['link', '--ignore-scripts', '--offline'], {
      cwd: ROOT,
      env: { ...process.env, NPM_CONFIG_PREFIX: prefix },
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(link.status).toBe(0);
    const r = spawnSync(join(prefix, 'bin', 'ferry'), ['--version'], { cwd: dir.path, encoding: 'utf8', timeout: 60_000 });
    expect(r.stdout).toBe('ferry 0.1.0\n');
  });

  it('installs globally from its package (`npm pack dist/apps/cli`, `npm install -g`) and works outside the clone', () => {
    const work = join(dir.path, 'pack');
    const prefix = join(dir.path, 'global-package');
    mkdirSync(work, { recursive: true });
    const pack = spawnSync('npm', ['pack', join(ROOT, 'dist', 'apps', 'cli'), '--pack-destination', work], {
      cwd: work,
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(pack.status).toBe(0);
    const tarball = join(work, pack.stdout.trim().split('\n').pop() as string);
    // its dependencies come from the npm cache (the clone's install filled it), the registry otherwise
    const install = spawnSync('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball], {
      cwd: work,
      encoding: 'utf8',
      timeout: 300_000,
    });
    expect(install.status).toBe(0);
    const installed = join(prefix, 'lib', 'node_modules', '@ferry', 'cli');
    expect(existsSync(join(installed, 'proto', 'protos.json'))).toBe(true);
    const bin = join(prefix, 'bin', 'ferry');
    expect(spawnSync(bin, ['--version'], { cwd: work, encoding: 'utf8', timeout: 60_000 }).stdout).toBe('ferry 0.1.0\n');
    // gRPC (its protos from the package) and the catalog check, from a directory outside the clone
    const up = spawnSync(bin, ['upload', small, 'cli/from-package.bin'], {
      cwd: work,
      env: { ...process.env, ...env },
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(up.status).toBe(0);
    expect(up.stderr).toContain(`sha256 ${sha256Of(small)} verified`);
  });

  it('runs as `npx ferry` in the clone (the package\'s own "bin")', () => {
    const r = spawnSync('npx', ['ferry', '--version'], { cwd: join(ROOT, 'apps'), encoding: 'utf8', timeout: 120_000 });
    expect(r.stdout).toBe('ferry 0.1.0\n');
  });
});
