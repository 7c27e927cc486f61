import { STORAGE } from '@ferry/core';
import type { Storage } from '@ferry/storage';
import { HttpAppHarness, startHttpAppHarness } from '@ferry/testing';
import { createObjectApi } from '../app/bootstrap';

export const OBJECT_CLIENTS = [
  { clientId: 'uploader', accessToken: 'uploader-token', scopes: ['object:upload:proj/*', 'object:download:*'] },
  { clientId: 'reader', accessToken: 'reader-token', scopes: ['object:download:*'] },
];

export interface ObjectHarness extends HttpAppHarness {
  storage: Storage;
}

/** Boots the real object-api on a free port with a private Redis and data directory. */
export async function startObjectApi(env: Record<string, string> = {}): Promise<ObjectHarness> {
  const h = await startHttpAppHarness({
    portVariable: 'FERRY_OBJECT_PORT',
    env: { FERRY_CLIENTS: JSON.stringify(OBJECT_CLIENTS), FERRY_SIGNING_KEY: 'object-test-signing-key-0123456789', ...env },
    needs: ['signingKey'],
    create: (config) => createObjectApi(config, false),
  });
  return { ...h, storage: h.app.get<Storage>(STORAGE) };
}
