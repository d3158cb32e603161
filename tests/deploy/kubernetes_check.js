#!/usr/bin/env node
// tests/deploy/kubernetes_check.js: validates deploy/kubernetes/ offline.
//
// It renders each kustomization (deploy/kubernetes and every overlay) with
// the subset of kustomize the files use (resources, namespace, labels,
// images, JSON 6902 patches; any other field is an error, so nothing is
// silently skipped), then
//   1. validates every object against the Kubernetes OpenAPI schema of its
//      kind (npm kubernetes-models, generated from Kubernetes' OpenAPI
//      spec) or of the Prometheus Operator's CRDs
//      (@kubernetes-models/prometheus-operator): types, enums, required
//      fields. (Like `kubectl apply --validate` without a server it cannot
//      tell an unknown field);
//   2. type-checks every object with TypeScript against kubernetes-models'
//      interfaces (IDaemonSet, ...): an object literal with a field its type
//      does not have is an error (TS2353), so a misspelt field anywhere
//      fails, as `kubectl apply` with strict field validation would;
//   3. checks what docs/DEPLOY.md promises: the DaemonSet's hugepage
//      requests equal its limits, fit in the node reservation §1 shows,
//      and match its pools' backing, memory is
//      requested, CPU and memory limited; the data directory is an emptyDir
//      of medium HugePages; gRPC probes on the --listen port; a non-root,
//      read-only, unprivileged container with the Dockerfile's uid and
//      hugetlbfs gid; the Service is internalTrafficPolicy: Local and
//      selects the pods; the ServiceMonitor selects the Service's metrics
//      port; the PrometheusRule equals deploy/prometheus's rules;
//   4. runs the real groove-volumed with each DaemonSet's args (made local:
//      tests/deploy/server_args.js): it must start and stop cleanly;
//   5. with --self-test, applies known mistakes to the rendered objects and
//      requires each to be reported (and a misspelt flag to be refused by
//      the server).
//
// Usage: node kubernetes_check.js --source DIR --tools DIR --server BIN
//        [--self-test]
'use strict';

const childProcess = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const {createRequire} = require('module');
const {startsAndStops} = require('./server_args');

function parseArgs(argv) {
  const args = {selfTest: false};
  for (let i = 0; i < argv.length; ++i) {
    if (argv[i] === '--source') args.source = argv[++i];
    else if (argv[i] === '--tools') args.tools = argv[++i];
    else if (argv[i] === '--server') args.server = argv[++i];
    else if (argv[i] === '--self-test') args.selfTest = true;
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!args.source || !args.tools || !args.server) {
    throw new Error('--source, --tools and --server are required');
  }
  return args;
}

const clone = (v) => JSON.parse(JSON.stringify(v));

// ---- rendering ----------------------------------------------------------------

const KUSTOMIZATION_FIELDS = new Set(
    ['apiVersion', 'kind', 'namespace', 'labels', 'resources', 'images', 'patches']);

// JSON pointer (RFC 6901) -> parent object and key.
function pointer(doc, p) {
  const parts = p.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  let parent = doc;
  for (const part of parts.slice(0, -1)) {
    if (parent === undefined || parent === null) return {};
    parent = parent[Array.isArray(parent) ? Number(part) : part];
  }
  return {parent, key: parts[parts.length - 1]};
}

function applyJsonPatch(doc, ops, where) {
  for (const op of ops) {
    const {parent, key} = pointer(doc, op.path);
    if (parent === undefined || parent === null || typeof parent !== 'object') {
      throw new Error(`${where}: ${op.op} ${op.path}: no such parent`);
    }
    const k = Array.isArray(parent) ? (key === '-' ? parent.length : Number(key)) : key;
    if (op.op === 'add') {
      if (Array.isArray(parent)) parent.splice(k, 0, op.value);
      else parent[k] = op.value;
    } else if (op.op === 'replace' || op.op === 'remove') {
      if (!(k in parent)) throw new Error(`${where}: ${op.op} ${op.path}: no such field`);
      if (op.op === 'remove') {
        if (Array.isArray(parent)) parent.splice(k, 1);
        else delete parent[k];
      } else {
        parent[k] = op.value;
      }
    } else {
      throw new Error(`${where}: unsupported patch op ${op.op}`);
    }
  }
}

