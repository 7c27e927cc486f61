import { Counter } from 'prom-client';

export const partBytes = new Counter({ name: 'ferry_multipart_part_bytes_total', help: 'Bytes of parts stored through presigned PUTs' });
export const partsStored = new Counter({ name: 'ferry_multipart_parts_stored_total', help: 'Parts stored through presigned PUTs' });
