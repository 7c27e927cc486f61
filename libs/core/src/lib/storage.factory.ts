import { ConfigError, FerryConfig } from '@ferry/config';
import { FsStorage, Storage } from '@ferry/storage';

export function createStorage(config: FerryConfig): Storage {
  switch (config.storage) {
    case 'fs':
      return new FsStorage(config.dataDir);
    case 's3':
      throw new ConfigError('FERRY_STORAGE=s3: the S3 backend is not available in this version; use fs');
  }
}
