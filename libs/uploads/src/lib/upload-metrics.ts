import { Counter, Histogram } from 'prom-client';

/**
 * Prometheus metrics of the upload engine, labelled by protocol (`bytestream`, `gcs`, ...): every
 * protocol face that writes through the engine reports them, and every app serving them exposes
 * them on its /metrics.
 */
export const uploadMetrics = {
  bytesReceived: new Counter({
    name: 'ferry_upload_bytes_received_total',
    help: 'Bytes written to staging by upload streams',
    labelNames: ['protocol'],
  }),
  bytesSent: new Counter({
    name: 'ferry_download_bytes_sent_total',
    help: 'Bytes of published objects sent to readers',
    labelNames: ['protocol'],
  }),
  streams: new Counter({
    name: 'ferry_upload_streams_total',
    help: 'Upload streams that took an upload\u2019s writer lease: resumed="true" when bytes were already committed',
    labelNames: ['protocol', 'resumed'],
  }),
  prefixDigests: new Counter({
    name: 'ferry_upload_prefix_digests_total',
    help:
      'Resumed upload streams by how they got the digests of the committed bytes: from="saved" (the state the previous writer left ' +
      'in the session, on any replica), "parked" (its digests, kept in this process), "rehashed" (read back and hashed again)',
    labelNames: ['protocol', 'from'],
  }),
  completed: new Counter({ name: 'ferry_uploads_completed_total', help: 'Uploads verified and published', labelNames: ['protocol'] }),
  failed: new Counter({
    name: 'ferry_uploads_failed_total',
    help: 'Uploads dropped because their content failed verification',
    labelNames: ['protocol'],
  }),
  commitSeconds: new Histogram({
    name: 'ferry_upload_commit_seconds',
    help: 'Latency of a commit: fsync of the staged bytes and the compare-and-set of the committed size in Redis',
    labelNames: ['protocol'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  }),
};
