import type * as grpc from '@grpc/grpc-js';

/** Byte-for-byte comparison without jest's deep equality, which is very slow on megabytes. */
export function expectSameBytes(actual: Buffer, expected: Buffer): void {
  expect(actual.length).toBe(expected.length);
  expect(actual.equals(expected)).toBe(true);
}

/** Expects `p` to fail with gRPC status `code` (and details matching `message`, if given). */
export async function expectGrpcCode(p: Promise<unknown>, code: grpc.status, message?: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e as grpc.ServiceError,
  );
  expect(err).toBeDefined();
  expect({ code: err?.code, details: err?.details }).toEqual({
    code,
    details: message ? expect.stringMatching(message) : expect.anything(),
  });
}