// render(dir): the objects of the kustomization in dir, and the files it
// uses (to find files nobody references).
function render(dir, YAML, used) {
  const kfile = path.join(dir, 'kustomization.yaml');
  const k = YAML.parse(fs.readFileSync(kfile, 'utf8'));
  used.add(kfile);
  for (const field of Object.keys(k)) {
    if (!KUSTOMIZATION_FIELDS.has(field)) {
      throw new Error(`${kfile}: field '${field}' is not understood by this check; extend it`);
    }
  }
  let objects = [];
  for (const r of k.resources || []) {
    const p = path.join(dir, r);
    if (!fs.existsSync(p)) throw new Error(`${kfile}: resource ${r} does not exist`);
    if (fs.statSync(p).isDirectory()) {
      objects = objects.concat(render(p, YAML, used));
    } else {
      used.add(p);
      for (const d of YAML.parseAllDocuments(fs.readFileSync(p, 'utf8'))) {
        if (d.errors.length) throw new Error(`${p}: ${d.errors[0].message}`);
        const o = d.toJS();
        if (o) objects.push(Object.assign(o, {__file: path.relative(dir, p)}));
      }
    }
  }
  for (const patch of k.patches || []) {
    const p = path.join(dir, patch.path);
    used.add(p);
    const ops = YAML.parse(fs.readFileSync(p, 'utf8'));
    const t = patch.target || {};
    const targets = objects.filter((o) =>
      (!t.kind || o.kind === t.kind) && (!t.name || o.metadata.name === t.name) &&
      (!t.group || o.apiVersion.startsWith(t.group + '/')));
    if (targets.length === 0) throw new Error(`${kfile}: patch ${patch.path} matches no object`);
    if (!Array.isArray(ops)) throw new Error(`${p}: only JSON 6902 patches (a list of ops) are understood`);
    for (const o of targets) applyJsonPatch(o, ops, p);
  }
  for (const o of objects) {
    if (k.namespace && o.kind !== 'Namespace') o.metadata.namespace = k.namespace;
    for (const l of k.labels || []) {
      o.metadata.labels = Object.assign({}, o.metadata.labels, l.pairs);
    }
    for (const img of k.images || []) {
      const spec = o.spec && o.spec.template && o.spec.template.spec;
      for (const c of (spec && spec.containers) || []) {
        if (c.image === img.name) c.image = `${img.newName || img.name}:${img.newTag}`;
      }
    }
  }
  return objects;
}

// ---- checks -------------------------------------------------------------------

// The kinds this deployment uses: the module of each one's model class (a
// validate() with the OpenAPI schema) and TypeScript interface (I + class).
const KINDS = {
  'v1/Namespace': ['kubernetes-models/v1/Namespace', 'Namespace'],
  'v1/Service': ['kubernetes-models/v1/Service', 'Service'],
  'apps/v1/DaemonSet': ['kubernetes-models/apps/v1/DaemonSet', 'DaemonSet'],
  'monitoring.coreos.com/v1/ServiceMonitor': [
    '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor',
    'ServiceMonitor'],
  'monitoring.coreos.com/v1/PrometheusRule': [
    '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule',
    'PrometheusRule'],
};

function loadModels(tools) {
  const models = {};
  for (const [key, [module, name]] of Object.entries(KINDS)) models[key] = tools(module)[name];
  return models;
}

