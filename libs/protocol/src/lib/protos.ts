import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType as ByteStreamProto } from '../generated/bytestream';
import type { ProtoGrpcType as ReapiProto } from '../generated/remote_execution';
import type { ProtoGrpcType as StorageProto } from '../generated/storage';

/** Must match the flags of tools/proto/generate.mjs, which generated the types in ../generated. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** Where google-proto-files keeps the official protos. */
export function googleProtoDir(): string {
  // createRequire, not require.resolve: bundlers rewrite the latter into module ids.
  return dirname(createRequire(__filename).resolve('google-proto-files/package.json'));
}

/** Ferry's own proto directory: next to a bundled app (copied at build), or the workspace's proto/. */
export function ferryProtoDir(): string {
  const bundled = join(__dirname, 'proto');
  if (existsSync(join(bundled, 'protos.json'))) return bundled;
  let dir = __dirname;
  for (;;) {
    const candidate = join(dir, 'proto');
    if (existsSync(join(candidate, 'protos.json'))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find Ferry's proto/ directory from ${__dirname}`);
    dir = parent;
  }
}

export function protoIncludeDirs(): string[] {
  return [googleProtoDir(), ferryProtoDir()];
}

/** The entry files Ferry serves, as listed in proto/protos.json. */
export function protoEntries(): string[] {
  return (JSON.parse(readFileSync(join(ferryProtoDir(), 'protos.json'), 'utf8')) as { entries: string[] }).entries;
}

export interface LoadedProtos {
  packageDefinition: protoLoader.PackageDefinition;
  bytestream: ByteStreamProto['google']['bytestream'];
  storage: StorageProto['google']['storage']['v2'];
  /** build.bazel.remote.execution.v2 (the cache subset Ferry serves, from proto/). */
  reapi: ReapiProto['build']['bazel']['remote']['execution']['v2'];
}

let cached: LoadedProtos | undefined;

/** Loads every proto Ferry serves, once per process. */
export function loadProtos(): LoadedProtos {
  if (cached) return cached;
  const packageDefinition = protoLoader.loadSync(protoEntries(), { ...PROTO_LOADER_OPTIONS, includeDirs: protoIncludeDirs() });
  const root = grpc.loadPackageDefinition(packageDefinition) as unknown as ByteStreamProto & StorageProto & ReapiProto;
  cached = {
    packageDefinition,
    bytestream: root.google.bytestream,
    storage: root.google.storage.v2,
    reapi: root.build.bazel.remote.execution.v2,
  };
  return cached;
}

export interface MessageCodec<In, Out> {
  encode(message: In): Buffer;
  decode(bytes: Buffer): Out;
}

/**
 * Protobuf encoding of one message type (fully qualified name), with the same loader options as
 * the gRPC services: for messages Ferry stores as bytes (an action cache entry) or reads from
 * stored bytes (a REAPI Directory).
 */
export function messageCodec<In, Out>(typeName: string): MessageCodec<In, Out> {
  const type = loadProtos().packageDefinition[typeName] as unknown as
    { serialize?: (m: In) => Buffer; deserialize?: (b: Buffer) => Out } | undefined;
  const { serialize, deserialize } = type ?? {};
  if (!serialize || !deserialize) throw new Error(`${typeName} is not a message type Ferry loads`);
  return { encode: (m) => serialize(m), decode: (b) => deserialize(b) };
}
