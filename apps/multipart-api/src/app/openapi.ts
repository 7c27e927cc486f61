import {
  NOT_MODIFIED_DOWNLOAD,
  SIGNED_URL_PARAMETERS,
  UNSATISFIABLE_RANGE,
  conditionalDownloadParameters,
  jsonContent,
  parameterRef,
  responseRef,
  signedUrlParameterRefs,
} from '@ferry/http';

/** The OpenAPI 3.1 description of Ferry's multipart REST API (served at GET /docs). */

const res = responseRef;
const param = parameterRef;
/** Paths served at the root only (data plane, health, documents), whatever the file endpoint base. */
const ROOT_ONLY = { servers: [{ url: '/' }] };
/** The same operation under the spelling of Synapse's documentation. */
const alias = <T extends { summary: string }>(op: T, operationId: string, from = "Synapse's documentation") => ({
  ...op,
  operationId,
  summary: `${op.summary} (alias: ${from})`,
});

const startOp = {
  operationId: 'startMultipartUpload',
  summary: 'Start or resume a multipart upload',
  parameters: [param('forceRestart')],
  requestBody: { $ref: '#/components/requestBodies/MultipartUploadRequest' },
  responses: {
    '201': res('MultipartUploadStatus'),
    '400': res('BadRequest'),
    '401': res('Unauthenticated'),
    '403': res('PermissionDenied'),
  },
};

const urlBatchOp = {
  operationId: 'getPresignedUploadUrls',
  summary: 'Presigned PUT URLs for a batch of parts',
  parameters: [param('uploadId')],
  requestBody: { $ref: '#/components/requestBodies/BatchPresignedUploadUrlRequest' },
  responses: {
    '201': res('BatchPresignedUploadUrlResponse'),
    '400': res('BadRequest'),
    '401': res('Unauthenticated'),
    '403': res('PermissionDenied'),
    '404': res('NotFound'),
    '409': { $ref: '#/components/responses/Error', description: 'The upload is completing or completed: it takes no more parts.' },
  },
};

const fileHandleOp = {
  operationId: 'getFileHandle',
  summary: 'A file handle',
  parameters: [param('fileHandleId')],
  responses: {
    '200': jsonContent('The file handle.', 'FileHandle'),
    '401': res('Unauthenticated'),
    '403': { $ref: '#/components/responses/PermissionDenied', description: "The file handle is another user's." },
    '404': res('NotFound'),
  },
};

const fileHandleUrlOp = {
  operationId: 'getFileHandleUrl',
  summary: 'A signed download URL for a file handle',
  parameters: [
    param('fileHandleId'),
    { name: 'redirect', in: 'query', schema: { type: 'string', enum: ['true', 'false'], default: 'true' } },
  ],
  responses: {
    '200': {
      description: 'The signed URL (redirect=false).',
      content: { 'text/plain': { schema: { type: 'string', format: 'uri' } } },
    },
    '307': {
      description: 'Redirect to the signed URL (redirect=true).',
      headers: { Location: { description: 'The signed download URL.', schema: { type: 'string', format: 'uri' } } },
    },
    '401': res('Unauthenticated'),
    '403': res('PermissionDenied'),
    '404': res('NotFound'),
  },
};

/** tus 1.0.0 (https://tus.io/protocols/resumable-upload): every request but OPTIONS sends Tus-Resumable. */
const tusHeaders = { 'Tus-Resumable': { description: 'The protocol version: 1.0.0.', schema: { type: 'string', const: '1.0.0' } } };
const tusError = (description: string) => ({ $ref: '#/components/responses/Error', description });
const tusCapabilitiesOp = (operationId: string) => ({
  operationId,
  summary: "tus: the server's version, extensions and limits",
  security: [],
  responses: {
    '204': {
      description: 'Tus-Version, Tus-Extension, Tus-Max-Size and Tus-Checksum-Algorithm.',
      headers: {
        'Tus-Version': { schema: { type: 'string' } },
        'Tus-Extension': { schema: { type: 'string' } },
        'Tus-Max-Size': { schema: { type: 'integer' } },
        'Tus-Checksum-Algorithm': { schema: { type: 'string' } },
      },
    },
  },
});

