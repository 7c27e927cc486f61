import { ConcurrentWriterError, InvalidArgumentError, NotFoundError } from './errors';
import { STATUS_TABLE, toWireError } from './status-table';

describe('toWireError', () => {
  it('maps domain errors to their gRPC and HTTP codes', () => {
    expect(toWireError(new InvalidArgumentError('bad'))).toMatchObject({ grpc: 3, http: 400, message: 'bad' });
    expect(toWireError(new NotFoundError('x'))).toMatchObject({ grpc: 5, http: 404 });
    expect(toWireError(new ConcurrentWriterError('busy'))).toMatchObject({ grpc: 10, http: 409, code: 'ABORTED' });
  });

  it('hides the text of unexpected errors', () => {
    const wire = toWireError(new Error('secret path /etc/x'));
    expect(wire).toEqual({ code: 'INTERNAL', message: 'internal error', ...STATUS_TABLE.INTERNAL, expected: false });
  });

  it('names errors after their class', () => {
    expect(new ConcurrentWriterError('x').name).toBe('ConcurrentWriterError');
  });
});
