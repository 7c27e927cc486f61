import { DynamicModule, Module } from '@nestjs/common';
import type { FerryConfig } from '@ferry/config';
import { FerryCoreModule, HealthController, STORAGE } from '@ferry/core';
import { SessionStore } from '@ferry/sessions';
import type { Storage } from '@ferry/storage';
import { UploadExpiry } from '@ferry/uploads';
import { MaintenanceProcessor } from './maintenance.processor';

/** assembler-worker: BullMQ processors plus health and metrics over HTTP. */
@Module({})
export class WorkerModule {
  static register(config: FerryConfig): DynamicModule {
    return {
      module: WorkerModule,
      imports: [FerryCoreModule.forApp('assembler-worker', config)],
      controllers: [HealthController],
      providers: [
        {
          provide: UploadExpiry,
          useFactory: (sessions: SessionStore, storage: Storage) => new UploadExpiry(sessions, storage, config.uploads.idleLifetimeMs),
          inject: [SessionStore, STORAGE],
        },
        MaintenanceProcessor,
      ],
    };
  }
}
