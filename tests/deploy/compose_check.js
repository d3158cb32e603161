#!/usr/bin/env node
// tests/deploy/compose_check.js: checks deploy/compose/ without a Docker
// engine (`docker compose config` needs one): the compose file parses as
// YAML and uses only Compose fields this deployment knows (a misspelt key
// is an error, not silently ignored as Compose would warn), and its parts
// fit together:
//   - the services groove-volumed (built from the root Dockerfile, listening
//     on 0.0.0.0, ports published), prometheus and grafana, images pinned;
//   - every bind mount's host path exists, every named volume is declared;
//   - Prometheus's config is deploy/prometheus's, and it scrapes
//     groove-volumed's metrics port by service name;
//   - Grafana's provisioned data source is that Prometheus, and its
//     dashboard provider reads the directory deploy/grafana is mounted at,
//     which holds the dashboard.
// It also runs the real groove-volumed with the service's command (made
// local: tests/deploy/server_args.js): it must start and stop cleanly.
// With --self-test it applies known mistakes and requires each reported.
//
// Usage: node compose_check.js --source DIR --tools DIR --server BIN
//        [--self-test]
'use strict';

const fs = require('fs');
const path = require('path');
const {createRequire} = require('module');
const {startsAndStops} = require('./server_args');

const TOP_KEYS = new Set(['name', 'services', 'volumes', 'networks']);
const SERVICE_KEYS = new Set([
  'build', 'image', 'command', 'entrypoint', 'environment', 'ports', 'volumes',
  'depends_on', 'shm_size', 'stop_grace_period', 'stop_signal', 'read_only',
  'cap_drop', 'security_opt', 'restart', 'healthcheck', 'user', 'group_add',
  'tmpfs', 'ulimits',
]);

const clone = (v) => JSON.parse(JSON.stringify(v));

function flag(command, name) {
  for (let i = 0; i < (command || []).length; ++i) {
    const a = command[i];
    if (a === name) return command[i + 1];
    if (a.startsWith(name + '=')) return a.slice(name.length + 1);
  }
  return undefined;
}

// Mounts of a service: [{host, target, bind}] ("SRC:DST[:ro]").
function mounts(service) {
  return (service.volumes || []).map((v) => {
    const [src, dst] = String(v).split(':');
    return {src, target: dst, bind: src.startsWith('.') || src.startsWith('/')};
  });
}

