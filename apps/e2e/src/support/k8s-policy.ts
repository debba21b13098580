/**
 * Reads rendered Kubernetes objects the way the cluster would, for the manifest tests: the
 * pod templates of workloads, label selectors, which NetworkPolicies select a pod and what
 * they allow, and which backend an Ingress or HTTPRoute picks for a request path.
 */
import { BlockList, isIP } from 'node:net';

import type { K8sObject } from './k8s-render';

export type Labels = Record<string, string>;

export interface LabelSelector {
  matchLabels?: Labels;
  matchExpressions?: { key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }[];
}

export interface Probe {
  httpGet?: { path?: string; port: number | string };
  exec?: { command: string[] };
  tcpSocket?: { port: number | string };
}

export interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  allowPrivilegeEscalation?: boolean;
  readOnlyRootFilesystem?: boolean;
  privileged?: boolean;
  capabilities?: { drop?: string[]; add?: string[] };
  seccompProfile?: { type: string };
}

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean }; configMapKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } };
}

export interface Container {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  env?: EnvVar[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number }[];
  resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  lifecycle?: { preStop?: { sleep?: { seconds: number }; exec?: { command: string[] } } };
  securityContext?: SecurityContext;
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}

export interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  securityContext?: SecurityContext & { fsGroup?: number };
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  hostNetwork?: boolean;
  hostPID?: boolean;
  hostIPC?: boolean;
  terminationGracePeriodSeconds?: number;
  topologySpreadConstraints?: { topologyKey: string; labelSelector?: LabelSelector }[];
  volumes?: { name: string; hostPath?: unknown; emptyDir?: unknown; secret?: { secretName: string } }[];
  restartPolicy?: string;
}

export interface Workload {
  object: K8sObject;
  kind: string;
  name: string;
  replicas?: number;
  selector?: LabelSelector;
  podLabels: Labels;
  pod: PodSpec;
}

interface WorkloadSpec {
  replicas?: number;
  selector?: LabelSelector;
  template: { metadata?: { labels?: Labels }; spec: PodSpec };
}

const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'ReplicaSet']);

export function byKind<T extends K8sObject = K8sObject>(objects: readonly K8sObject[], kind: string): T[] {
  return objects.filter((o) => o.kind === kind) as T[];
}

export function specOf<T>(o: K8sObject): T {
  return o.spec as T;
}

/** Every object that runs pods (CronJobs included through their job template). */
export function workloads(objects: readonly K8sObject[]): Workload[] {
  const out: Workload[] = [];
  for (const o of objects) {
    let spec: WorkloadSpec | undefined;
    if (WORKLOAD_KINDS.has(o.kind)) spec = specOf<WorkloadSpec>(o);
    else if (o.kind === 'CronJob') spec = specOf<{ jobTemplate: { spec: WorkloadSpec } }>(o).jobTemplate.spec;
    if (!spec) continue;
    out.push({ object: o, kind: o.kind, name: o.metadata.name, replicas: spec.replicas, selector: spec.selector, podLabels: spec.template.metadata?.labels ?? {}, pod: spec.template.spec });
  }
  return out;
}

export function selectorMatches(selector: LabelSelector | undefined, labels: Labels): boolean {
  if (!selector) return false;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    if (e.operator === 'In' && !(has && (e.values ?? []).includes(labels[e.key]))) return false;
    if (e.operator === 'NotIn' && has && (e.values ?? []).includes(labels[e.key])) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

/** A Service's `selector` is a plain label map. */
export function serviceSelects(service: K8sObject, labels: Labels): boolean {
  const selector = specOf<{ selector?: Labels }>(service).selector;
  return !!selector && Object.keys(selector).length > 0 && selectorMatches({ matchLabels: selector }, labels);
}

// ---- NetworkPolicy -------------------------------------------------------------------

export interface PolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: { cidr: string; except?: string[] };
}

export interface PolicyPort {
  protocol?: string;
  port?: number | string;
}

export interface PolicyRule {
  peers?: PolicyPeer[];
  ports?: PolicyPort[];
}

interface NetworkPolicySpec {
  podSelector: LabelSelector;
  policyTypes?: ('Ingress' | 'Egress')[];
  ingress?: { from?: PolicyPeer[]; ports?: PolicyPort[] }[];
  egress?: { to?: PolicyPeer[]; ports?: PolicyPort[] }[];
}

export interface EffectivePolicy {
  /** Whether any policy isolates the pod in this direction (otherwise everything is allowed). */
  isolated: boolean;
  rules: PolicyRule[];
}

function matchesAll(selector: LabelSelector): boolean {
  return Object.keys(selector.matchLabels ?? {}).length === 0 && (selector.matchExpressions ?? []).length === 0;
}

/** The union of the rules of every policy in `namespace` that selects a pod with `labels`. */
export function effectivePolicy(objects: readonly K8sObject[], labels: Labels, direction: 'Ingress' | 'Egress'): EffectivePolicy {
  let isolated = false;
  const rules: PolicyRule[] = [];
  for (const np of byKind(objects, 'NetworkPolicy')) {
    const spec = specOf<NetworkPolicySpec>(np);
    if (!(matchesAll(spec.podSelector) || selectorMatches(spec.podSelector, labels))) continue;
    const types = spec.policyTypes ?? (spec.egress ? ['Ingress', 'Egress'] : ['Ingress']);
    if (!types.includes(direction)) continue;
    isolated = true;
    if (direction === 'Ingress') for (const r of spec.ingress ?? []) rules.push({ peers: r.from, ports: r.ports });
    else for (const r of spec.egress ?? []) rules.push({ peers: r.to, ports: r.ports });
  }
  return { isolated, rules };
}

