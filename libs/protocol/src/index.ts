export * from './lib/protos';
export type { ByteStreamClient, ByteStreamHandlers } from './generated/google/bytestream/ByteStream';
export type { QueryWriteStatusRequest__Output as QueryWriteStatusRequest } from './generated/google/bytestream/QueryWriteStatusRequest';
export type { QueryWriteStatusResponse } from './generated/google/bytestream/QueryWriteStatusResponse';
export type { ReadRequest__Output as ReadRequest } from './generated/google/bytestream/ReadRequest';
export type { ReadResponse, ReadResponse__Output } from './generated/google/bytestream/ReadResponse';
export type { WriteRequest, WriteRequest__Output } from './generated/google/bytestream/WriteRequest';
export type { WriteResponse, WriteResponse__Output } from './generated/google/bytestream/WriteResponse';
export type { StorageClient, StorageHandlers } from './generated/google/storage/v2/Storage';
export type { Object as GcsObject, Object__Output as GcsObject__Output } from './generated/google/storage/v2/Object';
export type { ObjectChecksums__Output } from './generated/google/storage/v2/ObjectChecksums';
export type { WriteObjectSpec__Output } from './generated/google/storage/v2/WriteObjectSpec';
export type { CommonObjectRequestParams__Output } from './generated/google/storage/v2/CommonObjectRequestParams';
export type {
  WriteObjectRequest as GcsWriteObjectRequest,
  WriteObjectRequest__Output as GcsWriteObjectRequest__Output,
} from './generated/google/storage/v2/WriteObjectRequest';
export type {
  WriteObjectResponse as GcsWriteObjectResponse,
  WriteObjectResponse__Output as GcsWriteObjectResponse__Output,
} from './generated/google/storage/v2/WriteObjectResponse';
export type { BidiWriteObjectRequest, BidiWriteObjectRequest__Output } from './generated/google/storage/v2/BidiWriteObjectRequest';
export type { BidiWriteObjectResponse, BidiWriteObjectResponse__Output } from './generated/google/storage/v2/BidiWriteObjectResponse';
export type {
  StartResumableWriteRequest,
  StartResumableWriteRequest__Output,
} from './generated/google/storage/v2/StartResumableWriteRequest';
export type { StartResumableWriteResponse } from './generated/google/storage/v2/StartResumableWriteResponse';
export type { QueryWriteStatusRequest__Output as GcsQueryWriteStatusRequest } from './generated/google/storage/v2/QueryWriteStatusRequest';
export type {
  QueryWriteStatusResponse as GcsQueryWriteStatusResponse,
  QueryWriteStatusResponse__Output as GcsQueryWriteStatusResponse__Output,
} from './generated/google/storage/v2/QueryWriteStatusResponse';
export type { CancelResumableWriteRequest__Output as CancelResumableWriteRequest } from './generated/google/storage/v2/CancelResumableWriteRequest';
export type { ReadObjectRequest, ReadObjectRequest__Output } from './generated/google/storage/v2/ReadObjectRequest';
export type { ReadObjectResponse, ReadObjectResponse__Output } from './generated/google/storage/v2/ReadObjectResponse';
export type { GetObjectRequest__Output as GetObjectRequest } from './generated/google/storage/v2/GetObjectRequest';
export type { DeleteObjectRequest__Output as DeleteObjectRequest } from './generated/google/storage/v2/DeleteObjectRequest';
export type { ActionCacheHandlers } from './generated/build/bazel/remote/execution/v2/ActionCache';
export type { ContentAddressableStorageHandlers } from './generated/build/bazel/remote/execution/v2/ContentAddressableStorage';
export type { CapabilitiesHandlers } from './generated/build/bazel/remote/execution/v2/Capabilities';
export type { ActionCacheClient } from './generated/build/bazel/remote/execution/v2/ActionCache';
export type { ContentAddressableStorageClient } from './generated/build/bazel/remote/execution/v2/ContentAddressableStorage';
export type { CapabilitiesClient } from './generated/build/bazel/remote/execution/v2/Capabilities';
export type { Digest as ReapiDigest, Digest__Output as ReapiDigest__Output } from './generated/build/bazel/remote/execution/v2/Digest';
export type { ActionResult, ActionResult__Output } from './generated/build/bazel/remote/execution/v2/ActionResult';
export type { Directory, Directory__Output } from './generated/build/bazel/remote/execution/v2/Directory';
export type { ServerCapabilities, ServerCapabilities__Output } from './generated/build/bazel/remote/execution/v2/ServerCapabilities';
export type { FindMissingBlobsRequest__Output } from './generated/build/bazel/remote/execution/v2/FindMissingBlobsRequest';
export type { FindMissingBlobsResponse } from './generated/build/bazel/remote/execution/v2/FindMissingBlobsResponse';
export type { BatchUpdateBlobsRequest__Output } from './generated/build/bazel/remote/execution/v2/BatchUpdateBlobsRequest';
export type {
  BatchUpdateBlobsResponse,
  BatchUpdateBlobsResponse__Output,
} from './generated/build/bazel/remote/execution/v2/BatchUpdateBlobsResponse';
export type { BatchReadBlobsRequest__Output } from './generated/build/bazel/remote/execution/v2/BatchReadBlobsRequest';
export type {
  BatchReadBlobsResponse,
  BatchReadBlobsResponse__Output,
} from './generated/build/bazel/remote/execution/v2/BatchReadBlobsResponse';
export type { GetTreeRequest__Output } from './generated/build/bazel/remote/execution/v2/GetTreeRequest';
export type { GetTreeResponse } from './generated/build/bazel/remote/execution/v2/GetTreeResponse';
export type { GetActionResultRequest__Output } from './generated/build/bazel/remote/execution/v2/GetActionResultRequest';
export type { UpdateActionResultRequest__Output } from './generated/build/bazel/remote/execution/v2/UpdateActionResultRequest';
export type { GetCapabilitiesRequest__Output } from './generated/build/bazel/remote/execution/v2/GetCapabilitiesRequest';
export type { RequestMetadata, RequestMetadata__Output } from './generated/build/bazel/remote/execution/v2/RequestMetadata';
