import {
  NOT_MODIFIED_DOWNLOAD,
  SIGNED_URL_PARAMETERS,
  UNSATISFIABLE_RANGE,
  conditionalDownloadParameters,
  jsonContent,
  parameterRef,
  responseRef,
  schemaRef,
  signedUrlParameterRefs,
} from '@ferry/http';

/** The OpenAPI 3.1 description of Ferry's Taskcluster object API (served at GET /docs). */

const res = responseRef;
const param = parameterRef;
const schema = schemaRef;
/** A Taskcluster error response `{code, message}`, described for one operation. */
const err = (name: string, description: string) => ({ $ref: `#/components/responses/${name}`, description });
/** A JSON request body of a schema in components.schemas. */
const body = (name: string) => ({ required: true, content: { 'application/json': { schema: schema(name) } } });
/** What an operation with a JSON body answers for one past the limit (1 MiB). */
const tooLarge = { '413': res('InputTooLarge') };
/** Errors every authenticated /api/object/v1 operation may answer. */
const authErrors = {
  '401': res('AuthenticationFailed'),
  '500': res('InternalServerError'),
  '503': res('ServiceUnavailable'),
};
/** The {name} path parameter, shared by a path's operations. */
const named = { parameters: [param('name')] };
/** An operation without authentication answering 200 with `response`. */
const open = (operationId: string, summary: string, response: object) => ({
  operationId,
  summary,
  security: [],
  responses: { '200': response },
});
const binary = (description: string) => ({ description, content: { '*/*': { schema: schema('Binary') } } });
const header = (name: string) => ({ $ref: `#/components/headers/${name}` });
const objectHeaders = { 'Accept-Ranges': header('AcceptRanges'), ETag: header('ETag'), 'Content-Type': header('ContentType') };
/** The Dockerflow heartbeat: 200 when Redis and storage answer, else 503 saying which. */
const heartbeat = (operationId: string) => ({
  operationId,
  summary: 'Dockerflow heartbeat: checks Redis and storage',
  security: [],
  responses: {
    '200': jsonContent('Redis and storage answer.', 'Dependencies'),
    '503': jsonContent('A dependency does not answer (ServiceUnavailable, with the state of each).', 'DependencyFailure'),
  },
});
const hex = (n: number, algo: string) => ({
  type: 'string',
  pattern: `^[0-9a-f]{${n}}$`,
  description: `${algo} of the content, ${n} lowercase hex digits.`,
});

