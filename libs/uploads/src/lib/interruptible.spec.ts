import { PassThrough } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { waitFor } from '@ferry/testing';
import { interruptible } from './interruptible';

describe('interruptible', () => {
  it('yields what the source yields, and ends with it', async () => {
    async function* three() {
      yield* [1, 2, 3];
    }
    const seen: number[] = [];
    for await (const n of interruptible(three(), new AbortController().signal)) seen.push(n);
    expect(seen).toEqual([1, 2, 3]);
  });

  it('rejects a pending next() with the reason when the signal aborts, leaving the stream open', async () => {
    const stream = new PassThrough();
    const stop = new AbortController();
    const seen: string[] = [];
    const iteration = (async () => {
      for await (const chunk of interruptible(stream.iterator({ destroyOnReturn: false }), stop.signal)) seen.push(String(chunk));
    })();
    stream.write('a');
    // the loop took 'a' and waits in next() for more (aborting earlier would test the already-aborted case)
    await waitFor("the loop to take 'a'", () => seen.length === 1);
    stop.abort(new Error('lease lost'));
    await expect(iteration).rejects.toThrow('lease lost');
    expect(seen).toEqual(['a']);
    expect(stream.destroyed).toBe(false);
  });

  it('fails at once when the signal aborted already', async () => {
    const stop = new AbortController();
    stop.abort(new Error('draining'));
    const never: AsyncIterator<number> = { next: () => new Promise(() => undefined) };
    await expect(interruptible(never, stop.signal)[Symbol.asyncIterator]().next()).rejects.toThrow('draining');
  });

  it('keeps no chunk alive once the loop has moved past it, however long the signal lives', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const stop = new AbortController();
    const refs: WeakRef<Buffer>[] = [];
    async function* chunks() {
      for (let i = 0; i < 50; i++) {
        const chunk = Buffer.alloc(64 * 1024, i);
        refs.push(new WeakRef(chunk));
        yield chunk;
      }
    }
    let bytes = 0;
    for await (const chunk of interruptible(chunks(), stop.signal)) bytes += chunk.length;
    expect(bytes).toBe(50 * 64 * 1024);
    await new Promise((r) => setImmediate(r));
    gc();
    // the signal (and anything listening to it) is still alive here; the chunks must not be
    expect(refs.filter((r) => r.deref() !== undefined).length).toBeLessThanOrEqual(1);
    expect(stop.signal.aborted).toBe(false);
  });
});
