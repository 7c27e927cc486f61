// The images docker-compose.yml and deploy/Dockerfile name, made on this machine without a
// registry: a Debian bookworm base from `debootstrap` (this machine's apt mirror), and on it
// stand-ins tagged with the names the files use (node:20-bookworm, node:20-bookworm-slim,
// redis:7-alpine, minio/minio:latest), each from tools/compose/images/<dir>/Dockerfile. A tag that
// exists already is used as it is (a stand-in made before, or the real image pulled from a
// registry): `--rebuild-images` removes the stand-ins first.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
/** Marks the images made here (what --rebuild-images removes; a pulled image has no such label). */
export const STAND_IN_LABEL = 'dev.ferry.compose-stand-in';
export const BASE = 'ferry-compose/bookworm:minbase';

/** In build order: each may build FROM the ones before it. */
export const STAND_INS = [
  { tag: 'node:20-bookworm-slim', dir: 'node-slim', context: nodeContext },
  { tag: 'node:20-bookworm', dir: 'node' },
  { tag: 'redis:7-alpine', dir: 'redis' },
  { tag: 'minio/minio:latest', dir: 'minio' },
];

/**
 * The environment of `docker build` and compose's build: the classic builder where the CLI has no
 * buildx plugin (Debian's docker.io has none; BuildKit through the CLI needs it), else the default.
 */
export function buildEnv() {
  const buildx = spawnSync('docker', ['buildx', 'version'], { stdio: 'ignore' }).status === 0;
  return buildx ? { ...process.env } : { ...process.env, DOCKER_BUILDKIT: '0' };
}

function sh(cmd, args, { log, input, quiet, env } = {}) {
  const r = spawnSync(cmd, args, {
    stdio: [input ? 'pipe' : 'ignore', quiet ? 'pipe' : 'inherit', quiet ? 'pipe' : 'inherit'],
    input,
    env,
    maxBuffer: 1 << 26,
  });
  if (r.error || r.status !== 0) {
    throw new Error(
      `${cmd} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`})${quiet ? `: ${r.stderr}` : ''}`,
    );
  }
  if (log) log(`${cmd} ${args.slice(0, 3).join(' ')}… done`);
  return r.stdout?.toString() ?? '';
}

export function imageExists(tag) {
  return spawnSync('docker', ['image', 'inspect', tag], { stdio: 'ignore' }).status === 0;
}

/** The Debian mirror this machine's apt uses (deb822 `URIs:` or a one-line `deb` entry). */
export function aptMirror() {
  const files = ['/etc/apt/sources.list', ...listDir('/etc/apt/sources.list.d').map((f) => join('/etc/apt/sources.list.d', f))];
  for (const file of files) {
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^\s*(?:URIs:\s*(\S+)|deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s)/gm)) {
      const uri = m[1] ?? m[2];
      if (/debian\/?$/.test(uri) && !/security/.test(uri)) return uri;
    }
  }
  return 'http://deb.debian.org/debian';
}

function listDir(dir) {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** debootstrap --variant=minbase bookworm, imported as BASE. */
function buildBase(log) {
  if (!existsSync('/usr/sbin/debootstrap') && spawnSync('which', ['debootstrap']).status !== 0) {
    throw new Error('debootstrap is missing: apt-get install debootstrap (it makes the Debian base image without a registry)');
  }
  const mirror = aptMirror();
  const dir = join(tmpdir(), `ferry-compose-rootfs-${process.pid}`);
  log(`debootstrap --variant=minbase bookworm from ${mirror} (about a minute)`);
  try {
    sh('debootstrap', ['--variant=minbase', 'bookworm', dir, mirror], { quiet: true });
    rmSync(join(dir, 'var/cache/apt/archives'), { recursive: true, force: true });
    mkdirSync(join(dir, 'var/cache/apt/archives/partial'), { recursive: true });
    const tar = spawnSync('tar', ['-C', dir, '-c', '.'], { maxBuffer: 1 << 30 });
    if (tar.status !== 0) throw new Error(`tar of ${dir} failed: ${tar.stderr}`);
    sh(
      'docker',
      [
        'import',
        '--change',
        'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        '--change',
        `LABEL ${STAND_IN_LABEL}=debootstrap`,
        '--change',
        'CMD ["bash"]',
        '-',
        BASE,
      ],
      { input: tar.stdout, quiet: true },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The host's Node.js (binary, headers, npm) and extra CA certificates, for the node stand-in's build context. */
function nodeContext(ctx) {
  const node = realpathSync(process.execPath);
  const prefix = dirname(dirname(node));
  const include = [join(prefix, 'include/node'), '/usr/include/node'].find((d) => existsSync(join(d, 'node_api.h')));
  const npm = [join(prefix, 'lib/node_modules/npm'), '/usr/lib/node_modules/npm', '/usr/local/lib/node_modules/npm'].find((d) =>
    existsSync(join(d, 'bin/npm-cli.js')),
  );
  if (!include || !npm) throw new Error(`Node.js headers or npm not found beside ${node} (need ${prefix}/include/node and npm)`);
  mkdirSync(join(ctx, 'node/bin'), { recursive: true });
  cpSync(node, join(ctx, 'node/bin/node'));
  cpSync(include, join(ctx, 'node/include'), { recursive: true, dereference: true });
  cpSync(npm, join(ctx, 'node/npm'), { recursive: true, dereference: true });
  mkdirSync(join(ctx, 'extra-ca'), { recursive: true });
  for (const f of listDir('/usr/local/share/ca-certificates')) {
    if (f.endsWith('.crt')) cpSync(join('/usr/local/share/ca-certificates', f), join(ctx, 'extra-ca', f));
  }
}

/** Makes every missing image (BASE first, when a stand-in needs it). Returns the tags it built. */
export function ensureImages({ log = console.log, rebuild = false } = {}) {
  if (rebuild) {
    for (const tag of [...STAND_INS.map((s) => s.tag).reverse(), BASE]) {
      const label = spawnSync('docker', ['image', 'inspect', '-f', `{{index .Config.Labels "${STAND_IN_LABEL}"}}`, tag])
        .stdout?.toString()
        .trim();
      if (label) sh('docker', ['image', 'rm', '-f', tag], { quiet: true });
    }
  }
  const built = [];
  const missing = STAND_INS.filter((s) => !imageExists(s.tag));
  if (missing.length === 0) return built;
  if (!imageExists(BASE)) {
    buildBase(log);
    built.push(BASE);
  }
  for (const s of missing) {
    // an earlier stand-in of this run may be what this one builds FROM: built in order
    const ctx = join(tmpdir(), `ferry-compose-image-${s.dir}-${process.pid}`);
    rmSync(ctx, { recursive: true, force: true });
    cpSync(join(here, 'images', s.dir), ctx, { recursive: true });
    try {
      s.context?.(ctx);
      log(`building ${s.tag} (stand-in: tools/compose/images/${s.dir})`);
      // host networking: apt and npm reach the mirror and the registry as this machine does
      sh('docker', ['build', '--network', 'host', '--label', `${STAND_IN_LABEL}=${s.dir}`, '-t', s.tag, ctx], {
        quiet: true,
        env: buildEnv(),
      });
    } finally {
      rmSync(ctx, { recursive: true, force: true });
    }
    built.push(s.tag);
  }
  return built;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const t0 = Date.now();
  const built = ensureImages({ rebuild: process.argv.includes('--rebuild-images') });
  console.log(`images: ${built.length ? `built ${built.join(', ')}` : 'all present'} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}
