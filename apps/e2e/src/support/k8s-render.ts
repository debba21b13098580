/**
 * Renders the Kustomize overlays of k8s/ with `kubectl kustomize` (offline) and validates
 * the objects against the Kubernetes API schemas (through k8s-validate.mjs), for the
 * manifest tests.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { repoRoot } from '@stack/testing';
import { parse, parseAllDocuments } from 'yaml';

export const OVERLAYS = ['dev', 'prod'] as const;
export type Overlay = (typeof OVERLAYS)[number];

/** A rendered object; the checks read the fields they need through the helpers below. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

export function renderKustomization(dir: string): K8sObject[] {
  const res = spawnSync('kubectl', ['kustomize', join(repoRoot(), dir)], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (res.error) throw new Error(`kubectl kustomize ${dir} could not run (is kubectl installed?): ${res.error.message}`);
  if (res.status !== 0) throw new Error(`kubectl kustomize ${dir} failed:\n${res.stderr}`);
  return parseYamlDocuments(res.stdout, dir);
}

export function renderOverlay(overlay: Overlay): K8sObject[] {
  return renderKustomization(`k8s/overlays/${overlay}`);
}

export function parseYamlDocuments(text: string, source: string): K8sObject[] {
  const docs = parseAllDocuments(text);
  const objects: K8sObject[] = [];
  for (const doc of docs) {
    if (doc.errors.length) throw new Error(`${source}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    objects.push(value as K8sObject);
  }
  return objects;
}

export function readRepoYaml(path: string): unknown {
  return parse(readFileSync(join(repoRoot(), path), 'utf8'));
}

export interface ValidationResult {
  kind: string;
  name: string;
  error?: string;
}

/** Every object against its API schema; objects of a kind without a schema are errors too. */
export function validateAgainstSchemas(objects: readonly K8sObject[]): ValidationResult[] {
  const res = spawnSync(process.execPath, [join(__dirname, 'k8s-validate.mjs')], {
    cwd: repoRoot(),
    input: JSON.stringify(objects),
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (res.status !== 0) throw new Error(`k8s-validate.mjs failed:\n${res.stderr}`);
  return JSON.parse(res.stdout) as ValidationResult[];
}