// typeCheck(entries, toolsDir): type-checks each {label, object} against
// its kind's interface in one tsc run; returns label -> [findings].
function typeCheck(entries, toolsDir) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'groove-k8s-types-'));
  const lines = [];
  const imports = new Set();
  const lineOf = new Map();
  for (const [i, e] of entries.entries()) {
    const kind = KINDS[`${e.object.apiVersion}/${e.object.kind}`];
    if (!kind) continue;  // reported by check()
    imports.add(`import { I${kind[1]} } from "${kind[0]}";`);
    const body = clone(e.object);
    delete body.__file;
    lineOf.set(lines.length, e.label);
    lines.push(`export const o${i}: I${kind[1]} =`);
    for (const l of JSON.stringify(body, null, 1).split('\n')) {
      lineOf.set(lines.length, e.label);
      lines.push(l);
    }
    lines.push(';');
  }
  const header = [...imports];
  fs.writeFileSync(path.join(dir, 'manifests.ts'), header.concat(lines).join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      noEmit: true, strict: true, skipLibCheck: true, types: [],
      baseUrl: path.join(toolsDir, 'node_modules'),
      moduleResolution: 'node', module: 'commonjs', target: 'es2019',
    },
    files: ['manifests.ts'],
  }));
  const tsc = path.join(toolsDir, 'node_modules/typescript/bin/tsc');
  const r = childProcess.spawnSync(process.execPath, [tsc, '-p', dir], {encoding: 'utf8'});
  fs.rmSync(dir, {recursive: true, force: true});
  const findings = new Map(entries.map((e) => [e.label, []]));
  const out = `${r.stdout || ''}${r.stderr || ''}`;
  for (const line of out.split('\n')) {
    const m = /manifests\.ts\((\d+),\d+\): (error .*)$/.exec(line);
    if (m) {
      const label = lineOf.get(Number(m[1]) - 1 - header.length);
      (findings.get(label) || findings.get(entries[0].label)).push(`types: ${m[2]}`);
    }
  }
  if (r.status !== 0 && ![...findings.values()].some((f) => f.length)) {
    throw new Error(`tsc failed without a finding: ${r.error || ''}${out}`);
  }
  return findings;
}

const flagValue = (args, flag) => {
  const a = (args || []).find((x) => x.startsWith(flag + '='));
  return a === undefined ? undefined : a.slice(flag.length + 1);
};
const portOf = (address) => address && Number(address.split(':').pop());
const subset = (small, big) => Object.entries(small || {}).every(([k, v]) => (big || {})[k] === v);

// Bytes of a Kubernetes quantity with a binary suffix ("4Gi"), or NaN.
function quantityBytes(q) {
  const m = /^(\d+)(Ki|Mi|Gi|Ti)?$/.exec(String(q));
  if (!m) return NaN;
  return Number(m[1]) * 2 ** ({Ki: 10, Mi: 20, Gi: 30, Ti: 40}[m[2]] || 0);
}
const HUGEPAGE_BYTES = {'hugepages-2Mi': 2 ** 21, 'hugepages-1Gi': 2 ** 30};

// documentedReservations(text): the hugepage reservations docs/DEPLOY.md §1
// tells the operator to make, as [{pageBytes, count, where}]: the run-time
// `echo N > .../hugepages-SIZEkB/nr_hugepages`, the sysctl (2 MiB pages)
// and the kernel command line's `hugepagesz=S hugepages=N` pairs. The
// kubelet offers a node's reservation as its hugepage resource, so a pod
// requesting more than the documented reservation stays Pending.
function documentedReservations(text) {
  const found = [];
  const echo = /echo\s+(\d+)\s*>\s*\/sys\/kernel\/mm\/hugepages\/hugepages-(\d+)kB\/nr_hugepages/g;
  for (const m of text.matchAll(echo)) {
    found.push({pageBytes: Number(m[2]) * 1024, count: Number(m[1]), where: m[0]});
  }
  for (const m of text.matchAll(/vm\.nr_hugepages\s*=\s*(\d+)/g)) {
    found.push({pageBytes: 2 ** 21, count: Number(m[1]), where: m[0]});
  }
  for (const m of text.matchAll(/hugepagesz=(2M|1G)\s+hugepages=(\d+)/g)) {
    found.push({pageBytes: m[1] === '2M' ? 2 ** 21 : 2 ** 30, count: Number(m[2]), where: m[0]});
  }
  return found;
}

