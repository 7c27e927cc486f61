import { Writable } from 'node:stream';
import { createLogger } from './logger';

describe('createLogger', () => {
  it('writes JSON lines with the app name and redacts credentials', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const logger = createLogger('test-app', 'info', sink);
    logger.info({ headers: { authorization: 'Bearer secret-1' }, accessToken: 'secret-2', upload: 'u1' }, 'hello');
    logger.debug('not at info level');
    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0]);
    expect(entry).toMatchObject({ app: 'test-app', msg: 'hello', upload: 'u1', accessToken: '[redacted]' });
    expect(entry.headers.authorization).toBe('[redacted]');
    expect(lines[0]).not.toContain('secret');
  });
});
