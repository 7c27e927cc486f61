import type * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { Inject, Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { HealthImplementation, ServingStatusMap } from 'grpc-health-check';
import type { FerryConfig } from '@ferry/config';
import { FERRY_CONFIG, LOGGER, REDIS, STORAGE } from '@ferry/core';
import type { Logger } from '@ferry/logging';
import { loadProtos } from '@ferry/protocol';
import type { Redis } from '@ferry/redis';
import type { Storage } from '@ferry/storage';
import { ByteStreamGrpc } from './bytestream.grpc';
import { CallDrain } from './call-drain';
import { malformedMessages, tolerantService } from './malformed-messages';
import { ReapiGrpc } from './reapi.grpc';
import { StorageGrpc } from './storage.grpc';

const REAPI = 'build.bazel.remote.execution.v2';

/**
 * Plaintext, or TLS with the configured certificate (FERRY_GRPC_TLS_CERT / _KEY); with
 * FERRY_GRPC_TLS_CLIENT_CA, mutual TLS: the handshake fails for a client without a certificate
 * signed by that CA.
 */
export function serverCredentials(config: FerryConfig): grpc.ServerCredentials {
  const tls = config.grpc.tls;
  if (!tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(
    tls.clientCa ?? null,
    [{ private_key: tls.key, cert_chain: tls.cert }],
    tls.clientCa !== undefined,
  );
}
/** Services whose health grpc.health.v1 reports (with '' for the server as a whole). */
const SERVICES = [
  '',
  'google.bytestream.ByteStream',
  'google.storage.v2.Storage',
  `${REAPI}.Capabilities`,
  `${REAPI}.ContentAddressableStorage`,
  `${REAPI}.ActionCache`,
];

/**
 * The gRPC server: ByteStream, google.storage.v2.Storage (resumable subset), the REAPI cache
 * services (Capabilities, ContentAddressableStorage, ActionCache), grpc.health.v1 (SERVING while Redis and storage answer) and server
 * reflection, on FERRY_HOST:FERRY_GRPC_PORT with a 16 MiB receive limit.
 */
@Injectable()
export class GrpcServer implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly server: grpc.Server;
  private readonly health: HealthImplementation;
  private healthTimer?: NodeJS.Timeout;
  private boundPort?: number;

  constructor(
    @Inject(FERRY_CONFIG) private readonly config: FerryConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(STORAGE) private readonly storage: Storage,
    bytestream: ByteStreamGrpc,
    gcs: StorageGrpc,
    reapi: ReapiGrpc,
    private readonly drain: CallDrain,
  ) {
    this.server = new grpc.Server({
      'grpc.max_receive_message_length': config.grpc.maxMessageBytes,
      'grpc.max_send_message_length': config.grpc.maxMessageBytes,
      'grpc.keepalive_time_ms': 60_000,
      'grpc.keepalive_permit_without_calls': 1,
      // bytes that are no valid request message: INVALID_ARGUMENT, not grpc-js's INTERNAL
      interceptors: [malformedMessages],
    });
    const protos = loadProtos();
    this.server.addService(tolerantService(protos.bytestream.ByteStream.service), bytestream.handlers());
    // methods without a handler answer UNIMPLEMENTED
    this.server.addService(tolerantService(protos.storage.Storage.service), gcs.handlers() as grpc.UntypedServiceImplementation);
    this.server.addService(tolerantService(protos.reapi.Capabilities.service), reapi.capabilities());
    this.server.addService(tolerantService(protos.reapi.ContentAddressableStorage.service), reapi.cas());
    this.server.addService(tolerantService(protos.reapi.ActionCache.service), reapi.actionCache());
    const statusMap: ServingStatusMap = Object.fromEntries(SERVICES.map((s) => [s, 'NOT_SERVING']));
    this.health = new HealthImplementation(statusMap);
    this.health.addToServer(this.server);
    new ReflectionService(protos.packageDefinition).addToServer(this.server);
  }

  /** The port actually bound (differs from the configured one when that is 0). */
  get port(): number {
    if (this.boundPort === undefined) throw new Error('gRPC server not started');
    return this.boundPort;
  }

  async onApplicationBootstrap(): Promise<void> {
    const address = `${this.config.host.includes(':') ? `[${this.config.host}]` : this.config.host}:${this.config.ports.grpc}`;
    this.boundPort = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(address, serverCredentials(this.config), (err, port) => (err ? reject(err) : resolve(port))),
    );
    this.tuneHttp2();
    await this.checkHealth();
    this.healthTimer = setInterval(() => void this.checkHealth(), 5000);
    this.healthTimer.unref();
    const tls = this.config.grpc.tls;
    this.logger.info(
      {
        address: `${this.config.host}:${this.boundPort}`,
        devMode: this.config.auth.devMode,
        tls: tls ? (tls.clientCa ? 'mutual' : 'server') : 'off',
      },
      'ingest-grpc listening',
    );
  }

  /**
   * grpc-js leaves HTTP/2 at its defaults: 64 KiB flow-control windows and 16 KiB frames, so a
   * 2 MiB message arrives as 128 frames, each a trip into JavaScript, and the sender stalls on
   * window updates. Bulk uploads want large windows and frames. grpc-js has no option for the
   * server side, so we reach its http2 servers (a private field of the pinned version; a test
   * asserts the settings reach clients) and use Node's public http2 API on them.
   */
  private tuneHttp2(): void {
    const window = this.config.grpc.flowControlWindowBytes;
    if (window <= 65_535) return;
    const servers = (this.server as unknown as { http2Servers?: Map<http2.Http2Server, unknown> }).http2Servers;
    if (!servers) {
      this.logger.warn('cannot tune HTTP/2 windows: grpc-js internals changed');
      return;
    }
    for (const http2Server of servers.keys()) {
      http2Server.updateSettings({ initialWindowSize: window, maxFrameSize: Math.min(window, 1024 * 1024) });
      http2Server.on('session', (session: http2.ServerHttp2Session) => {
        session.once('localSettings', () => session.setLocalWindowSize(window));
      });
    }
  }

  private async checkHealth(): Promise<void> {
    let status: 'SERVING' | 'NOT_SERVING' = 'SERVING';
    try {
      await Promise.all([this.redis.ping(), this.storage.check()]);
    } catch (err) {
      status = 'NOT_SERVING';
      this.logger.warn({ err }, 'health check failed');
    }
    for (const service of SERVICES) this.health.setStatus(service, status);
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.healthTimer);
    for (const service of SERVICES) this.health.setStatus(service, 'NOT_SERVING');
    // No new calls; upload streams stop reading, commit what they received and answer
    // UNAVAILABLE (clients resume elsewhere); other calls may finish, then the rest is forced.
    const stopped = new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 10_000);
      force.unref();
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    this.drain.drain();
    await stopped;
  }
}
