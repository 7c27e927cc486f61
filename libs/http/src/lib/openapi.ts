import { SIGNED_URL_PARAMS } from '@ferry/auth';

/** Pieces of the apps' OpenAPI documents that mean the same thing in each. */

/** A JSON response (or body) of a schema in components.schemas. */
export function jsonContent(description: string, schema: string) {
  return { description, content: { 'application/json': { schema: { $ref: `#/components/schemas/${schema}` } } } };
}

export const responseRef = (name: string) => ({ $ref: `#/components/responses/${name}` });
export const parameterRef = (name: string) => ({ $ref: `#/components/parameters/${name}` });
export const schemaRef = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/** The query parameters of a signed URL (UrlSigner), for components.parameters. */
export const SIGNED_URL_PARAMETERS = {
  expires: {
    name: SIGNED_URL_PARAMS.expires,
    in: 'query',
    required: true,
    description: 'When the signed URL expires, in unix seconds.',
    schema: { type: 'string', pattern: '^[0-9]+$' },
  },
  signedHeaders: {
    name: SIGNED_URL_PARAMS.signedHeaders,
    in: 'query',
    required: true,
    description: 'Semicolon-separated lowercase names of the signed headers the request must send; may be empty.',
    schema: { type: 'string' },
  },
  signature: {
    name: SIGNED_URL_PARAMS.signature,
    in: 'query',
    required: true,
    description: 'base64url HMAC-SHA256 signature.',
    schema: { type: 'string', pattern: '^[A-Za-z0-9_-]+$' },
  },
};

/** References to SIGNED_URL_PARAMETERS, for an operation's parameters. */
export const signedUrlParameterRefs = () => Object.keys(SIGNED_URL_PARAMETERS).map(parameterRef);

/** The conditional request headers sendRange honours, for an operation's parameters. */
export const conditionalDownloadParameters = () => [
  {
    name: 'If-None-Match',
    in: 'header',
    description: 'Entity tags (or *): when one is the ETag (weak comparison), the answer is 304 with no body.',
    schema: { type: 'string' },
  },
  {
    name: 'If-Range',
    in: 'header',
    description: 'With Range: the range is honoured only when this is the (strong) ETag; otherwise, a date included, the whole is sent.',
    schema: { type: 'string' },
  },
];

/** The 304 of sendRange: the ETag only. */
export const NOT_MODIFIED_DOWNLOAD = {
  description: 'If-None-Match names the ETag: no body.',
  headers: { ETag: { description: 'The entity tag, quoted, as a 200 sends it.', schema: { type: 'string' } } },
};

/** What sendRange's 416 says besides the app's error body. */
export const UNSATISFIABLE_RANGE = 'The range is not satisfiable; Content-Range gives the size (bytes */size).';
