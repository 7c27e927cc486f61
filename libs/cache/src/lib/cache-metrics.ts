import { Counter, Gauge } from 'prom-client';

/** Prometheus metrics of the bounded REAPI cache (every app that serves or evicts it reports them). */
export const cacheMetrics = {
  bytes: new Gauge({ name: 'ferry_cache_bytes', help: 'Bytes the REAPI cache holds (CAS blobs and action results), as last seen' }),
  evictedBytes: new Counter({ name: 'ferry_cache_evicted_bytes_total', help: 'Bytes evicted from the REAPI cache' }),
  evicted: new Counter({ name: 'ferry_cache_evicted_total', help: 'Entries evicted from the REAPI cache', labelNames: ['kind'] }),
  hits: new Counter({ name: 'ferry_cache_hits_total', help: 'Cache lookups that found the entry', labelNames: ['kind'] }),
  misses: new Counter({ name: 'ferry_cache_misses_total', help: 'Cache lookups that did not find the entry', labelNames: ['kind'] }),
  refused: new Counter({
    name: 'ferry_cache_refused_total',
    help: 'CAS writes refused because the cache was full of entries it could not evict',
  }),
};
