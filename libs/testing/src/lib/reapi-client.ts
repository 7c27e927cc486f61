import * as grpc from '@grpc/grpc-js';
import {
  ActionCacheClient,
  CapabilitiesClient,
  ContentAddressableStorageClient,
  RequestMetadata,
  loadProtos,
  messageCodec,
} from '@ferry/protocol';

export interface ReapiClients {
  capabilities: CapabilitiesClient;
  cas: ContentAddressableStorageClient;
  actionCache: ActionCacheClient;
  close(): void;
}

/** Real grpc-js clients of the REAPI cache services, built from Ferry's remote_execution.proto (plaintext unless `credentials` say TLS). */
export function reapiClients(address: string, credentials = grpc.credentials.createInsecure()): ReapiClients {
  const { reapi } = loadProtos();
  const options = { 'grpc.max_receive_message_length': 16 * 1024 * 1024, 'grpc.max_send_message_length': 16 * 1024 * 1024 };
  const clients = {
    capabilities: new reapi.Capabilities(address, credentials, options),
    cas: new reapi.ContentAddressableStorage(address, credentials, options),
    actionCache: new reapi.ActionCache(address, credentials, options),
  };
  return { ...clients, close: () => Object.values(clients).forEach((c) => c.close()) };
}

/**
 * `metadata` plus what a REAPI client sends with every call: a serialized RequestMetadata under
 * `build.bazel.remote.execution.v2.requestmetadata-bin` (Bazel 2.1: tool_details {"bazel", "2.1.0"}).
 */
export function withToolDetails(metadata: grpc.Metadata, toolName: string, toolVersion: string): grpc.Metadata {
  const codec = messageCodec<RequestMetadata, unknown>('build.bazel.remote.execution.v2.RequestMetadata');
  const md = metadata.clone();
  md.set(
    'build.bazel.remote.execution.v2.requestmetadata-bin',
    codec.encode({ tool_details: { tool_name: toolName, tool_version: toolVersion }, action_id: 'a1', tool_invocation_id: 'i1' }),
  );
  return md;
}
