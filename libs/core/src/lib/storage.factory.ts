import { ConfigError, FerryConfig } from '@ferry/config';
import { FsStorage, S3Storage, Storage, createS3Client } from '@ferry/storage';

export function createStorage(config: FerryConfig): Storage {
  switch (config.storage) {
    case 'fs':
      return new FsStorage(config.dataDir);
    case 's3': {
      if (!config.s3) throw new ConfigError('FERRY_S3_BUCKET: required when FERRY_STORAGE=s3');
      const { bucket, partBytes, createBucket, publicEndpoint, ...connection } = config.s3;
      const client = createS3Client(connection);
      const presigner = publicEndpoint ? createS3Client({ ...connection, endpoint: publicEndpoint }) : client;
      return new S3Storage(client, { bucket, partBytes, createBucket }, presigner);
    }
  }
}