function check(compose, files, ctx) {
  const errors = [];
  const err = (m) => errors.push(m);
  for (const k of Object.keys(compose || {})) {
    if (!TOP_KEYS.has(k)) err(`top-level key '${k}' is not a Compose key this file uses`);
  }
  const services = (compose && compose.services) || {};
  for (const [name, s] of Object.entries(services)) {
    for (const k of Object.keys(s || {})) {
      if (!SERVICE_KEYS.has(k)) err(`service ${name}: unknown key '${k}'`);
    }
    if (!s.build && (!s.image || !/:[^:]+$/.test(s.image) || /:latest$/.test(s.image))) {
      err(`service ${name}: image ${s.image} is not pinned to a version`);
    }
    for (const m of mounts(s)) {
      if (m.bind) {
        if (!fs.existsSync(path.resolve(ctx.dir, m.src))) {
          err(`service ${name}: bind mount ${m.src} does not exist (relative to deploy/compose)`);
        }
      } else if (!(compose.volumes && m.src in compose.volumes)) {
        err(`service ${name}: named volume ${m.src} is not declared under volumes:`);
      }
    }
    for (const d of [].concat(s.depends_on || [])) {
      if (!(d in services)) err(`service ${name}: depends on unknown service ${d}`);
    }
  }
  const g = services['groove-volumed'];
  const p = services.prometheus;
  const gf = services.grafana;
  if (!g || !p || !gf) {
    err(`services must include groove-volumed, prometheus and grafana; found ${Object.keys(services)}`);
    return errors;
  }

  // groove-volumed
  const context = g.build && path.resolve(ctx.dir, g.build.context || '.');
  if (!context || !fs.existsSync(path.join(context, g.build.dockerfile || 'Dockerfile'))) {
    err('groove-volumed: not built from the root Dockerfile');
  }
  const listen = flag(g.command, '--listen');
  const metrics = flag(g.command, '--metrics-listen');
  if (!listen || !listen.startsWith('0.0.0.0:')) err(`groove-volumed: --listen ${listen} is not on 0.0.0.0`);
  if (!metrics || !metrics.startsWith('0.0.0.0:')) err(`groove-volumed: --metrics-listen ${metrics} is not on 0.0.0.0`);
  const metricsPort = metrics && metrics.split(':').pop();
  const published = (g.ports || []).map((x) => String(x).split(':').pop());
  for (const port of [listen, metrics].map((a) => a && a.split(':').pop())) {
    if (!published.includes(port)) err(`groove-volumed: port ${port} is not published`);
  }

  // Prometheus: its config, and that the config scrapes groove-volumed.
  const promConfigDir = mounts(p).find((m) => m.target === '/etc/prometheus');
  if (!promConfigDir || path.resolve(ctx.dir, promConfigDir.src) !==
                            path.join(ctx.source, 'deploy/prometheus')) {
    err('prometheus: deploy/prometheus is not mounted at /etc/prometheus');
  }
  if (flag(p.command, '--config.file') !== '/etc/prometheus/prometheus.yml') {
    err('prometheus: --config.file is not /etc/prometheus/prometheus.yml');
  }
  const targets = ((files.prometheus || {}).scrape_configs || [])
                      .flatMap((sc) => (sc.static_configs || []).flatMap((c) => c.targets || []));
  if (!targets.includes(`groove-volumed:${metricsPort}`)) {
    err(`prometheus.yml does not scrape groove-volumed:${metricsPort} (targets: ${targets})`);
  }
  const promPort = (flag(p.command, '--web.listen-address') || ':9090').split(':').pop();

  // Grafana: provisioning mounted, the data source, the dashboards.
  const prov = mounts(gf).find((m) => m.target === '/etc/grafana/provisioning');
  if (!prov || path.resolve(ctx.dir, prov.src) !== path.join(ctx.dir, 'grafana/provisioning')) {
    err('grafana: ./grafana/provisioning is not mounted at /etc/grafana/provisioning');
  }
  const sources = (files.datasources || {}).datasources || [];
  const prom = sources.find((d) => d.type === 'prometheus');
  if (!prom || prom.url !== `http://prometheus:${promPort}`) {
    err(`grafana: no prometheus data source at http://prometheus:${promPort} (${JSON.stringify(prom)})`);
  }
  const providers = (files.dashboards || {}).providers || [];
  const dashMount = mounts(gf).find((m) => path.resolve(ctx.dir, m.src) === path.join(ctx.source, 'deploy/grafana'));
  if (!dashMount) err('grafana: deploy/grafana is not mounted');
  const provider = providers.find((x) => x.type === 'file');
  if (!provider || !dashMount || provider.options.path !== dashMount.target) {
    err(`grafana: no file dashboard provider reads ${dashMount && dashMount.target}`);
  }
  const home = (gf.environment || {}).GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH;
  if (home && dashMount) {
    const file = path.join(ctx.source, 'deploy/grafana', path.relative(dashMount.target, home));
    if (!fs.existsSync(file)) err(`grafana: home dashboard ${home} is not a file of deploy/grafana`);
  }
  return errors;
}

