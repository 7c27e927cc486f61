// Diagnostic preload for a Ferry process under benchmark: counts V8 collections by kind and prints
// them with heap and ArrayBuffer memory to stderr every 500 ms and at SIGTERM. Usage:
//   BENCH_FERRY_ENV="{\"NODE_OPTIONS\":\"--require $PWD/tools/bench/gc-observer.cjs\"}" npm run bench:multipart
const { PerformanceObserver, constants } = require('node:perf_hooks');

const KINDS = {
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};
const stats = {};
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = KINDS[e.detail?.kind] ?? String(e.detail?.kind);
    const s = (stats[kind] ??= { n: 0, ms: 0 });
    s.n++;
    s.ms += e.duration;
  }
}).observe({ entryTypes: ['gc'] });

function report() {
  const m = process.memoryUsage();
  const mb = (x) => (x / 1e6).toFixed(0);
  process.stderr.write(`gc ${process.pid} ${JSON.stringify(stats)} heap=${mb(m.heapUsed)}MB arrayBuffers=${mb(m.arrayBuffers)}MB\n`);
}
setInterval(report, 500).unref();
process.once('SIGTERM', report);