function check(objects, ctx) {
  const errors = [];
  const err = (m) => errors.push(m);
  for (const o of objects) {
    const key = `${o.apiVersion}/${o.kind}`;
    const Model = ctx.models[key];
    const name = `${o.kind || '?'} ${(o.metadata || {}).name} (${o.__file})`;
    if (!Model) {
      err(`${name}: ${key} is not a kind this deployment uses (validators: ${Object.keys(ctx.models).join(', ')})`);
      continue;
    }
    const body = clone(o);
    delete body.__file;
    try {
      new Model(body).validate();
    } catch (e) {
      err(`${name}: schema: ${e.message}`);
    }
  }
  const byKind = (kind) => objects.filter((o) => o.kind === kind);
  const ns = byKind('Namespace');
  for (const o of objects) {
    if (o.kind !== 'Namespace' && (!ns.length || o.metadata.namespace !== ns[0].metadata.name)) {
      err(`${o.kind} ${o.metadata.name}: namespace ${o.metadata.namespace} is not the Namespace the kustomization creates`);
    }
  }

  const ds = byKind('DaemonSet');
  if (ds.length !== 1) {
    err(`want one DaemonSet, found ${ds.length}`);
    return errors;
  }
  const pod = ds[0].spec.template.spec || {};
  const c = (pod.containers || []).find((x) => x.name === 'groove-volumed');
  if (!c) {
    err('DaemonSet: no container named groove-volumed');
    return errors;
  }
  const grpcPort = portOf(flagValue(c.args, '--listen'));
  const metricsPort = portOf(flagValue(c.args, '--metrics-listen'));
  const dataDir = flagValue(c.args, '--data-dir');
  if (!grpcPort || !metricsPort || !dataDir) {
    err(`DaemonSet: args lack --listen, --metrics-listen or --data-dir: ${JSON.stringify(c.args)}`);
  }
  const ports = new Map((c.ports || []).map((p) => [p.name, p.containerPort]));
  if (ports.get('grpc') !== grpcPort) err(`DaemonSet: container port grpc is not the --listen port ${grpcPort}`);
  if (ports.get('metrics') !== metricsPort) err(`DaemonSet: container port metrics is not the --metrics-listen port ${metricsPort}`);
  for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
    const p = c[probe];
    if (!p || !p.grpc || p.grpc.port !== grpcPort) {
      err(`DaemonSet: ${probe} is not a gRPC health probe on port ${grpcPort}: ${JSON.stringify(p)}`);
    }
  }
  if (c.readinessProbe && c.readinessProbe.grpc &&
      c.readinessProbe.grpc.service !== 'groove.v1.VolumePoolService') {
    err('DaemonSet: readinessProbe does not check the groove.v1.VolumePoolService health');
  }

  // Resources.
  const res = c.resources || {};
  const req = res.requests || {};
  const lim = res.limits || {};
  const hugeKeys = [...new Set(Object.keys(req).concat(Object.keys(lim)))]
                       .filter((k) => k.startsWith('hugepages-'));
  if (hugeKeys.length === 0) err('DaemonSet: requests no hugepages-2Mi/hugepages-1Gi');
  for (const k of hugeKeys) {
    if (req[k] === undefined || req[k] !== lim[k]) {
      err(`DaemonSet: ${k} request ${req[k]} != limit ${lim[k]} (Kubernetes requires them equal)`);
    }
  }
  if (!req.memory) err('DaemonSet: no memory request (Kubernetes requires one with hugepages)');
  if (!lim.memory || !lim.cpu) err('DaemonSet: no cpu and memory limits');
  const backings = {'hugepages-2Mi': 'huge', 'hugepages-1Gi': 'gigantic'};
  for (const pool of (c.args || []).filter((a) => a.startsWith('--pool='))) {
    const backing = /backing=([a-z]+)/.exec(pool);
    const want = hugeKeys.map((k) => backings[k]);
    if (!backing || !want.includes(backing[1])) {
      err(`DaemonSet: ${pool}: backing must be ${want.join(' or ')} for the pod's ${hugeKeys.join(', ')}`);
    }
  }

  // The node reservation docs/DEPLOY.md §1 has the operator make must hold
  // what the pod requests, or the kubelet never offers it and the pod
  // stays Pending.
  for (const k of hugeKeys) {
    const want = quantityBytes(req[k]);
    const made = ctx.reservations.filter((r) => r.pageBytes === HUGEPAGE_BYTES[k]);
    if (made.length === 0) err(`DaemonSet: docs/DEPLOY.md §1 shows no reservation of the pages of ${k}`);
    for (const r of made) {
      if (!(r.count * r.pageBytes >= want)) {
        err(`DaemonSet: ${k} request ${req[k]} exceeds the node reservation docs/DEPLOY.md §1 ` +
            `shows (\`${r.where}\`: ${r.count * r.pageBytes / 2 ** 20} MiB): the pod would stay Pending`);
      }
    }
  }

  // The data directory.
  const mount = (c.volumeMounts || []).find((m) => m.mountPath === dataDir);
  const vol = mount && (pod.volumes || []).find((v) => v.name === mount.name);
  if (!vol || !vol.emptyDir || !/^HugePages(-2Mi|-1Gi)?$/.test(vol.emptyDir.medium || '')) {
    err(`DaemonSet: --data-dir ${dataDir} is not an emptyDir with medium HugePages: ${JSON.stringify(vol)}`);
  }
  if (mount && mount.readOnly) err('DaemonSet: the data directory is mounted read-only');

  // Security.
  const psc = pod.securityContext || {};
  const csc = c.securityContext || {};
  if (psc.runAsNonRoot !== true && csc.runAsNonRoot !== true) err('DaemonSet: runAsNonRoot is not true');
  if (csc.allowPrivilegeEscalation !== false) err('DaemonSet: allowPrivilegeEscalation is not false');
  if (csc.readOnlyRootFilesystem !== true) err('DaemonSet: readOnlyRootFilesystem is not true');
  if (csc.privileged) err('DaemonSet: privileged');
  if (!((csc.capabilities || {}).drop || []).includes('ALL')) err('DaemonSet: capabilities do not drop ALL');
  if ((csc.capabilities || {}).add) err('DaemonSet: adds capabilities');
  if (psc.runAsUser !== ctx.image.uid) err(`DaemonSet: runAsUser ${psc.runAsUser} is not the image's uid ${ctx.image.uid}`);
  if (!(psc.supplementalGroups || []).includes(ctx.image.hugetlbfsGid)) {
    err(`DaemonSet: supplementalGroups lack the image's hugetlbfs gid ${ctx.image.hugetlbfsGid}`);
  }
  const deadline = /^(\d+)s$/.exec(flagValue(c.args, '--shutdown-deadline') || '30s');
  const grace = /^(\d+)s$/.exec(flagValue(c.args, '--drain-grace') || '0s');
  if (!deadline || !grace ||
      !(pod.terminationGracePeriodSeconds > Number(deadline[1]) + Number(grace[1]))) {
    err('DaemonSet: terminationGracePeriodSeconds does not exceed --drain-grace + --shutdown-deadline');
  }

  // Service and ServiceMonitor.
  const svc = byKind('Service');
  if (svc.length !== 1) {
    err(`want one Service, found ${svc.length}`);
    return errors;
  }
  const s = svc[0];
  if (s.spec.internalTrafficPolicy !== 'Local') err('Service: internalTrafficPolicy is not Local');
  if (!s.spec.selector || !subset(s.spec.selector, ds[0].spec.template.metadata.labels)) {
    err('Service: its selector does not select the DaemonSet\'s pods');
  }
  for (const p of s.spec.ports || []) {
    if (typeof p.targetPort === 'string' ? !ports.has(p.targetPort)
                                         : ![...ports.values()].includes(p.targetPort || p.port)) {
      err(`Service: port ${p.name} targets ${p.targetPort}, which the container does not have`);
    }
  }
  const svcPorts = new Map((s.spec.ports || []).map((p) => [p.name, p]));
  for (const sm of byKind('ServiceMonitor')) {
    if (!subset(sm.spec.selector.matchLabels, s.metadata.labels)) {
      err('ServiceMonitor: its selector does not select the Service');
    }
    for (const e of sm.spec.endpoints || []) {
      const p = svcPorts.get(e.port);
      if (!p || (p.targetPort !== 'metrics' && p.targetPort !== metricsPort)) {
        err(`ServiceMonitor: endpoint port ${e.port} is not the Service's metrics port`);
      }
    }
  }
  if (byKind('ServiceMonitor').length !== 1) err('want one ServiceMonitor');

  const rules = byKind('PrometheusRule');
  if (rules.length !== 1) {
    err('want one PrometheusRule');
  } else if (JSON.stringify(rules[0].spec.groups) !== JSON.stringify(ctx.rules.groups)) {
    err('PrometheusRule: spec.groups differ from deploy/prometheus/groove-volumed.rules.yml ' +
        '(run script/sync-prometheusrule)');
  }
  return errors;
}

