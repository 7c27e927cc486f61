import { Counter, Histogram } from 'prom-client';

export const partBytes = new Counter({ name: 'ferry_multipart_part_bytes_total', help: 'Bytes of parts stored through presigned PUTs' });
export const partsStored = new Counter({ name: 'ferry_multipart_parts_stored_total', help: 'Parts stored through presigned PUTs' });
/** The assemblies complete ran in multipart-api itself (the worker's have the same names, in the worker). */
export const assemblyDuration = new Histogram({
  name: 'ferry_assembly_duration_seconds',
  help: 'Time to hash what was left, verify and publish a multipart upload, in complete',
  labelNames: ['outcome'],
  buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 5, 10, 30],
});
export const assemblies = new Counter({
  name: 'ferry_assemblies_total',
  help: 'Multipart assemblies settled in complete',
  labelNames: ['outcome'],
});
export const digestBytes = new Counter({
  name: 'ferry_multipart_digest_bytes_total',
  help: 'Bytes of parts hashed into the whole-file digests as parts landed (more than the uploads when a part PUT again made them start over)',
});