export const OBJECT_OPENAPI = {
  openapi: '3.1.0',
  info: {
    title: 'Ferry object API (Taskcluster object service)',
    version: '1.0.0',
    description:
      "The Taskcluster object service (/api/object/v1) over Ferry's catalog, usable by unmodified Taskcluster clients. " +
      '1) createUpload (PUT /upload/{name}) proposes upload methods: dataInline (the bytes, base64, stored at once if at most ' +
      '8 KiB decoded) or putUrl (a signed URL to PUT the bytes to). 2) PUT the bytes to the putUrl with its headers. ' +
      '3) finishUpload with the hashes: the object becomes immutable and downloadable. Downloads negotiate getUrl (a signed ' +
      'URL plus the hashes to verify) or simple (a signed URL); GET /download/{name} redirects to the bytes. ' +
      "Errors are Taskcluster's `{code, message}`. Unfinished uploads expire one day after their first createUpload; " +
      'objects are gone once their expires has passed. Authentication: Hawk (permanent or Taskcluster temporary credentials, ' +
      'optionally narrowed by authorizedScopes), a Hawk bewit in the query of the GET routes (metadata, download), or a bearer token.',
  },
  security: [{ hawk: [] }, { bearer: [] }],
  paths: {
    '/api/object/v1/ping': {
      get: open('ping', 'Liveness of the object service', jsonContent('Alive, with the uptime in seconds.', 'Ping')),
    },
    '/api/object/v1/upload/{name}': {
      ...named,
      put: {
        operationId: 'createUpload',
        summary: 'Create (or renew) an upload of an object',
        description:
          'Needs scope `object:upload:<projectId>:<name>`. Idempotent while the upload is unfinished if projectId, uploadId ' +
          'and expires match; calling it again renews the putUrl. The server chooses dataInline when proposed and the data ' +
          '(at most 8 KiB decoded: more is a 400), else putUrl when proposed, else nothing (`uploadMethod: {}`, not an error).',
        requestBody: body('CreateUploadRequest'),
        responses: {
          '200': jsonContent('The upload, with the chosen upload method.', 'CreateUploadResponse'),
          '400': err(
            'InputValidationError',
            'Invalid body (dataInline past 8 KiB decoded included), or (InvalidRequestArguments) an invalid name.',
          ),
          '403': err('InsufficientScopes', 'Missing scope object:upload:<projectId>:<name>.'),
          '409': err(
            'RequestConflict',
            'The object is already finished, another upload of it (different uploadId, projectId or expires) is in progress, ' +
              'or a hash differs from one already declared.',
          ),
          ...tooLarge,
          ...authErrors,
        },
      },
    },
    '/api/object/v1/finish-upload/{name}': {
      ...named,
      post: {
        operationId: 'finishUpload',
        summary: 'Finish an upload: publish the object',
        description:
          "Needs scope `object:upload:<projectId>:<name>`. Compares the declared hashes with the uploaded bytes' and " +
          'publishes the object atomically; afterwards it is immutable. Repeating it on a finished object succeeds if every ' +
          'given hash equals a stored one.',
        requestBody: body('FinishUploadRequest'),
        responses: {
          '200': jsonContent('Finished (an empty object).', 'Empty'),
          '400': err(
            'InputValidationError',
            "Invalid body; (InvalidRequestArguments) an invalid name; (InputError) projectId differs from the upload's, or the data's " +
              'hashes differ from the declared ones (nothing is published).',
          ),
          '403': err('InsufficientScopes', 'Missing scope object:upload:<projectId>:<name>.'),
          '404': err('ResourceNotFound', 'No object or upload of this name.'),
          '409': err(
            'RequestConflict',
            'uploadId differs from the upload in progress, no data was uploaded yet, or a hash differs from a known one.',
          ),
          ...tooLarge,
          ...authErrors,
        },
      },
    },
    '/api/object/v1/start-download/{name}': {
      ...named,
      put: {
        operationId: 'startDownload',
        summary: 'Negotiate a download method',
        description: 'Needs scope `object:download:<name>`. The server prefers getUrl over simple; both URLs are signed and expire.',
        requestBody: body('StartDownloadRequest'),
        responses: {
          '200': jsonContent('The chosen download method.', 'DownloadResponse'),
          '400': err('InputValidationError', 'Invalid body, or (InvalidRequestArguments) an invalid name.'),
          '403': err('InsufficientScopes', 'Missing scope object:download:<name>.'),
          '404': err('ResourceNotFound', 'No finished object of this name (unknown, unfinished or expired).'),
          '406': err('NoMatchingMethod', 'None of the accepted download methods is offered (getUrl, simple).'),
          ...tooLarge,
          ...authErrors,
        },
      },
    },
    '/api/object/v1/metadata/{name}': {
      ...named,
      get: {
        operationId: 'objectMetadata',
        summary: "An object's metadata",
        description: 'Needs scope `object:download:<name>`. A bewit URL (buildSignedUrl) authenticates it too.',
        parameters: [param('bewit')],
        responses: {
          '200': jsonContent("The object's project, expiry and hashes.", 'ObjectMetadata'),
          '400': err('InvalidRequestArguments', 'Invalid name.'),
          '403': err('InsufficientScopes', 'Missing scope object:download:<name>.'),
          '404': err('ResourceNotFound', 'No finished object of this name.'),
          ...authErrors,
        },
      },
    },
    '/api/object/v1/download/{name}': {
      ...named,
      get: {
        operationId: 'downloadObject',
        summary: "Redirect to an object's bytes",
        description:
          'Needs scope `object:download:<name>`. A bewit URL (buildSignedUrl: what curl, wget and browsers are handed) ' +
          'authenticates it too; the redirect is signed on its own, so following it needs no credentials.',
        parameters: [param('bewit')],
        responses: {
          '303': {
            description: 'See the signed data-plane URL of the bytes.',
            headers: {
              Location: { description: 'The signed GET URL (/data/objects/{name}?...).', schema: { type: 'string', format: 'uri' } },
            },
          },
          '400': err('InvalidRequestArguments', 'Invalid name.'),
          '403': err('InsufficientScopes', 'Missing scope object:download:<name>.'),
          '404': err('ResourceNotFound', 'No finished object of this name.'),
          ...authErrors,
        },
      },
    },
    '/data/uploads/{uploadId}/{name}': {
      put: {
        operationId: 'putObjectData',
        summary: "Upload an object's bytes (data plane: the signed putUrl)",
        description:
          'The body is exactly the declared contentLength bytes. The request must send the headers returned with the putUrl ' +
          '(Content-Type is signed).',
        security: [],
        parameters: [param('uploadId'), param('dataName'), ...signedUrlParameterRefs()],
        requestBody: { required: true, content: { '*/*': { schema: schema('Binary') } } },
        responses: {
          '200': { description: 'The bytes are stored (empty body).' },
          '400': err('InputValidationError', 'The body is not exactly the declared contentLength.'),
          '403': res('SignatureRejected'),
          '404': err('ResourceNotFound', 'No upload with this uploadId of this name in progress.'),
          '409': err('RequestConflict', 'Another PUT of this object is in progress.'),
          '500': res('InternalServerError'),
        },
      },
    },
    '/data/objects/{name}': {
      get: {
        operationId: 'getObjectData',
        summary: "Download an object's bytes (data plane: the signed getUrl / simple URL)",
        security: [],
        parameters: [
          param('dataName'),
          ...signedUrlParameterRefs(),
          {
            name: 'Range',
            in: 'header',
            description: 'One byte range (bytes=first-last, bytes=first- or bytes=-suffix); a malformed one is ignored.',
            schema: { type: 'string' },
          },
          ...conditionalDownloadParameters(),
        ],
        responses: {
          '200': { ...binary('The whole object, of its contentType.'), headers: objectHeaders },
          '206': {
            ...binary('The requested byte range.'),
            headers: { ...objectHeaders, 'Content-Range': { description: 'bytes first-last/size', schema: { type: 'string' } } },
          },
          '304': NOT_MODIFIED_DOWNLOAD,
          '403': res('SignatureRejected'),
          '404': err('ResourceNotFound', 'No finished object of this name.'),
          '416': err('RangeNotSatisfiable', UNSATISFIABLE_RANGE),
          '500': res('InternalServerError'),
        },
      },
    },
    '/__heartbeat__': { get: heartbeat('heartbeat') },
    '/__lbheartbeat__': { get: open('lbheartbeat', 'Dockerflow load-balancer heartbeat', jsonContent('Alive.', 'Empty')) },
    '/__version__': { get: open('version', 'Dockerflow version', jsonContent('The running version.', 'Version')) },
    '/api/object/v1/__heartbeat__': { get: heartbeat('apiHeartbeat') },
    '/api/object/v1/__lbheartbeat__': {
      get: open(
        'apiLbheartbeat',
        "Dockerflow load-balancer heartbeat (where Taskcluster's API reference declares it)",
        jsonContent('Alive.', 'Empty'),
      ),
    },
    '/api/object/v1/__version__': {
      get: open(
        'apiVersion',
        "Dockerflow version (where Taskcluster's API reference declares it)",
        jsonContent('The running version.', 'Version'),
      ),
    },
    '/healthz': { get: open('healthz', 'Liveness', jsonContent('The process is alive.', 'Health')) },
    '/readyz': {
      get: {
        operationId: 'readyz',
        summary: 'Readiness (Redis and storage reachable)',
        security: [],
        responses: {
          '200': jsonContent('Ready.', 'Readiness'),
          '503': jsonContent("Not ready (this body uses Ferry's code UNAVAILABLE, not Taskcluster's).", 'NotReady'),
        },
      },
    },
    '/metrics': {
      get: open('metrics', 'Prometheus metrics', {
        description: 'Prometheus text format.',
        content: { 'text/plain': { schema: { type: 'string' } } },
      }),
    },
    '/docs': {
      get: open('docs', 'This OpenAPI document', {
        description: 'The OpenAPI 3.1 document.',
        content: { 'application/json': { schema: { type: 'object' } } },
      }),
    },
  },
  components: {
    securitySchemes: {
      hawk: {
        type: 'http',
        scheme: 'Hawk',
        description:
          'Taskcluster credentials as Taskcluster clients send them: `Authorization: Hawk id="<clientId>", ts="...", ' +
          'nonce="...", mac="..."` with a sha256 MAC (timestamps within 15 minutes, as Taskcluster; nonces are not reusable). ' +
          "`ext` may carry a temporary-credentials certificate and authorizedScopes, as Taskcluster's. The MAC covers the host " +
          'and port the client called: behind a proxy, the port of X-Forwarded-Port, else 443 for X-Forwarded-Proto https, as ' +
          "Taskcluster's. A payload hash (`hash`) is optional and, when sent, must be the JSON body's (else 401).",
      },
      bearer: { type: 'http', scheme: 'bearer' },
    },
    parameters: {
      dataName: {
        name: 'name',
        in: 'path',
        required: true,
        description: 'The object name as base64url (so that names like ".." survive URL normalisation); part of the signed URL.',
        schema: { type: 'string', pattern: '^[A-Za-z0-9_-]+$' },
      },
      name: {
        name: 'name',
        in: 'path',
        required: true,
        description: 'The object name: 1 to 1024 printable ASCII characters (0x20-0x7e), URL-encoded ("/" as %2F).',
        schema: { type: 'string', minLength: 1, maxLength: 1024, pattern: '^[\\x20-\\x7e]{1,1024}$' },
      },
      uploadId: { name: 'uploadId', in: 'path', required: true, schema: schema('UploadId') },
      bewit: {
        name: 'bewit',
        in: 'query',
        required: false,
        description:
          "A Hawk bewit (base64url of `id\\exp\\mac\\ext`, made by a client's buildSignedUrl): authenticates the GET instead of an " +
          'Authorization header, until exp. Its MAC covers the URL without the bewit parameter.',
        schema: { type: 'string', pattern: '^[A-Za-z0-9_-]+$' },
      },
      ...SIGNED_URL_PARAMETERS,
    },
    headers: {
      ETag: { description: "The object's SHA-256 hex, quoted.", schema: { type: 'string' } },
      AcceptRanges: { description: 'Byte ranges are supported.', schema: { type: 'string', const: 'bytes' } },
      ContentType: { description: "The object's contentType (application/binary if none was given).", schema: { type: 'string' } },
    },
    responses: {
      InputValidationError: jsonContent('InputValidationError: the body is invalid (schema).', 'Error'),
      InvalidRequestArguments: jsonContent('InvalidRequestArguments: a path parameter (the name) is invalid.', 'Error'),
      AuthenticationFailed: jsonContent(
        "AuthenticationFailed: missing, malformed or invalid Hawk or bearer credentials, or a Hawk payload hash that is not the body's.",
        'Error',
      ),
      InputTooLarge: jsonContent('InputTooLarge: the JSON body is larger than 1 MiB (1048576 bytes).', 'Error'),
      InsufficientScopes: jsonContent('InsufficientScopes: the caller lacks a required scope.', 'Error'),
      ResourceNotFound: jsonContent('ResourceNotFound: no such resource.', 'Error'),
      NoMatchingMethod: jsonContent('NoMatchingMethod: no common method.', 'Error'),
      RequestConflict: jsonContent('RequestConflict: the request conflicts with the current state.', 'Error'),
      RangeNotSatisfiable: jsonContent('RangeNotSatisfiable: the range is not satisfiable.', 'Error'),
      InternalServerError: jsonContent('InternalServerError: an unexpected error.', 'Error'),
      ServiceUnavailable: jsonContent('ServiceUnavailable: a dependency is unavailable; retry.', 'Error'),
      SignatureRejected: jsonContent(
        'InsufficientScopes: the signed URL has expired, or its signature does not match (tampered).',
        'Error',
      ),
    },
    schemas: {
      Empty: { type: 'object', maxProperties: 0 },
      Binary: { type: 'string', contentMediaType: 'application/octet-stream' },
      Ping: {
        type: 'object',
        required: ['alive', 'uptime'],
        properties: { alive: { type: 'boolean', const: true }, uptime: { type: 'number', minimum: 0, description: 'Seconds.' } },
      },
      Version: {
        type: 'object',
        required: ['source', 'version', 'commit', 'build'],
        properties: { source: { type: 'string' }, version: { type: 'string' }, commit: { type: 'string' }, build: { type: 'string' } },
      },
      Health: { type: 'object', required: ['status'], properties: { status: { type: 'string', const: 'ok' } } },
      Dependencies: {
        type: 'object',
        required: ['redis', 'storage'],
        properties: { redis: { type: 'string', enum: ['ok', 'unavailable'] }, storage: { type: 'string', enum: ['ok', 'unavailable'] } },
      },
      DependencyFailure: {
        type: 'object',
        required: ['code', 'message', 'redis', 'storage'],
        properties: {
          code: { type: 'string', const: 'ServiceUnavailable' },
          message: { type: 'string' },
          redis: { type: 'string', enum: ['ok', 'unavailable'] },
          storage: { type: 'string', enum: ['ok', 'unavailable'] },
        },
      },
      Readiness: {
        type: 'object',
        required: ['status', 'redis', 'storage'],
        properties: { status: { type: 'string' }, redis: { type: 'string' }, storage: { type: 'string' } },
      },
      NotReady: {
        type: 'object',
        required: ['code', 'message'],
        properties: { code: { type: 'string', const: 'UNAVAILABLE' }, message: { type: 'string' } },
      },
      ProjectId: { type: 'string', pattern: '^[a-zA-Z0-9._/-]{1,500}$' },
      UploadId: {
        type: 'string',
        pattern: '^[A-Za-z0-9_-]{8}[Q-T][A-Za-z0-9_-][CGKOSWaeimquy26-][A-Za-z0-9_-]{10}[AQgw]$',
        description: 'A slugid: a v4 UUID as 22 URL-safe base64 characters.',
      },
      DateTime: { type: 'string', format: 'date-time' },
      Hashes: {
        type: 'object',
        properties: { sha256: hex(64, 'SHA-256'), sha512: hex(128, 'SHA-512') },
        additionalProperties: { type: 'string' },
        description: 'Other algorithms are accepted and ignored. Hashes can be added but never changed.',
      },
      ObjectHashes: {
        type: 'object',
        required: ['sha256'],
        additionalProperties: false,
        properties: { sha256: hex(64, 'SHA-256'), sha512: hex(128, 'SHA-512') },
      },
      CreateUploadRequest: {
        type: 'object',
        additionalProperties: false,
        required: ['projectId', 'uploadId', 'expires', 'proposedUploadMethods'],
        properties: {
          projectId: schema('ProjectId'),
          uploadId: schema('UploadId'),
          expires: { ...schema('DateTime'), description: 'When the object expires (ISO 8601, with an offset).' },
          hashes: schema('Hashes'),
          proposedUploadMethods: {
            type: 'object',
            additionalProperties: false,
            properties: {
              dataInline: {
                type: 'object',
                additionalProperties: false,
                required: ['contentType', 'objectData'],
                properties: {
                  contentType: { type: 'string', maxLength: 255 },
                  objectData: {
                    type: 'string',
                    contentEncoding: 'base64',
                    pattern: '^[A-Za-z0-9+/]*={0,2}$',
                    maxLength: 10924,
                    description:
                      'The bytes, base64: at most 8 KiB (8192 bytes) decoded, else the request is refused (400 InputValidationError).',
                  },
                },
              },
              putUrl: {
                type: 'object',
                additionalProperties: false,
                required: ['contentType', 'contentLength'],
                properties: {
                  contentType: { type: 'string', maxLength: 255 },
                  contentLength: { type: 'integer', minimum: 0, maximum: 9007199254740991 },
                },
              },
            },
          },
        },
      },
      CreateUploadResponse: {
        type: 'object',
        required: ['projectId', 'uploadId', 'expires', 'uploadMethod'],
        properties: {
          projectId: schema('ProjectId'),
          uploadId: schema('UploadId'),
          expires: schema('DateTime'),
          uploadMethod: {
            oneOf: [
              {
                type: 'object',
                additionalProperties: false,
                required: ['dataInline'],
                properties: { dataInline: { type: 'boolean', const: true } },
                description: 'The inline data is stored.',
              },
              {
                type: 'object',
                additionalProperties: false,
                required: ['putUrl'],
                properties: {
                  putUrl: {
                    type: 'object',
                    required: ['url', 'expires', 'headers'],
                    properties: {
                      url: { type: 'string', format: 'uri', description: 'The signed PUT URL (/data/uploads/{uploadId}/{name}?...).' },
                      expires: schema('DateTime'),
                      headers: {
                        type: 'object',
                        additionalProperties: { type: 'string' },
                        description: 'Headers the PUT must send (Content-Type and Content-Length).',
                      },
                    },
                  },
                },
              },
              { ...schema('Empty'), description: 'No proposed method was chosen (not an error).' },
            ],
          },
        },
      },
      FinishUploadRequest: {
        type: 'object',
        additionalProperties: false,
        required: ['projectId', 'uploadId'],
        properties: { projectId: schema('ProjectId'), uploadId: schema('UploadId'), hashes: schema('Hashes') },
      },
      StartDownloadRequest: {
        type: 'object',
        additionalProperties: false,
        required: ['acceptDownloadMethods'],
        properties: {
          acceptDownloadMethods: {
            type: 'object',
            properties: { simple: { type: 'boolean', const: true }, getUrl: { type: 'boolean', const: true } },
            description: 'Other methods are accepted and ignored.',
          },
        },
      },
      DownloadResponse: {
        oneOf: [
          {
            type: 'object',
            required: ['method', 'url', 'expires', 'hashes'],
            properties: {
              method: { type: 'string', const: 'getUrl' },
              url: { type: 'string', format: 'uri', description: 'The signed GET URL; verify the bytes against hashes.' },
              expires: schema('DateTime'),
              hashes: schema('ObjectHashes'),
            },
          },
          {
            type: 'object',
            required: ['method', 'url'],
            properties: { method: { type: 'string', const: 'simple' }, url: { type: 'string', format: 'uri' } },
          },
        ],
      },
      ObjectMetadata: {
        type: 'object',
        required: ['projectId', 'expires', 'hashes'],
        properties: {
          projectId: schema('ProjectId'),
          expires: { ...schema('DateTime'), description: '9999-12-31T23:59:59.999Z for an object that never expires.' },
          hashes: schema('ObjectHashes'),
        },
      },
      Error: {
        type: 'object',
        required: ['code', 'message'],
        properties: {
          code: {
            type: 'string',
            enum: [
              'InputValidationError',
              'InvalidRequestArguments',
              'InputError',
              'InputTooLarge',
              'AuthenticationFailed',
              'InsufficientScopes',
              'ResourceNotFound',
              'NoMatchingMethod',
              'RequestConflict',
              'RangeNotSatisfiable',
              'InternalServerError',
              'ServiceUnavailable',
            ],
            description:
              'InputValidationError 400 (body), InvalidRequestArguments 400 (name), InputError 400 (body against state), ' +
              'AuthenticationFailed 401, InsufficientScopes 403, ResourceNotFound 404, ' +
              'NoMatchingMethod 406, RequestConflict 409, InputTooLarge 413, RangeNotSatisfiable 416, InternalServerError 500, ServiceUnavailable 503.',
          },
          message: { type: 'string' },
        },
      },
    },
  },
} as const;