const MISTAKES = [
  ['a misspelt service key', (c) => { c.compose.services.grafana.porst = c.compose.services.grafana.ports; },
   "grafana: unknown key 'porst'"],
  ['no grafana', (c) => { delete c.compose.services.grafana; }, 'services must include'],
  ['an unpinned image', (c) => { c.compose.services.prometheus.image = 'prom/prometheus:latest'; },
   'is not pinned'],
  ['a bind mount that does not exist',
   (c) => { c.compose.services.grafana.volumes[1] = '../grafna:/var/lib/grafana/dashboards:ro'; },
   'bind mount ../grafna does not exist'],
  ['an undeclared named volume', (c) => { delete c.compose.volumes['prometheus-data']; },
   'named volume prometheus-data is not declared'],
  ['loopback-only server', (c) => { c.compose.services['groove-volumed'].command[0] = '--listen=127.0.0.1:50051'; },
   '--listen 127.0.0.1:50051 is not on 0.0.0.0'],
  ['Prometheus scraping the wrong port',
   (c) => { c.files.prometheus.scrape_configs[0].static_configs[0].targets = ['groove-volumed:9090']; },
   'does not scrape groove-volumed:9464'],
  ['Grafana pointing at the wrong Prometheus',
   (c) => { c.files.datasources.datasources[0].url = 'http://localhost:9090'; },
   'no prometheus data source'],
  ['dashboards provisioned from the wrong directory',
   (c) => { c.files.dashboards.providers[0].options.path = '/dashboards'; },
   'no file dashboard provider'],
  ['a dependency on a missing service', (c) => { c.compose.services.grafana.depends_on = ['prom']; },
   'depends on unknown service prom'],
];

async function main() {
  const args = {selfTest: false};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; ++i) {
    if (argv[i] === '--source') args.source = path.resolve(argv[++i]);
    else if (argv[i] === '--tools') args.tools = argv[++i];
    else if (argv[i] === '--server') args.server = argv[++i];
    else if (argv[i] === '--self-test') args.selfTest = true;
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!args.source || !args.tools || !args.server) {
    throw new Error('--source, --tools and --server are required');
  }
  const tools = createRequire(path.join(path.resolve(args.tools), 'package.json'));
  let YAML;
  try {
    YAML = tools('yaml');
  } catch (e) {
    console.error(`compose_check: yaml is missing from ${args.tools}: run script/bootstrap`);
    process.exit(1);
  }
  const dir = path.join(args.source, 'deploy/compose');
  const errors = [];
  const load = (file) => {
    try {
      return YAML.parse(fs.readFileSync(file, 'utf8'), {uniqueKeys: true});
    } catch (e) {
      errors.push(`${path.relative(args.source, file)}: ${e.message}`);
      return {};
    }
  };
  const real = {
    compose: load(path.join(dir, 'docker-compose.yml')),
    files: {
      prometheus: load(path.join(args.source, 'deploy/prometheus/prometheus.yml')),
      datasources: load(path.join(dir, 'grafana/provisioning/datasources/prometheus.yml')),
      dashboards: load(path.join(dir, 'grafana/provisioning/dashboards/groove-volumed.yml')),
    },
  };
  const ctx = {dir, source: args.source};
  const baseline = check(real.compose, real.files, ctx);
  errors.push(...baseline);
  const service = ((real.compose || {}).services || {})['groove-volumed'];
  if (service) {
    const problem = await startsAndStops(args.server, [].concat(service.command || []));
    if (problem) errors.push(`groove-volumed refuses the compose command: ${problem}`);
  }
  if (args.selfTest) {
    for (const [what, mutate, want] of MISTAKES) {
      const bad = clone(real);
      mutate(bad);
      const found = check(bad.compose, bad.files, ctx);
      if (!found.some((f) => f.includes(want) && !baseline.includes(f))) {
        errors.push(`self-test '${what}': not detected (want '${want}', got ${JSON.stringify(found)})`);
      }
    }
    // YAML that does not parse, or repeats a key, is reported.
    for (const text of ['services: [unclosed', 'name: a\nname: b\n']) {
      try {
        YAML.parse(text, {uniqueKeys: true});
        errors.push(`self-test: the YAML parser accepted ${JSON.stringify(text)}`);
      } catch (e) { /* rejected, as it must be */ }
    }
    console.log(`self-test: ${MISTAKES.length + 2} known mistakes applied, each must be reported`);
  }
  if (errors.length) {
    for (const e of errors) console.error(`compose_check: ${e}`);
    process.exit(1);
  }
  console.log(`compose_check: deploy/compose is consistent (${Object.keys(real.compose.services).join(', ')})`);
}

main().catch((e) => {
  console.error(`compose_check: ${e.stack}`);
  process.exit(1);
});