/** Downloads of finished tus uploads and the upload page: the data plane at the root. */
const TUS_DOWNLOAD_HEADERS = {
  'Accept-Ranges': { $ref: '#/components/headers/AcceptRanges' },
  ETag: { description: "The content's sha256 hex, quoted.", schema: { type: 'string' } },
  'Content-Disposition': { $ref: '#/components/headers/ContentDisposition' },
};

export const MULTIPART_OPENAPI = {
  openapi: '3.1.0',
  info: {
    title: 'Ferry multipart upload API',
    version: '1.0.0',
    description:
      "Synapse-style multipart upload. 1) POST /file/multipart starts an upload, or resumes the caller's unfinished " +
      "upload of the same request. 2) Request presigned part URLs and PUT each part's bytes to its presigned URL. " +
      '3) Add each part with its MD5 (PUT .../add/{partNumber}). 4) Complete the upload: the whole-file MD5 was computed ' +
      'as the parts were added, so complete verifies it and answers COMPLETED with a file handle at once; or ASSEMBLING ' +
      '(202, call again) when much was left to verify and the assembly outlasts the configured wait. Dedup: when the same user starts a file with the same contentMD5Hex ' +
      'and fileSizeBytes as one they already completed, the upload is COMPLETED at once with a new file handle. ' +
      'Presigned URLs expire after 15 minutes by default (FERRY_SIGNED_URL_TTL_MS).',
  },
  // Synapse clients take one file endpoint base and call {base}/file/multipart... and
  // {base}/fileHandle/...: both bases below serve every control-plane path.
  servers: [
    { url: '/', description: 'File endpoint base: the root' },
    { url: '/file/v1', description: 'File endpoint base as Synapse names it (https://host/file/v1)' },
  ],
  security: [{ bearer: [] }],
  paths: {
    '/file/multipart': { post: startOp },
    '/file/multipart/upload': { post: alias(startOp, 'startMultipartUploadAlias') },
    '/file/multipart/{uploadId}': {
      get: {
        operationId: 'getMultipartUploadStatus',
        summary: 'Status of a multipart upload',
        parameters: [param('uploadId')],
        responses: {
          '200': res('MultipartUploadStatus'),
          '401': res('Unauthenticated'),
          '403': res('PermissionDenied'),
          '404': res('NotFound'),
        },
      },
    },
    '/file/multipart/{uploadId}/presigned/url/batch': { post: urlBatchOp },
    '/file/multipart/{uploadId}/presignedurl/batch': { post: alias(urlBatchOp, 'getPresignedUploadUrlsAlias') },
    '/file/multipart/{uploadId}/add/{partNumber}': {
      put: {
        operationId: 'addMultipartPart',
        summary: 'Add an uploaded part, checking its MD5',
        parameters: [
          param('uploadId'),
          param('partNumber'),
          { name: 'partMD5Hex', in: 'query', required: true, schema: { $ref: '#/components/schemas/Md5Hex' } },
        ],
        responses: {
          '200': jsonContent(
            "ADD_SUCCESS, or ADD_FAILED with errorMessage (stored bytes' MD5 differs, or the part was never PUT).",
            'AddPartResponse',
          ),
          '400': {
            $ref: '#/components/responses/BadRequest',
            description:
              'A malformed request, or the upload is past UPLOADING (completing, completed or failed): its parts no longer change.',
          },
          '401': res('Unauthenticated'),
          '403': res('PermissionDenied'),
          '404': res('NotFound'),
        },
      },
    },
    '/file/multipart/{uploadId}/complete': {
      put: {
        operationId: 'completeMultipartUpload',
        summary: 'Complete a multipart upload',
        parameters: [param('uploadId')],
        responses: {
          '200': jsonContent('The upload is COMPLETED; resultFileHandleId names the new file handle.', 'MultipartUploadStatus'),
          '202': {
            description: 'State ASSEMBLING: the assembly is still running after the configured wait; call complete again.',
            headers: { 'Retry-After': { description: 'Seconds to wait.', schema: { type: 'integer', minimum: 0 } } },
            content: { 'application/json': { schema: { $ref: '#/components/schemas/MultipartUploadStatus' } } },
          },
          '400': {
            $ref: '#/components/responses/BadRequest',
            description: "Parts are missing, or the assembled file's MD5 differs from contentMD5Hex (the upload is FAILED).",
          },
          '401': res('Unauthenticated'),
          '403': res('PermissionDenied'),
          '404': res('NotFound'),
        },
      },
    },
    '/file/multipart/{uploadId}/parts/{partNumber}': {
      ...ROOT_ONLY,
      put: {
        operationId: 'putMultipartPart',
        summary: "Upload one part's bytes (data plane: the presigned part URL)",
        description:
          "The body is exactly the part's bytes: part n covers bytes [(n-1)*partSize, min(n*partSize, fileSize)-1]. " +
          'The request must send the signedHeaders returned with the URL.',
        security: [],
        parameters: [param('uploadId'), param('partNumber'), ...signedUrlParameterRefs()],
        requestBody: {
          required: true,
          content: { 'application/octet-stream': { schema: { $ref: '#/components/schemas/Binary' } } },
        },
        responses: {
          '200': {
            description: 'The part is stored (empty body).',
            headers: { ETag: { description: "The part's MD5 hex, quoted.", schema: { type: 'string' } } },
          },
          '400': { $ref: '#/components/responses/BadRequest', description: "The body is not exactly the part's length." },
          '403': res('SignatureRejected'),
          '404': { $ref: '#/components/responses/NotFound', description: 'Unknown upload.' },
          '409': {
            $ref: '#/components/responses/Error',
            description: 'Another PUT of this part is in progress, or the upload is already completing.',
          },
        },
      },
    },
    '/fileHandle/{id}': {
      get: fileHandleOp,
    },
    '/file/fileHandle/{id}': { ...ROOT_ONLY, get: alias(fileHandleOp, 'getFileHandleAlias', "Ferry's first path") },
    '/fileHandle/{id}/url': { get: fileHandleUrlOp },
    '/file/fileHandle/{id}/url': { ...ROOT_ONLY, get: alias(fileHandleUrlOp, 'getFileHandleUrlAlias', "Ferry's first path") },
    '/file/fileHandle/{id}/content': {
      ...ROOT_ONLY,
      get: {
        operationId: 'downloadFileHandleContent',
        summary: "Download a file's bytes (data plane: the signed download URL)",
        security: [],
        parameters: [
          param('fileHandleId'),
          ...signedUrlParameterRefs(),
          {
            name: 'Range',
            in: 'header',
            description: 'A single byte range, e.g. bytes=0-1023.',
            schema: { type: 'string', pattern: '^bytes=[0-9]*-[0-9]*$' },
          },
          ...conditionalDownloadParameters(),
        ],
        responses: {
          '200': {
            description: 'The whole file.',
            headers: {
              'Accept-Ranges': { $ref: '#/components/headers/AcceptRanges' },
              ETag: { $ref: '#/components/headers/ETag' },
              'Content-MD5': { description: 'Base64 MD5 of the whole file.', schema: { type: 'string' } },
              'Content-Disposition': { $ref: '#/components/headers/ContentDisposition' },
            },
            content: { 'application/octet-stream': { schema: { $ref: '#/components/schemas/Binary' } } },
          },
          '206': {
            description: 'The requested byte range.',
            headers: {
              'Content-Range': { description: 'bytes start-end/size', schema: { type: 'string' } },
              'Accept-Ranges': { $ref: '#/components/headers/AcceptRanges' },
              ETag: { $ref: '#/components/headers/ETag' },
              'Content-Disposition': { $ref: '#/components/headers/ContentDisposition' },
            },
            content: { 'application/octet-stream': { schema: { $ref: '#/components/schemas/Binary' } } },
          },
          '304': NOT_MODIFIED_DOWNLOAD,
          '403': res('SignatureRejected'),
          '404': res('NotFound'),
          '416': { $ref: '#/components/responses/Error', description: UNSATISFIABLE_RANGE },
        },
      },
    },
    '/files/': {
      ...ROOT_ONLY,
      post: {
        operationId: 'createTusUpload',
        summary: 'tus: create an upload (creation, creation-with-upload, creation-defer-length)',
        description:
          'Send Upload-Length (or Upload-Defer-Length: 1) and optionally Upload-Metadata (filename, filetype). With a body ' +
          '(Content-Type: application/offset+octet-stream) its bytes are the first of the upload. The finished upload is the ' +
          'object tus/{id}. Scope: ferry:write:tus/{id}.',
        parameters: [
          { name: 'Tus-Resumable', in: 'header', required: true, schema: { type: 'string', const: '1.0.0' } },
          { name: 'Upload-Length', in: 'header', schema: { type: 'integer', minimum: 0 } },
          { name: 'Upload-Defer-Length', in: 'header', schema: { type: 'string', const: '1' } },
          { name: 'Upload-Metadata', in: 'header', description: 'key base64(value) pairs, comma-separated.', schema: { type: 'string' } },
        ],
        requestBody: { content: { 'application/offset+octet-stream': { schema: { $ref: '#/components/schemas/Binary' } } } },
        responses: {
          '201': {
            description: 'Created; Upload-Offset when bytes came with it.',
            headers: {
              ...tusHeaders,
              Location: { description: 'The upload URL, /files/{id}.', schema: { type: 'string', format: 'uri' } },
              'Upload-Expires': { schema: { type: 'string' } },
            },
          },
          '400': res('BadRequest'),
          '401': res('Unauthenticated'),
          '403': res('PermissionDenied'),
          '412': tusError('Tus-Resumable is missing or not 1.0.0.'),
          '413': tusError('Upload-Length is over Tus-Max-Size.'),
        },
      },
      options: tusCapabilitiesOp('tusCapabilities'),
    },
    '/files/{id}': {
      ...ROOT_ONLY,
      head: {
        operationId: 'getTusUploadOffset',
        summary: "tus: the upload's offset (the bytes the server holds durably), length and metadata",
        parameters: [param('tusId'), param('tusResumable')],
        responses: {
          '200': {
            description: 'No body.',
            headers: {
              ...tusHeaders,
              'Upload-Offset': { schema: { type: 'integer', minimum: 0 } },
              'Upload-Length': { schema: { type: 'integer', minimum: 0 } },
              'Upload-Metadata': { schema: { type: 'string' } },
            },
          },
          '401': { description: 'Missing or invalid bearer token (no body).' },
          '403': { description: "Another client's upload (no body)." },
          '404': { description: 'No such upload, or it expired or was terminated (no body).' },
        },
      },
      patch: {
        operationId: 'appendTusUpload',
        summary: 'tus: append bytes at Upload-Offset',
        parameters: [
          param('tusId'),
          param('tusResumable'),
          { name: 'Upload-Offset', in: 'header', required: true, schema: { type: 'integer', minimum: 0 } },
          { name: 'Upload-Checksum', in: 'header', description: 'algorithm base64(digest) of this body.', schema: { type: 'string' } },
        ],
        requestBody: {
          required: true,
          content: { 'application/offset+octet-stream': { schema: { $ref: '#/components/schemas/Binary' } } },
        },
        responses: {
          '204': { description: 'Stored durably.', headers: { ...tusHeaders, 'Upload-Offset': { schema: { type: 'integer' } } } },
          '400': res('BadRequest'),
          '401': res('Unauthenticated'),
          '403': res('PermissionDenied'),
          '404': res('NotFound'),
          '409': tusError("Upload-Offset is not the upload's offset, or another request holds the upload."),
          '412': tusError('Tus-Resumable is missing or not 1.0.0.'),
          '413': tusError('The body goes past Upload-Length or Tus-Max-Size.'),
          '415': tusError('Content-Type is not application/offset+octet-stream.'),
          '460': tusError('Upload-Checksum does not match the body: it was discarded.'),
        },
      },
      delete: {
        operationId: 'terminateTusUpload',
        summary: 'tus: terminate an unfinished upload',
        parameters: [param('tusId'), param('tusResumable')],
        responses: {
          '204': { description: 'Gone.', headers: tusHeaders },
          '401': res('Unauthenticated'),
          '403': res('PermissionDenied'),
          '404': res('NotFound'),
          '409': tusError('The upload is finished (it is the object tus/{id}), or another request holds it.'),
        },
      },
      get: {
        operationId: 'downloadTusUpload',
        summary: 'Download a finished tus upload (bearer, or its signed URL)',
        description:
          "The object tus/{id}, with the upload's filename and filetype. Authorized by a bearer token (the uploader, or " +
          'scope ferry:read:tus/{id}) or, without one, by the query of a signed URL from GET /files/{id}/url.',
        security: [{ bearer: [] }, {}],
        parameters: [
          param('tusId'),
          ...signedUrlParameterRefs(),
          {
            name: 'Range',
            in: 'header',
            description: 'A single byte range, e.g. bytes=0-1023.',
            schema: { type: 'string', pattern: '^bytes=[0-9]*-[0-9]*$' },
          },
          ...conditionalDownloadParameters(),
        ],
        responses: {
          '200': {
            description: 'The whole object.',
            headers: TUS_DOWNLOAD_HEADERS,
            content: { 'application/octet-stream': { schema: { $ref: '#/components/schemas/Binary' } } },
          },
          '206': {
            description: 'The requested byte range.',
            headers: { ...TUS_DOWNLOAD_HEADERS, 'Content-Range': { description: 'bytes start-end/size', schema: { type: 'string' } } },
            content: { 'application/octet-stream': { schema: { $ref: '#/components/schemas/Binary' } } },
          },
          '304': NOT_MODIFIED_DOWNLOAD,
          '401': res('Unauthenticated'),
          '403': {
            $ref: '#/components/responses/PermissionDenied',
            description: "Another client's upload, or a tampered or expired signed URL.",
          },
          '404': { $ref: '#/components/responses/NotFound', description: 'No such upload, or it is not finished.' },
          '416': { $ref: '#/components/responses/Error', description: UNSATISFIABLE_RANGE },
        },
      },
      options: tusCapabilitiesOp('tusCapabilitiesOfUpload'),
    },
    '/files/{id}/url': {
      ...ROOT_ONLY,
      get: {
        operationId: 'getTusDownloadUrl',
        summary: 'A signed download URL for a finished tus upload',
        parameters: [
          param('tusId'),
          { name: 'redirect', in: 'query', schema: { type: 'string', enum: ['true', 'false'], default: 'true' } },
        ],
        responses: {
          '200': {
            description: 'The signed URL (redirect=false).',
            content: { 'text/plain': { schema: { type: 'string', format: 'uri' } } },
          },
          '307': {
            description: 'Redirect to the signed URL (redirect=true).',
            headers: { Location: { description: 'The signed download URL.', schema: { type: 'string', format: 'uri' } } },
          },
          '401': res('Unauthenticated'),
          '403': res('PermissionDenied'),
          '404': { $ref: '#/components/responses/NotFound', description: 'No such upload, or it is not finished.' },
        },
      },
    },
    '/upload': {
      ...ROOT_ONLY,
      get: {
        operationId: 'uploadPage',
        summary: 'The browser upload page (tus-js-client against /files/)',
        description: 'Query chunkSize=<bytes> sets the size of one PATCH (default 8 MiB). The token is entered on the page.',
        security: [],
        responses: { '200': { description: 'The page.', content: { 'text/html': { schema: { type: 'string' } } } } },
      },
    },
    '/upload/{file}': {
      ...ROOT_ONLY,
      get: {
        operationId: 'uploadPageFile',
        summary: "The upload page's script, style sheet and tus-js-client's browser build",
        security: [],
        parameters: [
          { name: 'file', in: 'path', required: true, schema: { type: 'string', enum: ['upload.js', 'upload.css', 'tus.min.js'] } },
        ],
        responses: {
          '200': {
            description: 'The file.',
            content: { 'text/javascript': { schema: { type: 'string' } }, 'text/css': { schema: { type: 'string' } } },
          },
          '404': res('NotFound'),
        },
      },
    },
    '/healthz': {
      ...ROOT_ONLY,
      get: {
        operationId: 'healthz',
        summary: 'Liveness',
        security: [],
        responses: {
          '200': jsonContent('The process is alive.', 'Health'),
        },
      },
    },
    '/readyz': {
      ...ROOT_ONLY,
      get: {
        operationId: 'readyz',
        summary: 'Readiness (Redis and storage reachable)',
        security: [],
        responses: {
          '200': jsonContent('Ready.', 'Readiness'),
          '503': { $ref: '#/components/responses/Error', description: 'Not ready.' },
        },
      },
    },
    '/metrics': {
      ...ROOT_ONLY,
      get: {
        operationId: 'metrics',
        summary: 'Prometheus metrics',
        security: [],
        responses: {
          '200': { description: 'Prometheus text format.', content: { 'text/plain': { schema: { type: 'string' } } } },
        },
      },
    },
    '/docs': {
      ...ROOT_ONLY,
      get: {
        operationId: 'docs',
        summary: 'This OpenAPI document',
        security: [],
        responses: {
          '200': { description: 'The OpenAPI 3.1 document.', content: { 'application/json': { schema: { type: 'object' } } } },
        },
      },
    },
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    parameters: {
      uploadId: { name: 'uploadId', in: 'path', required: true, schema: { type: 'string', pattern: '^mp_[A-Za-z0-9_-]+$' } },
      partNumber: { name: 'partNumber', in: 'path', required: true, schema: { type: 'integer', minimum: 1, maximum: 10000 } },
      fileHandleId: { name: 'id', in: 'path', required: true, schema: { type: 'string', pattern: '^[1-9][0-9]*$' } },
      tusId: { name: 'id', in: 'path', required: true, schema: { type: 'string', pattern: '^[A-Za-z0-9_-]{22}$' } },
      tusResumable: { name: 'Tus-Resumable', in: 'header', required: true, schema: { type: 'string', const: '1.0.0' } },
      forceRestart: {
        name: 'forceRestart',
        in: 'query',
        description: "true abandons the caller's previous upload of this request and skips dedup.",
        schema: { type: 'string', enum: ['true', 'false'], default: 'false' },
      },
      ...SIGNED_URL_PARAMETERS,
    },
    headers: {
      ETag: { description: "The content's entity tag.", schema: { type: 'string' } },
      AcceptRanges: { description: 'Byte ranges are supported.', schema: { type: 'string', const: 'bytes' } },
      ContentDisposition: { description: 'attachment, with the file name.', schema: { type: 'string' } },
    },
    requestBodies: {
      MultipartUploadRequest: {
        required: true,
        content: { 'application/json': { schema: { $ref: '#/components/schemas/MultipartUploadRequest' } } },
      },
      BatchPresignedUploadUrlRequest: {
        required: true,
        content: { 'application/json': { schema: { $ref: '#/components/schemas/BatchPresignedUploadUrlRequest' } } },
      },
    },
    responses: {
      Error: jsonContent('An error.', 'Error'),
      MultipartUploadStatus: jsonContent("The upload's status.", 'MultipartUploadStatus'),
      BatchPresignedUploadUrlResponse: jsonContent('One presigned URL per requested part.', 'BatchPresignedUploadUrlResponse'),
      BadRequest: jsonContent('The request is invalid.', 'Error'),
      Unauthenticated: jsonContent('Missing or invalid bearer token.', 'Error'),
      PermissionDenied: jsonContent('The caller may not access this resource.', 'Error'),
      NotFound: jsonContent('No such resource.', 'Error'),
      SignatureRejected: jsonContent('The signed URL has expired or its signature does not match (tampered).', 'Error'),
    },
    schemas: {
      Health: { type: 'object', required: ['status'], properties: { status: { type: 'string', const: 'ok' } } },
      Readiness: {
        type: 'object',
        required: ['status', 'redis', 'storage'],
        properties: { status: { type: 'string' }, redis: { type: 'string' }, storage: { type: 'string' } },
      },
      Md5Hex: { type: 'string', pattern: '^[0-9a-fA-F]{32}$' },
      Binary: { type: 'string', contentMediaType: 'application/octet-stream' },
      MultipartUploadRequest: {
        type: 'object',
        additionalProperties: false,
        required: ['fileName', 'contentMD5Hex', 'fileSizeBytes', 'partSizeBytes'],
        properties: {
          concreteType: { type: 'string', const: 'org.sagebionetworks.repo.model.file.MultipartUploadRequest' },
          fileName: {
            type: 'string',
            minLength: 1,
            maxLength: 256,
            pattern: '^[^/\\u0000-\\u001F\\u007F]+$',
            description: 'No "/" or control characters.',
          },
          contentType: { type: 'string', default: 'application/octet-stream' },
          contentMD5Hex: { $ref: '#/components/schemas/Md5Hex' },
          fileSizeBytes: { type: 'integer', minimum: 1 },
          partSizeBytes: {
            type: 'integer',
            minimum: 5242880,
            maximum: 5368709120,
            description: 'Smaller only when the whole file fits in one part; the file may have at most 10000 parts.',
          },
          storageLocationId: { type: 'integer', minimum: 0 },
          generatePreview: { type: 'boolean' },
        },
      },
      MultipartUploadStatus: {
        type: 'object',
        required: ['uploadId', 'startedBy', 'startedOn', 'updatedOn', 'partsState', 'state'],
        properties: {
          uploadId: { type: 'string' },
          startedBy: { type: 'string', description: 'The client id of the user who started the upload.' },
          startedOn: { type: 'string', format: 'date-time' },
          updatedOn: { type: 'string', format: 'date-time' },
          partsState: { type: 'string', pattern: '^[01]+$', description: "One character per part; '1' once added." },
          state: {
            type: 'string',
            enum: ['UPLOADING', 'ASSEMBLING', 'COMPLETED', 'FAILED'],
            description: 'ASSEMBLING and FAILED are Ferry extensions.',
          },
          resultFileHandleId: { type: 'string', description: 'Set when COMPLETED only.' },
          errorMessage: { type: 'string', description: 'Set when FAILED only.' },
        },
      },
      BatchPresignedUploadUrlRequest: {
        type: 'object',
        additionalProperties: false,
        required: ['partNumbers'],
        properties: {
          uploadId: { type: 'string', description: "Optional; must match the path's uploadId." },
          partNumbers: {
            type: 'array',
            items: { type: 'integer', minimum: 1 },
            minItems: 1,
            maxItems: 1000,
            description: 'At most 1000 by default (configurable: FERRY_MULTIPART_MAX_URL_BATCH).',
          },
          contentType: { type: 'string', description: 'If given, it becomes a signed header the part PUT must send.' },
        },
      },
      BatchPresignedUploadUrlResponse: {
        type: 'object',
        required: ['partPresignedUrls'],
        properties: {
          partPresignedUrls: {
            type: 'array',
            items: {
              type: 'object',
              required: ['partNumber', 'uploadPresignedUrl', 'signedHeaders'],
              properties: {
                partNumber: { type: 'integer', minimum: 1 },
                uploadPresignedUrl: { type: 'string', format: 'uri' },
                signedHeaders: { type: 'object', additionalProperties: { type: 'string' } },
              },
            },
          },
        },
      },
      AddPartResponse: {
        type: 'object',
        required: ['uploadId', 'partNumber', 'addPartState'],
        properties: {
          uploadId: { type: 'string' },
          partNumber: { type: 'integer', minimum: 1 },
          addPartState: { type: 'string', enum: ['ADD_SUCCESS', 'ADD_FAILED'] },
          errorMessage: { type: 'string', description: 'Set when ADD_FAILED.' },
        },
      },
      FileHandle: {
        type: 'object',
        required: [
          'id',
          'etag',
          'concreteType',
          'fileName',
          'contentType',
          'contentMd5',
          'contentSize',
          'createdBy',
          'createdOn',
          'modifiedOn',
          'status',
          'objectName',
          'contentSha256',
        ],
        properties: {
          id: { type: 'string', pattern: '^[1-9][0-9]*$' },
          etag: { type: 'string' },
          concreteType: { type: 'string' },
          fileName: { type: 'string' },
          contentType: { type: 'string' },
          contentMd5: { type: 'string' },
          contentSize: { type: 'integer', minimum: 0 },
          createdBy: { type: 'string' },
          createdOn: { type: 'string', format: 'date-time' },
          modifiedOn: { type: 'string', format: 'date-time' },
          storageLocationId: { type: 'integer' },
          status: { type: 'string', const: 'AVAILABLE' },
          objectName: { type: 'string', description: 'Ferry extension: the catalog object name, "fileHandle/<id>".' },
          contentSha256: { type: 'string', description: 'Ferry extension: the SHA-256 hex of the content.' },
        },
      },
      Error: {
        type: 'object',
        required: ['code', 'message', 'reason'],
        properties: {
          code: {
            type: 'string',
            enum: [
              'INVALID_ARGUMENT',
              'OUT_OF_RANGE',
              'NOT_FOUND',
              'ALREADY_EXISTS',
              'FAILED_PRECONDITION',
              'ABORTED',
              'UNAUTHENTICATED',
              'PERMISSION_DENIED',
              'RESOURCE_EXHAUSTED',
              'CANCELLED',
              'DEADLINE_EXCEEDED',
              'UNAVAILABLE',
              'INTERNAL',
            ],
          },
          message: { type: 'string' },
          reason: { type: 'string', description: 'The same text as message, for Synapse clients.' },
        },
      },
    },
  },
} as const;
