import { createServer, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Inject, Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { collectDefaultMetrics, register } from 'prom-client';
import type { FerryConfig } from '@ferry/config';
import { FERRY_CONFIG, LOGGER } from '@ferry/core';
import type { Logger } from '@ferry/logging';

/**
 * ingest-grpc's small HTTP listener (FERRY_GRPC_METRICS_PORT, 8083): Prometheus `/metrics` (upload
 * engine metrics of both protocol faces, process metrics) and `/healthz`. Health for traffic is
 * grpc.health.v1 on the gRPC port.
 */
let defaultMetrics = false;

@Injectable()
export class MetricsServer implements OnApplicationBootstrap, OnApplicationShutdown {
  private server?: Server;

  constructor(
    @Inject(FERRY_CONFIG) private readonly config: FerryConfig,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  /** The port actually bound. */
  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  async onApplicationBootstrap(): Promise<void> {
    if (!defaultMetrics) collectDefaultMetrics({ prefix: 'ferry_' }); // once per process
    defaultMetrics = true;
    this.server = createServer((req, res) => {
      if (req.method === 'GET' && req.url === '/metrics') {
        register.metrics().then(
          (text) => res.writeHead(200, { 'content-type': register.contentType }).end(text),
          (err: unknown) =>
            res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'INTERNAL', message: String(err) })),
        );
      } else if (req.method === 'GET' && req.url === '/healthz') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      } else {
        res
          .writeHead(404, { 'content-type': 'application/json' })
          .end(JSON.stringify({ code: 'NOT_FOUND', message: `no route ${req.method} ${req.url}` }));
      }
    });
    const server = this.server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.ports.grpcMetrics, this.config.host, () => resolve());
    });
    this.logger.info({ port: this.port }, 'ingest-grpc metrics listening');
  }

  async onApplicationShutdown(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
