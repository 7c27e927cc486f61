import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import IORedis from 'ioredis';
import { RedisKeys } from '@ferry/redis';
import { AppName, FerryStack, allKeys } from '@ferry/testing';

export const APPS: AppName[] = ['ingest-grpc', 'multipart-api', 'object-api', 'assembler-worker'];

/** The resident set size of process `pid` in bytes (Linux /proc), or undefined once it is gone. */
export function rssOf(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Watches the stack's processes for the whole run: any exit (a crash; the stack never restarts
 * one by itself, so a restart shows as the exit of the first process) and the RSS of each, sampled.
 */
export function watchProcesses(stack: FerryStack, intervalMs = 200) {
  const exits: string[] = [];
  const maxRss: Record<string, number> = {};
  const pids: Record<string, number> = {};
  for (const app of APPS) {
    const child = stack.child(app);
    if (!child?.pid) throw new Error(`${app} has no process`);
    pids[app] = child.pid;
    maxRss[app] = 0;
    child.once('exit', (code, signal) => exits.push(`${app} (pid ${child.pid}) exited: code ${code}, signal ${signal}`));
  }
  const sample = () => {
    for (const app of APPS) maxRss[app] = Math.max(maxRss[app], rssOf(pids[app]) ?? 0);
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    exits,
    maxRss,
    pids,
    /** Whether every app still runs under the pid it started with. */
    samePids: () => APPS.every((app) => stack.child(app)?.pid === pids[app] && stack.child(app)?.exitCode === null),
    stop: () => {
      clearInterval(timer);
      sample();
    },
  };
}

/** Every file under `dir` (relative paths), skipping `skip` (absolute). */
export function filesUnder(dir: string, skip?: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      if (p === skip) continue;
      let st;
      try {
        st = statSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out;
}

/** Names under `dir` (one level) containing `marker`: what a traversal that escaped would leave. */
export function markedNames(dir: string, marker: string): string[] {
  try {
    return readdirSync(dir).filter((n) => n.includes(marker));
  } catch {
    return [];
  }
}

/**
 * Every catalog entry (`<prefix>:obj:*`, as apps/upload-contract-e2e/test/catalog.ts reads them) is
 * whole: its blob exists in the data directory with the entry's size and sha256. Returns the problems.
 */
export async function partialCatalogEntries(stack: FerryStack): Promise<{ entries: number; problems: string[] }> {
  const conn = new IORedis(stack.redis.url, { maxRetriesPerRequest: 3 });
  const keys = new RedisKeys(stack.redis.prefix);
  const problems: string[] = [];
  try {
    const objKeys = await allKeys(conn, `${stack.redis.prefix}:obj:*`);
    for (const key of objKeys) {
      const type = await conn.type(key);
      if (type !== 'hash') continue; // generation counters and the like share the prefix
      const e = await conn.hgetall(key);
      if (!e['name']) continue;
      if (key !== keys.object(e['name'])) continue;
      const size = Number(e['size']);
      if (!/^[0-9a-f]{64}$/.test(e['sha256'] ?? '') || !/^[0-9a-f]{64}$/.test(e['blob'] ?? '') || !(size >= 0)) {
        problems.push(`${e['name']}: incomplete entry ${JSON.stringify(e)}`);
        continue;
      }
      const blob = join(stack.dataDir, 'blobs', 'sha256', e['blob'].slice(0, 2), e['blob']);
      let bytes: Buffer;
      try {
        bytes = readFileSync(blob);
      } catch {
        problems.push(`${e['name']}: blob ${e['blob']} missing`);
        continue;
      }
      const sha = createHash('sha256').update(bytes).digest('hex');
      if (bytes.length !== size || sha !== e['sha256'])
        problems.push(`${e['name']}: blob has ${bytes.length} bytes sha256 ${sha}, entry says ${size} ${e['sha256']}`);
    }
    return { entries: objKeys.length, problems };
  } finally {
    conn.disconnect();
  }
}
