import * as grpc from '@grpc/grpc-js';
import { ActionCacheClient, CapabilitiesClient, ContentAddressableStorageClient, loadProtos } from '@ferry/protocol';

export interface ReapiClients {
  capabilities: CapabilitiesClient;
  cas: ContentAddressableStorageClient;
  actionCache: ActionCacheClient;
  close(): void;
}

/** Real grpc-js clients of the REAPI cache services, built from Ferry's remote_execution.proto. */
export function reapiClients(address: string): ReapiClients {
  const { reapi } = loadProtos();
  const credentials = grpc.credentials.createInsecure();
  const options = { 'grpc.max_receive_message_length': 16 * 1024 * 1024, 'grpc.max_send_message_length': 16 * 1024 * 1024 };
  const clients = {
    capabilities: new reapi.Capabilities(address, credentials, options),
    cas: new reapi.ContentAddressableStorage(address, credentials, options),
    actionCache: new reapi.ActionCache(address, credentials, options),
  };
  return { ...clients, close: () => Object.values(clients).forEach((c) => c.close()) };
}
