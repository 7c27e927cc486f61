#!/usr/bin/env node
// Validates Kubernetes manifests offline against the Kubernetes OpenAPI schemas bundled in the npm
// package kubernetes-models (ESM, hence a script of its own). Usage:
//   node tools/deploy/validate-k8s.mjs deploy/k8s/*.yaml
// Prints one line per object; exits 1 if any object is invalid or of a kind it does not know.
import { readFileSync } from 'node:fs';
import { ConfigMap, PersistentVolumeClaim, Secret, Service } from 'kubernetes-models/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { parseAllDocuments } from 'yaml';

const MODELS = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'apps/v1/Deployment': Deployment,
};
let failures = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
    const o = doc.toJS();
    if (!o) continue;
    const what = `${file}: ${o.kind ?? '?'} ${o.metadata?.name ?? '?'}`;
    const Model = MODELS[`${o.apiVersion}/${o.kind}`];
    try {
      if (doc.errors.length) throw new Error(doc.errors.map((e) => e.message).join('; '));
      if (!Model) throw new Error(`unknown apiVersion/kind ${o.apiVersion}/${o.kind}`);
      new Model(o).validate();
      console.log(`ok      ${what}`);
    } catch (err) {
      failures++;
      console.log(`INVALID ${what}: ${err.message}`);
    }
  }
}
process.exit(failures ? 1 : 0);
