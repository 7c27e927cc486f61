#!/usr/bin/env node
// Micro-benchmark behind FsStorage's one-writer-at-a-time rule for multipart staging files:
// 16 parts of 64 MiB written by 4 concurrent writers in 1 MiB writes, then fdatasync, as
//   one    - at their offsets in one preallocated file, writes concurrent (libuv threads contend
//            for the inode lock and spin);
//   serial - the same file, one write at a time (what FsStorage does);
//   many   - one file per part (what the bare HTTP baseline does).
// Prints MB/s and process CPU-seconds (user + system) for 1 GiB. Memory settles 16 s before each
// mode (see docs/benchmarking.md). Usage: node tools/bench/one-file-writes.mjs [rounds]
import { mkdirSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB, root, sleep } from './lib.mjs';

const PART = 64 * MiB;
const PARTS = 16;
const BATCH = MiB;
const dir = join(root, 'tmp', 'bench', 'one-file-writes');
const buf = Buffer.alloc(BATCH, 7);

async function run(mode) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  await sleep(16_000);
  const one = mode !== 'many';
  if (one) {
    const fh = await open(join(dir, 'one.bin'), 'w');
    await fh.truncate(PART * PARTS);
    await fh.close();
  }
  let turn = Promise.resolve();
  const write = async (fh, position) => {
    if (mode !== 'serial') return fh.write(buf, 0, BATCH, position);
    const previous = turn;
    let done;
    turn = new Promise((r) => (done = r));
    await previous;
    await fh.write(buf, 0, BATCH, position);
    done();
  };
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  const queue = [...Array(PARTS).keys()];
  await Promise.all(
    [0, 1, 2, 3].map(async () => {
      for (let n = queue.shift(); n !== undefined; n = queue.shift()) {
        const fh = await open(join(dir, one ? 'one.bin' : `part-${n}.bin`), one ? 'r+' : 'w');
        for (let off = 0; off < PART; off += BATCH) await write(fh, (one ? n * PART : 0) + off);
        await fh.datasync();
        await fh.close();
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(c0);
  console.log(
    `${mode.padEnd(6)} ${((PART * PARTS) / 1e6 / seconds).toFixed(0)} MB/s, ${((cpu.user + cpu.system) / 1e6).toFixed(2)} CPU-s per GiB`,
  );
}

const rounds = Number(process.argv[2] ?? 2);
for (let r = 0; r < rounds; r++) for (const mode of ['one', 'serial', 'many']) await run(mode);
rmSync(dir, { recursive: true, force: true });
