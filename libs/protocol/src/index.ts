export * from './lib/protos';
export type { ByteStreamClient, ByteStreamHandlers } from './generated/google/bytestream/ByteStream';
export type { QueryWriteStatusRequest__Output as QueryWriteStatusRequest } from './generated/google/bytestream/QueryWriteStatusRequest';
export type { QueryWriteStatusResponse } from './generated/google/bytestream/QueryWriteStatusResponse';
export type { ReadRequest__Output as ReadRequest } from './generated/google/bytestream/ReadRequest';
export type { ReadResponse, ReadResponse__Output } from './generated/google/bytestream/ReadResponse';
export type { WriteRequest, WriteRequest__Output } from './generated/google/bytestream/WriteRequest';
export type { WriteResponse, WriteResponse__Output } from './generated/google/bytestream/WriteResponse';