// Known mistakes on the rendered base, and a fragment of the finding each
// must produce.
const find = (kind) => (objs) => objs.find((o) => o.kind === kind);
const container = (objs) => find('DaemonSet')(objs).spec.template.spec.containers[0];
const MISTAKES = [
  ['probe port as a string (schema)',
   (o) => { container(o).livenessProbe.grpc.port = 'grpc'; }, 'livenessProbe/grpc/port must be integer'],
  ['DaemonSet without selector (schema)',
   (o) => { delete find('DaemonSet')(o).spec.selector; }, 'spec must have required property selector'],
  ['ServiceMonitor interval as a number (schema)',
   (o) => { find('ServiceMonitor')(o).spec.endpoints[0].interval = 15; }, 'interval must be string'],
  ['unknown internalTrafficPolicy value (schema)',
   (o) => { find('Service')(o).spec.internalTrafficPolicy = 'Node'; },
   'internalTrafficPolicy must be equal to one of the allowed values'],
  ['a misspelt kind', (o) => { find('Namespace')(o).kind = 'Namespce'; }, 'is not a kind this deployment uses'],
  ['hugepage limit != request',
   (o) => { container(o).resources.limits['hugepages-2Mi'] = '2Gi'; }, 'hugepages-2Mi request 4Gi != limit 2Gi'],
  ['no memory request', (o) => { delete container(o).resources.requests.memory; }, 'no memory request'],
  ['more hugepages than the documented node reservation',
   (o) => {
     container(o).resources.requests['hugepages-2Mi'] = '64Gi';
     container(o).resources.limits['hugepages-2Mi'] = '64Gi';
   },
   'hugepages-2Mi request 64Gi exceeds the node reservation'],
  ['backing that does not match the pages',
   (o) => { container(o).args[3] = container(o).args[3].replace('backing=huge', 'backing=gigantic'); },
   'backing must be huge'],
  ['data dir on tmpfs',
   (o) => { find('DaemonSet')(o).spec.template.spec.volumes[0].emptyDir.medium = 'Memory'; },
   'is not an emptyDir with medium HugePages'],
  ['HTTP liveness probe',
   (o) => { container(o).livenessProbe = {httpGet: {port: 9464, path: '/metrics'}}; },
   'livenessProbe is not a gRPC health probe'],
  ['probe on the metrics port',
   (o) => { container(o).readinessProbe.grpc.port = 9464; }, 'readinessProbe is not a gRPC health probe'],
  ['cluster-wide traffic policy',
   (o) => { find('Service')(o).spec.internalTrafficPolicy = 'Cluster'; }, 'internalTrafficPolicy is not Local'],
  ['writable root filesystem',
   (o) => { container(o).securityContext.readOnlyRootFilesystem = false; }, 'readOnlyRootFilesystem is not true'],
  ['privilege escalation',
   (o) => { delete container(o).securityContext.allowPrivilegeEscalation; }, 'allowPrivilegeEscalation is not false'],
  ['capabilities kept',
   (o) => { container(o).securityContext.capabilities.drop = []; }, 'do not drop ALL'],
  ['root allowed',
   (o) => {
     delete find('DaemonSet')(o).spec.template.spec.securityContext.runAsNonRoot;
     delete container(o).securityContext.runAsNonRoot;
   },
   'runAsNonRoot is not true'],
  ['no hugetlbfs group',
   (o) => { find('DaemonSet')(o).spec.template.spec.securityContext.supplementalGroups = []; },
   'supplementalGroups lack'],
  ['Service selecting nothing',
   (o) => { find('Service')(o).spec.selector = {app: 'other'}; }, 'does not select the DaemonSet'],
  ['ServiceMonitor on the wrong port',
   (o) => { find('ServiceMonitor')(o).spec.endpoints[0].port = 'grpc'; }, 'is not the Service\'s metrics port'],
  ['PrometheusRule drifted from the rules file',
   (o) => {
     const r = find('PrometheusRule')(o).spec.groups[0].rules[0];
     r.expr = r.expr.replace('0.1', '0.2');
   },
   'PrometheusRule: spec.groups differ'],
];

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const tools = createRequire(path.join(path.resolve(args.tools), 'package.json'));
  let YAML;
  let models;
  try {
    YAML = tools('yaml');
    models = loadModels(tools);
  } catch (e) {
    console.error(`kubernetes_check: an npm tool is missing from ${args.tools}: run script/bootstrap (${e.message})`);
    process.exit(1);
  }
  const dockerfile = fs.readFileSync(path.join(args.source, 'Dockerfile'), 'utf8');
  const uid = /useradd\s[^\n]*--uid\s+(\d+)/.exec(dockerfile);
  const gid = /groupadd\s[^\n]*--gid\s+(\d+)\s+hugetlbfs/.exec(dockerfile);
  const ctx = {
    models,
    image: {uid: uid && Number(uid[1]), hugetlbfsGid: gid && Number(gid[1])},
    rules: YAML.parse(fs.readFileSync(
        path.join(args.source, 'deploy/prometheus/groove-volumed.rules.yml'), 'utf8')),
    reservations: documentedReservations(
        fs.readFileSync(path.join(args.source, 'docs/DEPLOY.md'), 'utf8')),
  };
  const errors = [];
  if (!uid || !gid) errors.push('cannot read the uid and the hugetlbfs gid from the Dockerfile');

  const root = path.join(args.source, 'deploy/kubernetes');
  const overlays = path.join(root, 'overlays');
  const dirs = [root].concat(fs.existsSync(overlays)
      ? fs.readdirSync(overlays).map((d) => path.join(overlays, d)) : []);
  const used = new Set();
  let base = null;
  const typed = [];  // {label, object} for one tsc run
  for (const dir of dirs) {
    let objects;
    try {
      objects = render(dir, YAML, used);
    } catch (e) {
      errors.push(`render ${path.relative(args.source, dir)}: ${e.message}`);
      continue;
    }
    if (dir === root) base = objects;
    for (const o of objects) {
      typed.push({label: path.relative(args.source, dir), object: o});
    }
    const found = check(objects, ctx);
    for (const ds of objects.filter((o) => o.kind === 'DaemonSet')) {
      const c = ds.spec.template.spec.containers[0];
      const problem = await startsAndStops(args.server, c.args || []);
      if (problem) found.push(`DaemonSet: groove-volumed refuses its args: ${problem}`);
    }
    for (const f of found) errors.push(`${path.relative(args.source, dir)}: ${f}`);
    console.log(`${path.relative(args.source, dir)}: ${objects.length} objects ` +
                `(${objects.map((o) => o.kind).join(', ')}): ${found.length ? 'FAILED' : 'valid'}`);
  }
  // Every manifest is used by some kustomization.
  const walk = (d) => fs.readdirSync(d, {withFileTypes: true}).flatMap(
      (e) => e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]);
  for (const f of walk(root).filter((f) => /\.ya?ml$/.test(f))) {
    if (!used.has(f)) errors.push(`${path.relative(args.source, f)} is used by no kustomization`);
  }

  // Unknown fields, with two misspelt ones that must be found.
  const TYPO_MISTAKES = [
    ['a misspelt pod field', 'DaemonSet', (o) => {
      const pod = o.spec.template.spec;
      pod.terminationGracePeriodSecond = pod.terminationGracePeriodSeconds;
      delete pod.terminationGracePeriodSeconds;
    }, 'terminationGracePeriodSecond'],
    ['a misspelt ServiceMonitor field', 'ServiceMonitor', (o) => {
      o.spec.endpoints[0].scrapeTimout = o.spec.endpoints[0].scrapeTimeout;
      delete o.spec.endpoints[0].scrapeTimeout;
    }, 'scrapeTimout'],
  ];
  if (args.selfTest && base) {
    for (const [what, kind, mutate] of TYPO_MISTAKES) {
      const o = clone(base.find((x) => x.kind === kind));
      mutate(o);
      typed.push({label: `self-test '${what}'`, object: o});
    }
  }
  const types = typeCheck(typed, path.resolve(args.tools));
  for (const [label, found] of types) {
    if (!label.startsWith('self-test')) for (const f of found) errors.push(`${label}: ${f}`);
  }
  console.log(`types: ${typed.length} objects type-checked (tsc)`);

  if (args.selfTest && base) {
    for (const [what, , , want] of TYPO_MISTAKES) {
      const found = types.get(`self-test '${what}'`);
      if (!found.some((f) => f.includes(want))) {
        errors.push(`self-test '${what}': not detected (want a types finding with '${want}', ` +
                    `got ${JSON.stringify(found)})`);
      }
    }
    for (const [what, mutate, want] of MISTAKES) {
      const bad = clone(base);
      mutate(bad);
      const found = check(bad, ctx);
      if (!found.some((f) => f.includes(want))) {
        errors.push(`self-test '${what}': not detected (want a finding with '${want}', ` +
                    `got ${JSON.stringify(found)})`);
      }
    }
    const bad = container(clone(base)).args.map(
        (a) => a.replace('--metrics-listen=', '--metrics-listn='));
    if (!(await startsAndStops(args.server, bad)).includes('before listening')) {
      errors.push('self-test: groove-volumed accepted a misspelt flag (--metrics-listn)');
    }
    // The server refuses a plaintext 0.0.0.0 listener without --insecure:
    // the args must still reach it with a non-loopback host.
    const secure = container(clone(base)).args.filter((a) => a !== '--insecure');
    if (!(await startsAndStops(args.server, secure)).includes('before listening')) {
      errors.push('self-test: groove-volumed started on 0.0.0.0 without TLS, tokens ' +
                  'or --insecure (server_args.js no longer keeps the host?)');
    }
    console.log(`self-test: ${MISTAKES.length + TYPO_MISTAKES.length + 2} known mistakes ` +
                `applied, each must be reported`);
  }
  if (errors.length) {
    for (const e of errors) console.error(`kubernetes_check: ${e}`);
    process.exit(1);
  }
  console.log('kubernetes_check: deploy/kubernetes is valid');
}

main().catch((e) => {
  console.error(`kubernetes_check: ${e.stack}`);
  process.exit(1);
});
