/**
 * The Kubernetes manifests as a platform team would apply them: every overlay rendered with
 * `kubectl kustomize`, every object validated against the Kubernetes API schemas, and the
 * deployment policies of issue 8 checked as assertions (security context, resources, probes,
 * routes, disruption budgets, autoscalers, network policies, migrations, NATS users).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { ConfigError, loadConfig } from '@stack/config';
import { MAX_BUS_PAYLOAD_BYTES, PUBLIC_ROUTES, SERVICE_NAMES } from '@stack/contracts';
import type { ServiceName } from '@stack/contracts';
import { classifyAddress } from '@stack/security';
import { repoRoot } from '@stack/testing';

import { checkNatsUsers, eventsPublishedInCode, readDevNatsUsers, readProdNatsValues, SERVICE_BUS_USE, DEV_NATS_CONF, type NatsUser } from './support/k8s-nats-permissions';
import {
  allowsPodPeer,
  byKind,
  cpuCores,
  effectivePolicy,
  httpRoutePaths,
  ingressPaths,
  ipBlockRules,
  ipBlocksAllow,
  memoryBytes,
  resolvePath,
  ruleIsOpenToAll,
  selectorMatches,
  serviceSelects,
  specOf,
  workloads,
  type Container,
  type HttpRoutePick,
  type Workload,
} from './support/k8s-policy';
import { OVERLAYS, parseYamlDocuments, readRepoYaml, renderOverlay, validateAgainstSchemas, type K8sObject, type Overlay } from './support/k8s-render';

const STACK_LABEL = { 'app.kubernetes.io/name': 'stack' };
const ENGINE_PORTS = { nats: 4222, postgres: 5432, redis: 6379 } as const;

/**
 * Addresses the services' own address policy refuses (@stack/security classifyAddress), which
 * internet egress must refuse too: cloud metadata endpoints first, then one of each special-use
 * range, the IPv6 forms that reach IPv4 (IPv4-compatible, IPv4-mapped, SIIT, NAT64, 6to4,
 * Teredo) with the metadata address inside.
 */
const SPECIAL_USE_ADDRESSES = [
  '169.254.169.254', // AWS, GCP, Azure, Oracle, DigitalOcean metadata
  '169.254.170.2', // ECS task metadata
  '100.100.100.200', // Alibaba Cloud metadata
  '192.0.0.192', // Oracle Cloud metadata (legacy)
  'fd00:ec2::254', // AWS metadata over IPv6
  'fd20:ce::254', // GCP metadata over IPv6
  ...['0.0.0.1', '10.1.2.3', '100.64.0.1', '127.0.0.1', '172.16.0.1', '192.0.2.1', '192.88.99.1', '192.168.1.1', '198.18.0.1', '198.51.100.1', '203.0.113.1', '224.0.0.1', '240.0.0.1', '255.255.255.255'],
  ...['::', '::1', '::a9fe:a9fe', '::ffff:169.254.169.254', '::ffff:0:a9fe:a9fe', '64:ff9b::a9fe:a9fe', '64:ff9b:1::a9fe:a9fe', '100::1', '2001::a9fe:a9fe', '2001:db8::1', '2002:a9fe:a9fe::1', '3fff::1', 'fe80::1', 'fec0::1', 'ff02::1'],
];
/** Azure's WireServer (host agent, VM extension settings): public-looking, reachable from a VM, never an upstream. */
const AZURE_WIRESERVER = '168.63.129.16';
const PUBLIC_ADDRESSES = ['140.82.112.3', '2606:4700:4700::1111'];

function deploymentOf(objects: readonly K8sObject[], service: ServiceName): Workload {
  const w = workloads(objects).find((x) => x.kind === 'Deployment' && x.podLabels['app.kubernetes.io/component'] === service);
  if (!w) throw new Error(`no Deployment runs ${service}`);
  return w;
}

function envOf(c: Container, name: string): string | undefined {
  return c.env?.find((e) => e.name === name)?.value;
}

function configMapData(objects: readonly K8sObject[], prefix: string): Record<string, string> {
  const cms = byKind(objects, 'ConfigMap').filter((c) => c.metadata.name.startsWith(`${prefix}-`) || c.metadata.name === prefix);
  if (cms.length !== 1) throw new Error(`expected one ConfigMap ${prefix}, found ${cms.length}`);
  return (cms[0].data ?? {}) as Record<string, string>;
}