/** A rule with no peers, or a peer that selects everything, opens the direction to anyone. */
export function ruleIsOpenToAll(rule: PolicyRule): boolean {
  if (!rule.peers || rule.peers.length === 0) return true;
  return rule.peers.some((p) => !p.ipBlock && !p.podSelector && p.namespaceSelector !== undefined && matchesAll(p.namespaceSelector));
}

/** Whether the rules let traffic reach a pod labelled `peerLabels` (any namespace) on `port`. */
export function allowsPodPeer(rules: readonly PolicyRule[], peerLabels: Labels, port: number): boolean {
  return rules.some(
    (r) =>
      portAllowed(r.ports, port) &&
      (r.peers ?? []).some((p) => p.podSelector !== undefined && !p.ipBlock && selectorMatches(p.podSelector, peerLabels) && (!p.namespaceSelector || matchesAll(p.namespaceSelector))),
  );
}

export function portAllowed(ports: readonly PolicyPort[] | undefined, port: number): boolean {
  return !ports || ports.length === 0 || ports.some((p) => p.port === undefined || p.port === port);
}

/** The rules that reach addresses outside the cluster (ipBlock peers). */
export function ipBlockRules(rules: readonly PolicyRule[]): PolicyRule[] {
  return rules.filter((r) => (r.peers ?? []).some((p) => p.ipBlock));
}

function cidrHolds(cidr: string, address: string): boolean {
  const [net = '', bits = ''] = cidr.split('/');
  const family = isIP(address);
  if (isIP(net) !== family) return false;
  const type = family === 6 ? 'ipv6' : 'ipv4';
  const list = new BlockList();
  list.addSubnet(net, Number(bits), type);
  return list.check(address, type);
}

/**
 * Whether the ipBlock peers of `rules` let traffic reach `address` (on `port`, when given): inside
 * a peer's `cidr` and outside all of its `except`. An IPv4-mapped IPv6 address leaves the pod as
 * the IPv4 address it maps, so that is what is judged.
 */
export function ipBlocksAllow(rules: readonly PolicyRule[], address: string, port?: number): boolean {
  const onTheWire = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1] ?? address;
  return rules.some(
    (r) =>
      (port === undefined || portAllowed(r.ports, port)) &&
      (r.peers ?? []).some((p) => p.ipBlock && cidrHolds(p.ipBlock.cidr, onTheWire) && !(p.ipBlock.except ?? []).some((e) => cidrHolds(e, onTheWire))),
  );
}

// ---- routing -------------------------------------------------------------------------

export interface HttpRoutePick {
  path: string;
  kind: 'Exact' | 'Prefix';
  service: string;
}

interface IngressSpec {
  rules: { host?: string; http: { paths: { path: string; pathType: string; backend: { service: { name: string } } }[] } }[];
}

export function ingressPaths(ingress: K8sObject): HttpRoutePick[] {
  return specOf<IngressSpec>(ingress).rules.flatMap((r) =>
    r.http.paths.map((p) => ({ path: p.path, kind: p.pathType === 'Exact' ? ('Exact' as const) : ('Prefix' as const), service: p.backend.service.name })),
  );
}

interface HTTPRouteSpec {
  rules: { matches?: { path?: { type?: string; value?: string } }[]; backendRefs?: { name: string }[] }[];
}

export function httpRoutePaths(route: K8sObject): HttpRoutePick[] {
  const out: HttpRoutePick[] = [];
  for (const rule of specOf<HTTPRouteSpec>(route).rules) {
    const backends = rule.backendRefs ?? [];
    if (backends.length !== 1) throw new Error(`HTTPRoute ${route.metadata.name}: a rule with ${backends.length} backends`);
    for (const m of rule.matches ?? []) {
      const type = m.path?.type ?? 'PathPrefix';
      out.push({ path: m.path?.value ?? '/', kind: type === 'Exact' ? 'Exact' : 'Prefix', service: backends[0].name });
    }
  }
  return out;
}

/**
 * The backend the Ingress (and HTTPRoute) specifications pick for `pathname`: an exact match
 * first, then the longest prefix matching whole path elements (`/v1/team` matches
 * `/v1/team/x`, not `/v1/teams`).
 */
export function resolvePath(picks: readonly HttpRoutePick[], pathname: string): string | undefined {
  const exact = picks.find((p) => p.kind === 'Exact' && p.path === pathname);
  if (exact) return exact.service;
  const prefixes = picks
    .filter((p) => p.kind === 'Prefix')
    .filter((p) => {
      const base = p.path.replace(/\/+$/, '');
      return base === '' || pathname === base || pathname.startsWith(`${base}/`);
    })
    .sort((a, b) => b.path.length - a.path.length);
  return prefixes[0]?.service;
}

/** Numeric seconds of a CPU quantity ("250m", "2", 1). */
export function cpuCores(q: string | number): number {
  return typeof q === 'number' ? q : q.endsWith('m') ? Number(q.slice(0, -1)) / 1000 : Number(q);
}

const MEM_UNITS: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, K: 1e3, M: 1e6, G: 1e9 };
export function memoryBytes(q: string | number): number {
  if (typeof q === 'number') return q;
  const m = /^(\d+(?:\.\d+)?)([KMG]i?)?$/.exec(q);
  if (!m) throw new Error(`unreadable memory quantity ${q}`);
  return Number(m[1]) * (m[2] ? MEM_UNITS[m[2]] : 1);
}
