import { DynamicModule, Module } from '@nestjs/common';
import { Authenticator } from '@ferry/auth';
import { ByteStreamService } from '@ferry/bytestream';
import type { FerryConfig } from '@ferry/config';
import { FerryCoreModule, UploadsModule } from '@ferry/core';
import { UploadEngine } from '@ferry/uploads';
import { ByteStreamGrpc } from './bytestream.grpc';
import { GrpcServer } from './grpc-server.service';

/** ingest-grpc: ByteStream (and later GCS v2) over the shared upload engine. */
@Module({})
export class IngestModule {
  static register(config: FerryConfig): DynamicModule {
    return {
      module: IngestModule,
      imports: [FerryCoreModule.forApp('ingest-grpc', config), UploadsModule],
      providers: [
        {
          provide: ByteStreamService,
          useFactory: (engine: UploadEngine, auth: Authenticator) =>
            new ByteStreamService(engine, auth, { maxNameBytes: config.uploads.maxNameBytes }),
          inject: [UploadEngine, Authenticator],
        },
        ByteStreamGrpc,
        GrpcServer,
      ],
      exports: [GrpcServer],
    };
  }
}