function routeSamples(path: string, exact: boolean | undefined): string[] {
  return exact ? [path] : [path, `${path}/sample`, `${path}/a/b`];
}

function expectEveryPublicRouteToItsOwner(picks: readonly HttpRoutePick[], what: string, services: readonly K8sObject[]): void {
  const misrouted: string[] = [];
  for (const route of PUBLIC_ROUTES) {
    for (const sample of routeSamples(route.path, route.exact)) {
      const backend = resolvePath(picks, sample);
      if (backend !== `stack-${route.service}`) misrouted.push(`${sample} → ${backend ?? 'nothing'} (owner ${route.service})`);
    }
  }
  expect({ what, misrouted }).toEqual({ what, misrouted: [] });
  // Exactly the public routes: nothing else is exposed.
  const declared = PUBLIC_ROUTES.map((r) => `${r.exact ? 'Exact' : 'Prefix'} ${r.path} stack-${r.service}`).sort();
  expect(picks.map((p) => `${p.kind} ${p.path} ${p.service}`).sort()).toEqual(declared);
  // Each backend is a Service that selects the owner's pods.
  for (const pick of picks) {
    const svc = services.find((s) => s.metadata.name === pick.service);
    expect({ backend: pick.service, exists: !!svc }).toEqual({ backend: pick.service, exists: true });
    const owner = pick.service.replace(/^stack-/, '');
    expect(serviceSelects(svc!, { ...STACK_LABEL, 'app.kubernetes.io/component': owner })).toBe(true);
  }
}

