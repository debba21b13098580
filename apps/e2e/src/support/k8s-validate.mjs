// Validates Kubernetes objects against the API schemas of `kubernetes-models` (Kubernetes
// 1.34), `@kubernetes-models/gateway-api` and `@kubernetes-models/external-secrets`. Both packages are ESM-only, which Jest's
// CommonJS module system cannot load, so k8s-render.ts runs this in a child Node process:
// it reads a JSON array of objects on stdin and prints one result per object.
import { readFileSync } from 'node:fs';

const objects = JSON.parse(readFileSync(0, 'utf8'));
const results = [];
for (const o of objects) {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  const crdPackage = { 'gateway.networking.k8s.io': 'gateway-api', 'external-secrets.io': 'external-secrets' }[group];
  const modulePath = crdPackage
    ? `@kubernetes-models/${crdPackage}/${group}/${version}/${o.kind}`
    : `kubernetes-models/${group ? `${group}/` : ''}${version}/${o.kind}`;
  let Model;
  try {
    Model = (await import(modulePath))[o.kind];
  } catch {
    Model = undefined;
  }
  if (typeof Model !== 'function') {
    results.push({ kind: o.kind, name: o.metadata?.name, error: `no schema for ${o.apiVersion} ${o.kind}` });
    continue;
  }
  // kustomize folds long base64 values of a Secret over lines; the API server's decoder
  // (Go's encoding/base64) skips newlines, so the schema's `byte` format must too.
  if (o.kind === 'Secret' && o.data) {
    o.data = Object.fromEntries(Object.entries(o.data).map(([k, v]) => [k, String(v).replace(/\n/g, '')]));
  }
  try {
    new Model(o).validate();
    results.push({ kind: o.kind, name: o.metadata?.name });
  } catch (err) {
    results.push({ kind: o.kind, name: o.metadata?.name, error: err.message });
  }
}
process.stdout.write(JSON.stringify(results));
