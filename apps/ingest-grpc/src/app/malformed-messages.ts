import * as grpc from '@grpc/grpc-js';

const MALFORMED = Symbol('malformed request');

interface Malformed {
  [MALFORMED]: string;
}

const isMalformed = (message: unknown): message is Malformed => typeof message === 'object' && message !== null && MALFORMED in message;

/**
 * `service` with request deserializers that do not throw: bytes that are no valid message of the
 * method's request type become a marker that `malformedMessages` answers. grpc-js answers a
 * throwing deserializer with INTERNAL ("Error deserializing request"), which tells a client the
 * server failed, where its request was bad (found by `npm run fuzz`, issue 21).
 */
export function tolerantService<S extends grpc.ServiceDefinition>(service: S): S {
  return Object.fromEntries(
    Object.entries(service).map(([name, def]) => [
      name,
      {
        ...def,
        requestDeserialize: (bytes: Buffer): unknown => {
          try {
            return def.requestDeserialize(bytes);
          } catch (err) {
            return { [MALFORMED]: (err as Error).message } satisfies Malformed;
          }
        },
      },
    ]),
  ) as S;
}

/**
 * Server interceptor: a request message tolerantService could not decode ends the call with
 * INVALID_ARGUMENT before any handler sees it (a streaming handler already running hears the call
 * cancelled, as when a client goes away).
 */
export const malformedMessages: grpc.ServerInterceptor = (method, call) =>
  new grpc.ServerInterceptingCall(call, {
    start: (next) =>
      next({
        onReceiveMessage: (message, forward) => {
          if (!isMalformed(message)) return forward(message);
          call.sendStatus({
            code: grpc.status.INVALID_ARGUMENT,
            details: `request is not a valid ${method.path} message: ${message[MALFORMED]}`,
            metadata: new grpc.Metadata(),
          });
        },
      }),
  });