describe.each(OVERLAYS)('k8s/overlays/%s', (overlay: Overlay) => {
  let objects: K8sObject[];
  beforeAll(() => {
    objects = renderOverlay(overlay);
  });

  it('renders, and every object is valid against the Kubernetes 1.34 API schemas (Gateway API v1 for HTTPRoute)', () => {
    const results = validateAgainstSchemas(objects);
    expect(results).toHaveLength(objects.length);
    const errors = results.filter((r) => r.error).map((r) => `${r.kind}/${r.name}: ${r.error}`);
    expect(errors).toEqual([]);
    // Everything lands in one namespace, restricted by Pod Security Admission.
    const ns = byKind(objects, 'Namespace');
    expect(ns.map((n) => n.metadata.labels?.['pod-security.kubernetes.io/enforce'])).toEqual(['restricted']);
    for (const o of objects.filter((x) => x.kind !== 'Namespace')) expect(`${o.kind}/${o.metadata.name} in ${o.metadata.namespace}`).toBe(`${o.kind}/${o.metadata.name} in ${ns[0].metadata.name}`);
  });

  it('has a Deployment, Service and ServiceAccount per service, each running its service from one pinned image', () => {
    const images = new Set<string>();
    for (const service of SERVICE_NAMES) {
      const d = deploymentOf(objects, service);
      expect(d.name).toBe(`stack-${service}`);
      expect(selectorMatches(d.selector, d.podLabels)).toBe(true);
      const [c] = d.pod.containers;
      expect(d.pod.containers).toHaveLength(1);
      expect(envOf(c, 'STACK_SERVICES')).toBe(service);
      expect(c.command).toBeUndefined(); // the image's exec-form CMD: SIGTERM reaches Node
      images.add(c.image);
      const sa = byKind(objects, 'ServiceAccount').find((s) => s.metadata.name === d.pod.serviceAccountName);
      expect({ service, serviceAccount: d.pod.serviceAccountName, exists: !!sa }).toEqual({ service, serviceAccount: `stack-${service}`, exists: true });
      const svc = byKind(objects, 'Service').filter((s) => serviceSelects(s, d.podLabels));
      expect(svc.map((s) => s.metadata.name)).toEqual([`stack-${service}`]);
      const port = specOf<{ ports: { targetPort: string | number }[] }>(svc[0]).ports[0].targetPort;
      expect(c.ports?.some((p) => p.name === port || p.containerPort === port)).toBe(true);
    }
    expect(images.size).toBe(1);
    const [image] = [...images];
    expect(image).toMatch(/^[\w.-]+(\/[\w.-]+)+:(\d+\.\d+\.\d+[\w.-]*)$/); // a release tag, never :latest
  });

  it('runs every container non-root, read-only, without privilege escalation or capabilities, under seccomp RuntimeDefault, with requests, limits and probes', () => {
    const problems: string[] = [];
    for (const w of workloads(objects)) {
      const podSc = w.pod.securityContext ?? {};
      const where = `${w.kind}/${w.name}`;
      if (w.pod.hostNetwork || w.pod.hostPID || w.pod.hostIPC) problems.push(`${where}: host namespaces`);
      if ((w.pod.volumes ?? []).some((v) => v.hostPath)) problems.push(`${where}: hostPath volume`);
      if (w.pod.automountServiceAccountToken !== false) problems.push(`${where}: mounts a service account token`);
      for (const c of [...(w.pod.initContainers ?? []), ...w.pod.containers]) {
        const at = `${where}/${c.name}`;
        const sc = c.securityContext ?? {};
        if (!(sc.runAsNonRoot ?? podSc.runAsNonRoot)) problems.push(`${at}: runAsNonRoot not set`);
        const uid = sc.runAsUser ?? podSc.runAsUser;
        if (uid === undefined || uid === 0) problems.push(`${at}: no non-zero runAsUser`);
        if (sc.allowPrivilegeEscalation !== false) problems.push(`${at}: allowPrivilegeEscalation not false`);
        if (sc.privileged) problems.push(`${at}: privileged`);
        if (sc.readOnlyRootFilesystem !== true) problems.push(`${at}: root filesystem writable`);
        if (!(sc.capabilities?.drop ?? []).includes('ALL') || (sc.capabilities?.add ?? []).length) problems.push(`${at}: capabilities not all dropped`);
        if ((sc.seccompProfile ?? podSc.seccompProfile)?.type !== 'RuntimeDefault') problems.push(`${at}: seccomp not RuntimeDefault`);
        for (const kind of ['requests', 'limits'] as const) {
          const r = c.resources?.[kind] ?? {};
          if (r.cpu === undefined || r.memory === undefined) problems.push(`${at}: no ${kind} for cpu and memory`);
        }
        const { requests, limits } = c.resources ?? {};
        if (requests?.cpu !== undefined && limits?.cpu !== undefined && cpuCores(requests.cpu) > cpuCores(limits.cpu)) problems.push(`${at}: cpu request above limit`);
        if (requests?.memory !== undefined && limits?.memory !== undefined && memoryBytes(requests.memory) > memoryBytes(limits.memory)) problems.push(`${at}: memory request above limit`);
        if (w.kind !== 'Job' && (!c.livenessProbe || !c.readinessProbe)) problems.push(`${at}: no liveness and readiness probes`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('probes /healthz and /readyz, and shuts down within the grace period after the preStop pause', () => {
    const config = configMapData(objects, 'stack-config');
    const shutdownS = Number(config.STACK_SHUTDOWN_TIMEOUT_MS) / 1000;
    expect(shutdownS).toBeGreaterThan(0);
    expect(config.HOST).toBe('0.0.0.0');
    // dev is a throwaway cluster on plain http with well-known secrets, which production refuses.
    expect(config.NODE_ENV).toBe(overlay === 'prod' ? 'production' : 'development');
    for (const service of SERVICE_NAMES) {
      const d = deploymentOf(objects, service);
      const [c] = d.pod.containers;
      expect(c.envFrom?.some((e) => e.configMapRef?.name.startsWith('stack-config'))).toBe(true);
      expect(c.livenessProbe?.httpGet?.path).toBe('/healthz');
      expect(c.readinessProbe?.httpGet?.path).toBe('/readyz');
      const preStop = c.lifecycle?.preStop?.sleep?.seconds ?? 0;
      expect(preStop).toBeGreaterThan(0);
      expect(d.pod.terminationGracePeriodSeconds).toBeGreaterThan(preStop + shutdownS);
      // Spread across zones (and nodes).
      const keys = (d.pod.topologySpreadConstraints ?? []).filter((t) => selectorMatches(t.labelSelector, d.podLabels)).map((t) => t.topologyKey);
      expect(keys).toEqual(expect.arrayContaining(['topology.kubernetes.io/zone', 'kubernetes.io/hostname']));
      // The root filesystem is read-only: /tmp (STACK_DATA_DIR's parent) is an emptyDir.
      const tmp = c.volumeMounts?.find((m) => m.mountPath === '/tmp');
      expect(d.pod.volumes?.find((v) => v.name === tmp?.name)?.emptyDir).toBeDefined();
      expect(config.STACK_DATA_DIR.startsWith('/tmp/')).toBe(true);
      // A rollout never lowers capacity.
      expect(specOf<{ strategy: { rollingUpdate: { maxUnavailable: number } } }>(d.object).strategy.rollingUpdate.maxUnavailable).toBe(0);
    }
  });

  it('routes every public path (PUBLIC_ROUTES) to the Service of the service that owns it, in the Ingress and any HTTPRoute', () => {
    const services = byKind(objects, 'Service');
    const ingresses = byKind(objects, 'Ingress');
    expect(ingresses).toHaveLength(1);
    expectEveryPublicRouteToItsOwner(ingressPaths(ingresses[0]), `Ingress ${overlay}`, services);
    for (const route of byKind(objects, 'HTTPRoute')) expectEveryPublicRouteToItsOwner(httpRoutePaths(route), `HTTPRoute ${overlay}`, services);
    // dev applies to a bare cluster, which has no Gateway API CRDs; prod has both.
    expect(byKind(objects, 'HTTPRoute')).toHaveLength(overlay === 'prod' ? 1 : 0);
    if (overlay === 'prod') {
      expect(specOf<{ tls?: unknown[] }>(ingresses[0]).tls?.length).toBeGreaterThan(0);
      expect(configMapData(objects, 'stack-config').STACK_PUBLIC_URL).toMatch(/^https:\/\//);
    }
  });

  it('autoscales the gateway and the proxy, and gives every Deployment that can have more than one replica a PodDisruptionBudget', () => {
    const hpas = byKind(objects, 'HorizontalPodAutoscaler');
    const scaled = new Map<string, { min: number; max: number }>();
    for (const h of hpas) {
      const spec = specOf<{ scaleTargetRef: { kind: string; name: string }; minReplicas: number; maxReplicas: number }>(h);
      expect(spec.scaleTargetRef.kind).toBe('Deployment');
      scaled.set(spec.scaleTargetRef.name, { min: spec.minReplicas, max: spec.maxReplicas });
    }
    expect([...scaled.keys()].sort()).toEqual(['stack-credential-proxy', 'stack-mcp-gateway']);
    const pdbs = byKind(objects, 'PodDisruptionBudget');
    const missing: string[] = [];
    for (const w of workloads(objects).filter((x) => x.kind === 'Deployment')) {
      const hpa = scaled.get(w.name);
      if (hpa) expect(w.replicas).toBeUndefined(); // the HPA owns the count; apply must not reset it
      const most = Math.max(w.replicas ?? 1, hpa?.max ?? 0);
      if (most > 1 && !pdbs.some((p) => selectorMatches(specOf<{ selector: Parameters<typeof selectorMatches>[0] }>(p).selector, w.podLabels))) missing.push(w.name);
    }
    expect(missing).toEqual([]);
    if (overlay === 'prod') {
      for (const w of workloads(objects).filter((x) => x.kind === 'Deployment')) expect(Math.max(w.replicas ?? 0, scaled.get(w.name)?.min ?? 0)).toBeGreaterThanOrEqual(2);
    }
  });

  it('lets only the ingress controller, the HTTPRoute\'s Gateway (and Prometheus) reach the services, and each service only the engines and internet it needs, never a metadata endpoint', () => {
    // Nothing is allowed by default.
    const denyAll = byKind(objects, 'NetworkPolicy').filter((p) => {
      const s = specOf<{ podSelector: object; policyTypes?: string[]; ingress?: unknown[]; egress?: unknown[] }>(p);
      return Object.keys(s.podSelector).length === 0 && s.policyTypes?.includes('Ingress') && s.policyTypes.includes('Egress') && !s.ingress?.length && !s.egress?.length;
    });
    expect(denyAll).toHaveLength(1);
    const engine = (name: keyof typeof ENGINE_PORTS) => ({ 'stack-engine': name });
    // The ingress controller, Prometheus, and the Gateway each HTTPRoute attaches to.
    const gatewayNamespaces = byKind(objects, 'HTTPRoute').flatMap((r) => specOf<{ parentRefs: { namespace?: string }[] }>(r).parentRefs.map((p) => p.namespace ?? r.metadata.namespace!));
    const callers = [...new Set(['ingress-nginx', 'monitoring', ...gatewayNamespaces])].sort();
    for (const service of SERVICE_NAMES) {
      const labels = deploymentOf(objects, service).podLabels;
      const ingress = effectivePolicy(objects, labels, 'Ingress');
      expect(ingress.isolated).toBe(true);
      const from = ingress.rules.flatMap((r) => r.peers ?? []);
      expect(ingress.rules.some(ruleIsOpenToAll)).toBe(false);
      expect(from.every((p) => !p.ipBlock && !p.podSelector && p.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'])).toBe(true);
      expect({ service, from: [...new Set(from.map((p) => p.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name']))].sort() }).toEqual({ service, from: callers });
      expect(ingress.rules.every((r) => r.ports?.length && r.ports.every((p) => p.port === 8080))).toBe(true);

      const egress = effectivePolicy(objects, labels, 'Egress');
      expect(egress.isolated).toBe(true);
      expect({ service, open: egress.rules.some(ruleIsOpenToAll) }).toEqual({ service, open: false });
      expect({ service, nats: allowsPodPeer(egress.rules, engine('nats'), ENGINE_PORTS.nats), postgres: allowsPodPeer(egress.rules, engine('postgres'), ENGINE_PORTS.postgres) }).toEqual({ service, nats: true, postgres: true });
      expect({ service, redis: allowsPodPeer(egress.rules, engine('redis'), ENGINE_PORTS.redis) }).toEqual({ service, redis: service === 'auth' || service === 'mcp-gateway' });
      // No service reaches another service's pods directly: they talk over NATS.
      for (const other of SERVICE_NAMES) expect(allowsPodPeer(egress.rules, { ...STACK_LABEL, 'app.kubernetes.io/component': other }, 8080)).toBe(false);
      const internet = ipBlockRules(egress.rules);
      // Internet egress reaches nothing the address policy refuses, cloud metadata least of all:
      // the network holds even if the application check is bypassed.
      const special = SPECIAL_USE_ADDRESSES.filter((address) => ipBlocksAllow(internet, address));
      expect({ service, special }).toEqual({ service, special: [] });
      expect({ service, wireServer: ipBlocksAllow(internet, AZURE_WIRESERVER) }).toEqual({ service, wireServer: false });
      if (service === 'credential-proxy') {
        // Any public address, on any port: upstream APIs.
        for (const address of PUBLIC_ADDRESSES) expect({ address, allowed: ipBlocksAllow(internet, address, 8443) }).toEqual({ address, allowed: true });
      } else if (service === 'auth') {
        // Client metadata documents over HTTPS; STACK sends no mail, so no SMTP either.
        for (const address of PUBLIC_ADDRESSES) expect({ address, https: ipBlocksAllow(internet, address, 443) }).toEqual({ address, https: true });
        const ports = internet.flatMap((r) => (r.ports ?? [{ port: 'any' }]).map((p) => p.port));
        expect(ports).toEqual([443]);
      } else {
        expect({ service, internet: internet.length }).toEqual({ service, internet: 0 });
      }
      if (service === 'skill-runner') {
        // NATS, Postgres and DNS: nothing else.
        const peers = egress.rules.flatMap((r) => r.peers ?? []);
        const reached = peers.map((p) => p.podSelector?.matchLabels?.['stack-engine'] ?? p.podSelector?.matchLabels?.['k8s-app']).sort();
        expect(reached).toEqual(['kube-dns', 'nats', 'postgres']);
      }
    }
  });

  it('lets the migrations Job reach Postgres (and DNS) only: it needs neither the bus, the cache nor the internet', () => {
    const job = workloads(objects).find((w) => w.kind === 'Job')!;
    const egress = effectivePolicy(objects, job.podLabels, 'Egress');
    expect(egress.isolated).toBe(true);
    expect(allowsPodPeer(egress.rules, { 'stack-engine': 'postgres' }, ENGINE_PORTS.postgres)).toBe(true);
    const peers = egress.rules.flatMap((r) => r.peers ?? []);
    expect(peers.map((p) => (p.ipBlock ? 'ipBlock' : (p.podSelector?.matchLabels?.['stack-engine'] ?? p.podSelector?.matchLabels?.['k8s-app']))).sort()).toEqual(['kube-dns', 'postgres']);
  });

  it('gives every STACK container an environment that passes start-up validation, as production in prod', () => {
    const config = configMapData(objects, 'stack-config');
    const secret = byKind(objects, 'Secret').find((s) => s.metadata.name.startsWith('stack-secrets'));
    // prod's Secret comes from the platform's store: stand in with values of the documented shape.
    const standIn: Record<string, string> = {
      DATABASE_URL: 'postgres://stack:pw@stack-db-rw:5432/stack?sslmode=verify-full',
      REDIS_URL: 'rediss://:pw@redis.redis:6379',
      STACK_MASTER_KEYS: `k1:${randomBytes(32).toString('base64')}`,
      STACK_INTERNAL_SECRET: randomBytes(48).toString('base64'),
    };
    const secretValue = (key: string): string =>
      secret ? Buffer.from(String((secret.data as Record<string, string>)[key]), 'base64').toString('utf8') : (standIn[key] ?? `nats://${key.slice('NATS_URL_'.length).toLowerCase().replace(/_/g, '-')}:pw@nats.nats:4222`);
    const stackWorkloads = workloads(objects).filter((w) => w.podLabels['app.kubernetes.io/name'] === 'stack');
    expect(stackWorkloads.length).toBe(SERVICE_NAMES.length + 1);
    for (const w of stackWorkloads) {
      const [c] = w.pod.containers;
      const env: Record<string, string> = { ...config };
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.secretKeyRef;
        if (e.value !== undefined) env[e.name] = e.value;
        else if (e.valueFrom?.fieldRef) env[e.name] = `${w.name}-pod`;
        else if (ref && !ref.optional) env[e.name] = secretValue(ref.key);
      }
      let problems: string[] = [];
      try {
        expect(loadConfig(env).nodeEnv).toBe(overlay === 'prod' ? 'production' : 'development');
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        problems = err.problems.map((p) => `${p.variable}: ${p.message}`);
      }
      expect({ workload: w.name, problems }).toEqual({ workload: w.name, problems: [] });
    }
  });

  it('migrates once per release in a Job, under the advisory lock, while the services wait for their schema', () => {
    const jobs = workloads(objects).filter((w) => w.kind === 'Job');
    expect(jobs.map((j) => j.name)).toEqual(['stack-migrate']);
    const [c] = jobs[0].pod.containers;
    expect(c.args).toEqual(['node', 'dist/apps/stack/src/main.js', 'migrate']);
    expect(envOf(c, 'STACK_SERVICES')).toBe('all');
    expect(c.image).toBe(deploymentOf(objects, 'auth').pod.containers[0].image);
    expect(configMapData(objects, 'stack-config').STACK_MIGRATE_ON_START).toBe('false');
    expect(c.env?.some((e) => e.name === 'DATABASE_URL' && e.valueFrom?.secretKeyRef)).toBe(true);
  });

  it('takes secrets from one Secret by key, never from the ConfigMap', () => {
    const config = configMapData(objects, 'stack-config');
    for (const name of ['DATABASE_URL', 'NATS_URL', 'REDIS_URL', 'STACK_MASTER_KEYS', 'STACK_INTERNAL_SECRET']) expect(config[name]).toBeUndefined();
    // Required keys; optional ones (the bootstrap owner, upstream OAuth clients) may be absent.
    const refs = new Set<string>();
    for (const w of workloads(objects).filter((x) => x.podLabels['app.kubernetes.io/name'] === 'stack')) {
      for (const c of w.pod.containers) {
        for (const e of c.env ?? []) {
          const ref = e.valueFrom?.secretKeyRef;
          if (ref && !ref.optional) refs.add(`${ref.name.replace(/-[a-z0-9]{10}$/, '')} ${ref.key}`);
        }
      }
    }
    expect(refs.size).toBeGreaterThanOrEqual(4 + SERVICE_NAMES.length);
    if (overlay === 'dev') {
      const secret = byKind(objects, 'Secret').find((s) => s.metadata.name.startsWith('stack-secrets'));
      for (const ref of refs) expect(Object.keys((secret?.data ?? {}) as object)).toContain(ref.split(' ')[1]);
    } else {
      // prod creates none: the documented ExternalSecret provides every key the pods read.
      expect(byKind(objects, 'Secret')).toEqual([]);
      const external = parseYamlDocuments(readFileSync(join(repoRoot(), 'deploy/external-secrets.yaml'), 'utf8'), 'external-secrets.yaml')[0];
      expect(validateAgainstSchemas([external])).toEqual([{ kind: 'ExternalSecret', name: 'stack-secrets' }]);
      const keys = specOf<{ target: { name: string }; data: { secretKey: string }[] }>(external);
      for (const ref of refs) expect(`${keys.target.name} ${keys.data.map((d) => d.secretKey).join(',')}`).toContain(ref.split(' ')[1]);
      expect([...refs].every((r) => r.startsWith(`${keys.target.name} `))).toBe(true);
    }
  });
});

describe('internet egress samples', () => {
  it('are what the address policy refuses, and the policy reader judges ipBlocks as a CNI does', () => {
    expect(SPECIAL_USE_ADDRESSES.filter((a) => classifyAddress(a) === 'public')).toEqual([]);
    expect(PUBLIC_ADDRESSES.map(classifyAddress)).toEqual(['public', 'public']);
    const rules = [{ peers: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['169.254.0.0/16'] } }], ports: [{ protocol: 'TCP', port: 443 }] }];
    expect(ipBlocksAllow(rules, '140.82.112.3', 443)).toBe(true);
    expect(ipBlocksAllow(rules, '140.82.112.3', 25)).toBe(false);
    expect(ipBlocksAllow(rules, '169.254.169.254')).toBe(false);
    expect(ipBlocksAllow(rules, '::ffff:169.254.169.254')).toBe(false);
    expect(ipBlocksAllow(rules, '::ffff:140.82.112.3')).toBe(true);
    expect(ipBlocksAllow(rules, '2606:4700:4700::1111')).toBe(false); // no IPv6 block
  });
});

describe('k8s/overlays/prod TLS', () => {
  it('makes every STACK container trust the platform CA (Secret stack-ca) for TLS to NATS, Postgres and Redis', () => {
    const objects = renderOverlay('prod');
    const stackPods = workloads(objects).filter((w) => w.podLabels['app.kubernetes.io/name'] === 'stack');
    expect(stackPods.length).toBe(SERVICE_NAMES.length + 1);
    for (const w of stackPods) {
      const [c] = w.pod.containers;
      const caFile = envOf(c, 'NODE_EXTRA_CA_CERTS');
      expect({ workload: w.name, caFile }).toEqual({ workload: w.name, caFile: '/etc/stack/ca/ca.crt' });
      const mount = c.volumeMounts?.find((m) => caFile!.startsWith(`${m.mountPath}/`));
      const volume = w.pod.volumes?.find((v) => v.name === mount?.name);
      expect({ workload: w.name, secret: volume?.secret?.secretName }).toEqual({ workload: w.name, secret: 'stack-ca' });
    }
  });
});

describe('engines', () => {
  it('dev brings single-replica NATS (JetStream, max_payload 1 MiB), Postgres and Redis StatefulSets, the services using their own NATS users', () => {
    const objects = renderOverlay('dev');
    const sts = workloads(objects).filter((w) => w.kind === 'StatefulSet');
    expect(sts.map((s) => s.podLabels['stack-engine']).sort()).toEqual(['nats', 'postgres', 'redis']);
    for (const s of sts) expect(s.replicas).toBe(1);
    const natsConfig = byKind(objects, 'ConfigMap').find((c) => c.metadata.name.startsWith('stack-nats-config'))!;
    const conf = (natsConfig.data as Record<string, string>)['nats.conf'];
    expect(conf).toMatch(/^max_payload: 1048576$/m);
    // The bus keeps every payload (plus headers) under MAX_BUS_PAYLOAD_BYTES: it must fit.
    expect(Number(/^max_payload: (\d+)$/m.exec(conf)?.[1])).toBeGreaterThan(MAX_BUS_PAYLOAD_BYTES);
    expect(conf).toMatch(/^jetstream \{/m);
    expect(conf).toMatch(/^include nats-auth\.conf$/m);
    expect(Object.keys(natsConfig.data as object)).toContain('nats-auth.conf');
    expect(readFileSync(join(repoRoot(), DEV_NATS_CONF), 'utf8')).toBe(conf);
    // Each service connects as its own user with the password NATS has for it.
    const secret = byKind(objects, 'Secret').find((s) => s.metadata.name.startsWith('stack-secrets'))!;
    const users = byKind(objects, 'Secret').find((s) => s.metadata.name.startsWith('stack-nats-users'))!;
    const decode = (v: unknown) => Buffer.from(String(v), 'base64').toString('utf8');
    for (const service of SERVICE_NAMES) {
      const key = `NATS_URL_${service.toUpperCase().replace(/-/g, '_')}`;
      const url = new URL(decode((secret.data as Record<string, string>)[key]));
      expect([url.username, url.password]).toEqual([service, decode((users.data as Record<string, string>)[service])]);
      const c = deploymentOf(objects, service).pod.containers[0];
      expect(c.env?.find((e) => e.name === 'NATS_URL')?.valueFrom?.secretKeyRef?.key).toBe(key);
    }
  });

  it('prod runs none itself: it references a CloudNativePG Cluster and the NATS chart (3-node JetStream cluster, TLS, max_payload 1 MiB)', () => {
    const objects = renderOverlay('prod');
    expect(workloads(objects).filter((w) => w.kind === 'StatefulSet')).toEqual([]);
    const values = readProdNatsValues();
    expect(values.config.cluster).toEqual({ enabled: true, replicas: 3 });
    expect(values.config.jetstream.enabled).toBe(true);
    expect(values.config.nats.tls.enabled).toBe(true);
    expect(values.config.merge.max_payload).toBe(1048576);
    expect(values.config.merge.max_payload).toBeGreaterThan(MAX_BUS_PAYLOAD_BYTES);
    const cnpg = parseYamlDocuments(readFileSync(join(repoRoot(), 'deploy/postgres/cluster.yaml'), 'utf8'), 'cluster.yaml');
    const cluster = cnpg.find((o) => o.kind === 'Cluster')!;
    expect(cluster.apiVersion).toBe('postgresql.cnpg.io/v1');
    const spec = specOf<{ instances: number; inheritedMetadata: { labels: Record<string, string> }; backup?: unknown }>(cluster);
    expect(spec.instances).toBeGreaterThanOrEqual(3);
    expect(spec.inheritedMetadata.labels['stack-engine']).toBe('postgres');
    expect(spec.backup).toBeDefined();
    expect((readRepoYaml('deploy/nats/values.yaml') as { podTemplate: { merge: { metadata: { labels: Record<string, string> } } } }).podTemplate.merge.metadata.labels['stack-engine']).toBe('nats');
  });

  it('gives each service a NATS user holding only what it uses, in dev and in prod, derived from the bus contracts', () => {
    expect(checkNatsUsers(readDevNatsUsers())).toEqual([]);
    expect(checkNatsUsers(readProdNatsValues().config.merge.authorization.users)).toEqual([]);
    // The two files hold the same permissions.
    const strip = (users: ReturnType<typeof readDevNatsUsers>) => users.map((u) => ({ user: u.user, permissions: u.permissions }));
    expect(strip(readProdNatsValues().config.merge.authorization.users)).toEqual(strip(readDevNatsUsers()));
  });

  it('lets each service publish the events its code publishes, no more: the check\'s table follows the code', () => {
    for (const service of SERVICE_NAMES) {
      const name = (events: readonly { entity: string; verb: string }[]) => events.map((e) => `${e.entity}.${e.verb}`).sort();
      expect({ service, emits: name(SERVICE_BUS_USE[service].emits) }).toEqual({ service, emits: name(eventsPublishedInCode(service)) });
    }
  });

  it('the permission check itself catches a user allowed too much', () => {
    const users = readDevNatsUsers();
    const runner = users.find((u) => u.user === 'skill-runner')!;
    runner.permissions.subscribe!.allow = [...(runner.permissions.subscribe!.allow ?? []), 'stack.v1.passport.*'];
    expect(checkNatsUsers(users).map((p) => p.user)).toContain('skill-runner');
  });

  it('the permission check refuses the wide users these files once held: replies, the JetStream API and every event open to all', () => {
    const wide = (service: ServiceName): NatsUser => ({
      user: service,
      password: `$NATS_PASSWORD_${service.toUpperCase().replace(/-/g, '_')}`,
      permissions: {
        publish: { allow: [...SERVICE_NAMES.map((s) => `stack.v1.${s}.*`), 'stack.v1.events.>', '$JS.API.>', '$JS.ACK.>'] },
        subscribe: { allow: [`stack.v1.${service}.*`, '_INBOX.>'] },
        allow_responses: true,
      },
    });
    const problems = checkNatsUsers(SERVICE_NAMES.map(wide))
      .filter((p) => p.user === 'skill-runner')
      .map((p) => p.problem);
    expect(problems).toEqual(
      expect.arrayContaining([
        "may read the shared _INBOX (every client's default replies)",
        'may call $JS.API.STREAM.PURGE.STACK_AUDIT',
        'may call $JS.API.STREAM.DELETE.STACK_REVOCATIONS',
        'may create consumer audit-ingest on STACK_AUDIT',
        'may publish stack.v1.events.revocation.recorded, which it does not emit',
        'may publish stack.v1.events.audit_checkpoint.signed, which it does not emit',
        'may create STACK_AUDIT',
      ]),
    );
  });
});
