#!/usr/bin/env node
// tests/deploy/dockerfile_check.js: checks the root Dockerfile against the
// build, without Docker.
//
//   1. lint: dockerfile-utils (npm) reports nothing, not even a warning;
//   2. stages: `debian:bookworm AS build`, then `debian:bookworm-slim AS
//      runtime`;
//   3. the build stage runs script/bootstrap (which exists), and every
//      `--preset P` of its cmake/ctest commands names a preset of that kind
//      in CMakePresets.json;
//   4. the runtime stage copies exactly the image's binaries from the build
//      stage, each from where that preset's build puts it (the preset's
//      binaryDir + bin/, as this build's binaries are under their build
//      dir's bin/);
//   5. every shared library `ldd` reports for those binaries belongs (per
//      `dpkg -S`) to a package the runtime stage's `apt-get install`
//      installs or that debian:bookworm-slim has (BASE_PACKAGES below), and
//      every package it installs provides one of them (runtime libraries
//      only);
//   6. the runtime contract: a non-root USER with the hugetlbfs group,
//      EXPOSE 50051 9464, STOPSIGNAL SIGTERM, a HEALTHCHECK through
//      `groovectl --addr 127.0.0.1:50051 health`, and the default flags,
//      which the real groove-volumed must accept (run made local:
//      tests/deploy/server_args.js).
//
// Usage:
//   node dockerfile_check.js --source DIR --tools DIR --build-dir DIR
//        [--binary PATH]... [--not-built NAME=0|1]... [--self-test]
//     --binary     a binary the image ships, as built by this tree (CMake
//                  passes $<TARGET_FILE:...>)
//     --not-built  a binary the Dockerfile copies that this tree does not
//                  build yet (NAME=$<TARGET_EXISTS:NAME>): reported, and an
//                  error once the target exists (then check it: --binary)
//     --self-test  also apply known mistakes to the Dockerfile in memory and
//                  require each to be reported (proves the checks bite)
// Exit status 0 when everything holds, 1 with the findings otherwise.
'use strict';

const childProcess = require('child_process');
const fs = require('fs');
const path = require('path');
const {createRequire} = require('module');
const {startsAndStops} = require('./server_args');

// Packages of the debian:bookworm-slim image that shared libraries can come
// from (`dpkg -l` in the image; only libraries matter here, so tools such as
// bash or coreutils are left out). A library from any other package must be
// installed by the runtime stage.
const BASE_PACKAGES = new Set([
  'libc6',          // libc, libm, ld-linux, libpthread, libdl, librt
  'libgcc-s1',      // libgcc_s (unwinding, exceptions)
  'libstdc++6',     // the C++ standard library (apt links it)
  'zlib1g',         // libz
  'libzstd1',       // libzstd (dpkg, apt)
  'liblzma5',       // liblzma (dpkg)
  'liblz4-1',       // liblz4 (libsystemd0)
  'libbz2-1.0',     // libbz2 (dpkg)
  'libsystemd0',    // libsystemd (apt)
  'libudev1',       // libudev (apt)
  'libcap2',        // libcap (libsystemd0)
  'libgcrypt20',    // libgcrypt (libsystemd0)
  'libgpg-error0',  // libgpg-error (libgcrypt20)
  'libselinux1',    // libselinux (coreutils)
  'libpcre2-8-0',   // libpcre2-8 (libselinux1)
  'libcrypt1',      // libcrypt (libc6's PAM users)
  'libacl1',        // libacl (coreutils)
  'libattr1',       // libattr (coreutils)
  'libmd0',         // libmd (dpkg)
  'libxxhash0',     // libxxhash (apt)
  'libgnutls30',    // gnutls (apt's https transport)
  'libtinfo6',      // terminfo (bash)
]);

const IMAGE_FLAGS = [
  ['--listen', '0.0.0.0:50051'],
  ['--metrics-listen', '0.0.0.0:9464'],
  ['--data-dir', '/var/lib/groove'],
];

function parseArgs(argv) {
  const args = {binaries: [], notBuilt: [], selfTest: false};
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--source') args.source = value();
    else if (a === '--tools') args.tools = value();
    else if (a === '--build-dir') args.buildDir = value();
    else if (a === '--binary') args.binaries.push(value());
    else if (a === '--not-built') {
      const [name, exists] = value().split('=');
      args.notBuilt.push({name, exists: exists === '1'});
    } else if (a === '--self-test') args.selfTest = true;
    else throw new Error(`unknown argument ${a}`);
  }
  for (const k of ['source', 'tools', 'buildDir']) {
    if (!args[k]) throw new Error(`--${k} is required`);
  }
  return args;
}

// ---- the Dockerfile ---------------------------------------------------------

// Instruction: keyword, its text after the keyword with line continuations
// joined, its flags (--from=build) and its words, and its stage.
function parseDockerfile(text, dockerfileAst) {
  const df = dockerfileAst.DockerfileParser.parse(text);
  const lines = text.split('\n');
  const instructions = [];
  let stage = -1;
  for (const ins of df.getInstructions()) {
    const keyword = ins.getKeyword();
    const r = ins.getRange();
    let raw = lines.slice(r.start.line, r.end.line + 1);
    raw[raw.length - 1] = raw[raw.length - 1].slice(0, r.end.character);
    raw[0] = raw[0].slice(r.start.character);
    // Drop comment lines inside continuations, join the rest.
    const joined = raw.filter((l) => !/^\s*#/.test(l))
                       .map((l) => l.replace(/\\\s*$/, ''))
                       .join(' ')
                       .trim();
    const body = joined.slice(keyword.length).trim();
    if (keyword === 'FROM') ++stage;
    const flags = {};
    if (typeof ins.getFlags === 'function') {
      for (const f of ins.getFlags()) flags[f.getName()] = f.getValue();
    }
    instructions.push({
      keyword,
      body,
      flags,
      words: ins.getArguments().map((a) => a.getValue()),
      stage,
      line: r.start.line + 1,
    });
  }
  return instructions;
}

// ExecForm returns the JSON array of an exec-form body ("CMD [..]").
function execForm(body) {
  const m = /(\[.*\])\s*$/.exec(body);
  if (!m) return null;
  try {
    const v = JSON.parse(m[1]);
    return Array.isArray(v) ? v : null;
  } catch (e) {
    return null;
  }
}

// Shell commands of a RUN: split at && and ;.
function commands(body) {
  return body.split(/&&|;/).map((c) => c.trim().split(/\s+/).filter(Boolean));
}

function presetOf(words) {
  const i = words.indexOf('--preset');
  return i >= 0 ? words[i + 1] : null;
}

// ---- the build --------------------------------------------------------------

function loadPresets(source) {
  const presets = JSON.parse(
      fs.readFileSync(path.join(source, 'CMakePresets.json'), 'utf8'));
  const configure = new Map();
  for (const p of presets.configurePresets || []) configure.set(p.name, p);
  const resolve = (name, field) => {
    const p = configure.get(name);
    if (!p) return undefined;
    if (p[field] !== undefined) return p[field];
    for (const parent of [].concat(p.inherits || [])) {
      const v = resolve(parent, field);
      if (v !== undefined) return v;
    }
    return undefined;
  };
  return {
    configure,
    build: new Map((presets.buildPresets || []).map((p) => [p.name, p])),
    test: new Map((presets.testPresets || []).map((p) => [p.name, p])),
    binaryDir(name) {
      const dir = resolve(name, 'binaryDir');
      return dir && dir.replace('${presetName}', name);
    },
  };
}

// LibraryPackages maps every library `ldd` reports for `binaries` to its
// Debian package: {libs: [{binary, lib, path, pkg}], errors: [...]}.
function libraryPackages(binaries) {
  const libs = [];
  const errors = [];
  for (const binary of binaries) {
    let out;
    try {
      out = childProcess.execFileSync('ldd', [binary], {encoding: 'utf8'});
    } catch (e) {
      errors.push(`ldd ${binary} failed: ${e.message}`);
      continue;
    }
    for (const line of out.split('\n')) {
      const t = line.trim();
      if (!t || t.startsWith('linux-vdso')) continue;
      if (/not found/.test(t)) {
        errors.push(`${path.basename(binary)}: ldd: ${t}`);
        continue;
      }
      const m = /^(\S+)\s+=>\s+(\S+)/.exec(t) || /^(\/\S+)/.exec(t);
      if (!m) {
        errors.push(`${path.basename(binary)}: cannot read ldd line '${t}'`);
        continue;
      }
      const lib = m[1];
      const p = m[2] || m[1];
      libs.push({binary: path.basename(binary), lib: path.basename(lib), path: p});
    }
  }
  // dpkg knows a library by the path its package installed, which with
  // Debian 12's merged /usr may be /lib/... or /usr/lib/...: ask for all
  // forms at once and take what it finds.
  const candidates = new Set();
  const forms = (p) => {
    const real = fs.realpathSync(p);
    const all = [p, real];
    for (const q of [p, real]) {
      if (q.startsWith('/usr/')) all.push(q.slice(4));
      else all.push('/usr' + q);
    }
    return all;
  };
  for (const l of libs) for (const f of forms(l.path)) candidates.add(f);
  const found = new Map();
  const r = childProcess.spawnSync('dpkg', ['-S', ...candidates], {encoding: 'utf8'});
  for (const line of (r.stdout || '').split('\n')) {
    const m = /^([^:,]+)(?::[a-z0-9]+)?: (\S+)$/.exec(line.trim());
    if (m) found.set(m[2], m[1]);
  }
  for (const l of libs) {
    l.pkg = forms(l.path).map((f) => found.get(f)).find(Boolean);
    if (!l.pkg) {
      errors.push(`${l.binary}: ${l.path}: dpkg -S finds no package for it ` +
                  `(a library built or copied by hand cannot be installed ` +
                  `in the image)`);
    }
  }
  return {libs: libs.filter((l) => l.pkg), errors};
}

// ---- the checks -------------------------------------------------------------

function check(text, ctx) {
  const errors = [];
  const err = (m) => errors.push(m);

  // 1. lint
  for (const d of ctx.dockerfileUtils.validate(text)) {
    const sev = d.severity === 1 ? 'error' : 'warning';
    err(`lint (dockerfile-utils) line ${d.range.start.line + 1}: ${sev}: ${d.message}`);
  }

  // 2. stages
  const ins = parseDockerfile(text, ctx.dockerfileAst);
  const froms = ins.filter((i) => i.keyword === 'FROM');
  const want = [['debian:bookworm', 'build'], ['debian:bookworm-slim', 'runtime']];
  if (froms.length !== 2 ||
      froms.some((f, k) => f.words[0] !== want[k][0] ||
                           (f.words[1] || '').toUpperCase() !== 'AS' ||
                           f.words[2] !== want[k][1])) {
    err(`stages: want 'FROM debian:bookworm AS build' then 'FROM ` +
        `debian:bookworm-slim AS runtime', found ` +
        JSON.stringify(froms.map((f) => f.body)));
    return errors;  // the rest depends on the stages
  }
  const build = ins.filter((i) => i.stage === 0);
  const runtime = ins.filter((i) => i.stage === 1);
  const last = (list, kw) => list.filter((i) => i.keyword === kw).pop();

  // 3. build stage: bootstrap, presets
  const buildCmds = build.filter((i) => i.keyword === 'RUN')
                        .flatMap((i) => commands(i.body));
  const bootstrap = buildCmds.find((c) => /(^|\/)script\/bootstrap$/.test(c[0]));
  if (!bootstrap) {
    err('build stage: no RUN of script/bootstrap (the one package list)');
  } else {
    const file = path.join(ctx.source, 'script/bootstrap');
    try {
      fs.accessSync(file, fs.constants.X_OK);
    } catch (e) {
      err(`build stage runs ${bootstrap[0]}, but ${file} is not an executable`);
    }
  }
  for (const c of build.filter((i) => i.keyword === 'COPY' && !i.flags.from)) {
    for (const src of c.words.slice(0, -1)) {
      if (!fs.existsSync(path.join(ctx.source, src))) {
        err(`build stage line ${c.line}: COPY ${src}: no such path in the source tree`);
      }
    }
  }
  let configured = null;
  let tested = false;
  for (const c of buildCmds) {
    const preset = presetOf(c);
    if (c[0] === 'cmake' && c[1] !== '--build' && preset) {
      if (!ctx.presets.configure.has(preset)) {
        err(`build stage: cmake --preset ${preset}: no such configure preset in CMakePresets.json`);
      } else {
        configured = preset;
      }
    } else if (c[0] === 'cmake' && c[1] === '--build') {
      const p = ctx.presets.build.get(preset);
      if (!p) err(`build stage: cmake --build --preset ${preset}: no such build preset`);
      else if (p.configurePreset !== configured) {
        err(`build stage: build preset ${preset} builds ${p.configurePreset}, ` +
            `but the stage configured ${configured}`);
      }
    } else if (c[0] === 'ctest') {
      const p = ctx.presets.test.get(preset);
      if (!p) err(`build stage: ctest --preset ${preset}: no such test preset`);
      else if (p.configurePreset !== configured) {
        err(`build stage: test preset ${preset} tests ${p.configurePreset}, ` +
            `but the stage configured ${configured}`);
      } else {
        tested = true;
      }
    }
  }
  if (!configured) err('build stage: no `cmake --preset P`');
  if (!tested) err('build stage: runs no tests (`ctest --preset P`)');

  // 4. the binaries the runtime stage copies from the build stage
  const workdir = (last(build, 'WORKDIR') || {words: ['/']}).words[0];
  const binaryDir = configured &&
      ctx.presets.binaryDir(configured).replace('${sourceDir}', workdir);
  const copied = new Map();  // name -> destination
  for (const c of runtime.filter((i) => i.keyword === 'COPY' && i.flags.from)) {
    if (c.flags.from !== 'build') {
      err(`runtime stage line ${c.line}: COPY --from=${c.flags.from}: only the build stage is a source`);
      continue;
    }
    const [src, dst] = c.words;
    const name = path.posix.basename(src);
    const wantSrc = binaryDir && path.posix.join(binaryDir, 'bin', name);
    if (src !== wantSrc) {
      err(`runtime stage line ${c.line}: COPY --from=build ${src}: the ` +
          `${configured} preset puts ${name} at ${wantSrc}`);
    }
    copied.set(name, dst);
  }
  for (const b of ctx.binaries) {
    const name = path.basename(b);
    const rel = path.relative(ctx.buildDir, b);
    if (rel !== path.join('bin', name)) {
      err(`${name} is built at ${rel} under its build dir, not bin/${name}: ` +
          `the Dockerfile's paths assume bin/`);
    }
    if (!copied.has(name)) err(`runtime stage does not COPY --from=build the binary ${name}`);
  }
  const known = new Set(ctx.binaries.map((b) => path.basename(b)));
  for (const nb of ctx.notBuilt) known.add(nb.name);
  for (const name of copied.keys()) {
    if (!known.has(name)) {
      err(`runtime stage copies ${name}, which is neither checked (--binary) ` +
          `nor declared --not-built in tests/deploy/CMakeLists.txt`);
    }
  }

  // 5. runtime libraries
  const installs = runtime.filter((i) => i.keyword === 'RUN')
                       .flatMap((i) => commands(i.body))
                       .filter((c) => c[0] === 'apt-get' && c[1] === 'install');
  const installed = new Set();
  for (const c of installs) {
    if (!c.includes('--no-install-recommends')) {
      err('runtime stage: apt-get install without --no-install-recommends');
    }
    for (const w of c.slice(2)) if (!w.startsWith('-')) installed.add(w);
  }
  if (installs.length && !runtime.some((i) => i.keyword === 'RUN' &&
                                      i.body.includes('rm -rf /var/lib/apt/lists'))) {
    err('runtime stage: apt lists are not removed (rm -rf /var/lib/apt/lists/*)');
  }
  const used = new Set();
  for (const l of ctx.libs) {
    used.add(l.pkg);
    if (!installed.has(l.pkg) && !BASE_PACKAGES.has(l.pkg)) {
      err(`${l.binary} needs ${l.lib} (${l.path}) from package ${l.pkg}, ` +
          `which the runtime stage's apt-get install does not install`);
    }
  }
  for (const p of installed) {
    if (!used.has(p)) {
      err(`runtime stage installs ${p}, which provides no library of ` +
          `${[...known].join(', ')} (runtime libraries only)`);
    }
  }

  // 6. the runtime contract
  const user = last(runtime, 'USER');
  const uid = user && user.words[0].split(':')[0];
  if (!user || uid === '0' || uid === 'root') {
    err('runtime stage: no non-root USER');
  }
  const runText = runtime.filter((i) => i.keyword === 'RUN').map((i) => i.body).join(' ');
  const group = /groupadd\s[^&]*--gid\s+(\d+)\s+hugetlbfs\b/.exec(runText);
  if (!group) err('runtime stage: no `groupadd --gid N hugetlbfs` (the hugetlbfs mounts\' group)');
  if (!/useradd\s[^&]*--groups\s+hugetlbfs\b/.test(runText)) {
    err('runtime stage: the user is not in the supplementary group hugetlbfs');
  }
  // `USER uid:gid` gives the process that one group and no other: Docker
  // (runc) reads /etc/group for supplementary groups only when USER names
  // no group ("the user will have only the specified group membership";
  // the Dockerfile reference). The hugetlbfs group would then be lost.
  if (user && user.words[0].includes(':')) {
    err(`runtime stage: USER ${user.words[0]} names a group, so the container gets ` +
        'no supplementary group and the user\'s hugetlbfs group does not apply; ' +
        'give the uid alone (its groups then come from /etc/passwd and /etc/group)');
  }
  const exposed = new Set(runtime.filter((i) => i.keyword === 'EXPOSE').flatMap((i) => i.words));
  for (const port of ['50051', '9464']) {
    if (!exposed.has(port)) err(`runtime stage: EXPOSE lacks ${port}`);
  }
  const stop = last(runtime, 'STOPSIGNAL');
  if (!stop || stop.words[0] !== 'SIGTERM') err('runtime stage: STOPSIGNAL is not SIGTERM');
  const health = last(runtime, 'HEALTHCHECK');
  const healthCmd = health && execForm(health.body);
  if (!healthCmd || healthCmd.join(' ') !== 'groovectl --addr 127.0.0.1:50051 health') {
    err('runtime stage: HEALTHCHECK is not CMD ["groovectl", "--addr", "127.0.0.1:50051", "health"]');
  } else if (!copied.has('groovectl')) {
    err('runtime stage: HEALTHCHECK runs groovectl, which the stage does not copy');
  }
  const entry = execForm((last(runtime, 'ENTRYPOINT') || {body: ''}).body) || [];
  const cmd = execForm((last(runtime, 'CMD') || {body: ''}).body) || [];
  const argv = entry.concat(cmd);
  if (path.posix.basename(argv[0] || '') !== 'groove-volumed' || !copied.has('groove-volumed')) {
    err(`runtime stage: ENTRYPOINT/CMD does not start the copied groove-volumed: ${JSON.stringify(argv)}`);
  }
  for (const [flag, value] of IMAGE_FLAGS) {
    const i = argv.indexOf(flag);
    if (i < 0 || argv[i + 1] !== value) {
      err(`runtime stage: the default command lacks ${flag} ${value}: ${JSON.stringify(argv)}`);
    }
  }
  return errors;
}

// Known mistakes, each applied to the real Dockerfile, and a fragment of
// the finding each must produce.
const MISTAKES = [
  ['a runtime library package left out', (t) => t.replace(' libprotobuf32 ', ' '),
   'from package libprotobuf32, which the runtime stage'],
  ['a package no binary needs', (t) => t.replace(' libc-ares2 ', ' libc-ares2 curl '),
   'installs curl, which provides no library'],
  ['an unknown instruction (lint)', (t) => t.replace('\nSTOPSIGNAL', '\nSTOPSIGNL'),
   'Unknown instruction: STOPSIGNL'],
  ['a bad port (lint)', (t) => t.replace('EXPOSE 50051 9464', 'EXPOSE 50051 94x64'),
   'Invalid containerPort'],
  ['a binary copied from the wrong build dir',
   (t) => t.replace('/src/build/release/bin/groove-volumed', '/src/build/default/bin/groove-volumed'),
   'the release preset puts groove-volumed at /src/build/release/bin/groove-volumed'],
  ['a preset that does not exist', (t) => t.replace('cmake --preset release', 'cmake --preset relase'),
   'cmake --preset relase: no such configure preset'],
  ['a test preset that does not exist',
   (t) => t.replace('ctest --preset release', 'ctest --preset unit'),
   'ctest --preset unit: no such test preset'],
  ['no bootstrap', (t) => t.replace('RUN script/bootstrap', 'RUN true'),
   'no RUN of script/bootstrap'],
  ['the runtime stage on another base', (t) => t.replace('FROM debian:bookworm-slim', 'FROM ubuntu:22.04'),
   'stages: want'],
  ['root', (t) => t.replace(/\nUSER [^\n]*/, '\nUSER root'), 'no non-root USER'],
  ['no hugetlbfs group', (t) => t.replace('--groups hugetlbfs', ''),
   'not in the supplementary group hugetlbfs'],
  ['USER with a group, which drops the supplementary groups',
   (t) => t.replace(/\nUSER (\d+)\n/, '\nUSER $1:$1\n'), 'names a group, so the container gets'],
  ['metrics port not exposed', (t) => t.replace('EXPOSE 50051 9464', 'EXPOSE 50051'),
   'EXPOSE lacks 9464'],
  ['wrong stop signal', (t) => t.replace('STOPSIGNAL SIGTERM', 'STOPSIGNAL SIGINT'),
   'STOPSIGNAL is not SIGTERM'],
  ['loopback-only default', (t) => t.replace('"--listen", "0.0.0.0:50051"', '"--listen", "127.0.0.1:50051"'),
   'lacks --listen 0.0.0.0:50051'],
  ['health check through something else',
   (t) => t.replace('CMD ["groovectl", "--addr", "127.0.0.1:50051", "health"]', 'CMD ["true"]'),
   'HEALTHCHECK is not'],
  ['a binary nobody checks', (t) => t.replace(
      /(COPY --from=build \/src\/build\/release\/bin\/groovectl [^\n]*\n)/,
      '$1COPY --from=build /src/build/release/bin/volume_pool_bench /usr/local/bin/\n'),
   'copies volume_pool_bench, which is neither checked'],
];

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const tools = createRequire(path.join(path.resolve(args.tools), 'package.json'));
  let dockerfileUtils;
  let dockerfileAst;
  try {
    dockerfileUtils = tools('dockerfile-utils');
    dockerfileAst = tools('dockerfile-ast');
  } catch (e) {
    console.error(`dockerfile_check: dockerfile-utils is missing from ${args.tools}: run script/bootstrap (${e.message})`);
    process.exit(1);
  }
  const {libs, errors: lddErrors} = libraryPackages(args.binaries);
  const ctx = {
    source: args.source,
    buildDir: args.buildDir,
    binaries: args.binaries,
    notBuilt: args.notBuilt,
    presets: loadPresets(args.source),
    libs,
    dockerfileUtils,
    dockerfileAst,
  };
  const text = fs.readFileSync(path.join(args.source, 'Dockerfile'), 'utf8');
  const baseline = check(text, ctx);
  const errors = lddErrors.concat(baseline);
  // The image's default command, run by the binary built here.
  const runtime = parseDockerfile(text, dockerfileAst).filter((i) => i.stage === 1);
  const lastOf = (kw) => runtime.filter((i) => i.keyword === kw).pop();
  const argv = (execForm((lastOf('ENTRYPOINT') || {body: ''}).body) || [])
                   .concat(execForm((lastOf('CMD') || {body: ''}).body) || []);
  const server = args.binaries.find((b) => path.basename(b) === 'groove-volumed');
  if (!server) {
    errors.push('no --binary groove-volumed to run the image\'s default command with');
  } else if (argv.length > 0) {
    const problem = await startsAndStops(server, argv.slice(1));
    if (problem) errors.push(`groove-volumed refuses the image's default command: ${problem}`);
  }
  for (const nb of args.notBuilt) {
    if (nb.exists) {
      errors.push(`${nb.name} is a CMake target now: check it, in ` +
                  `tests/deploy/CMakeLists.txt replace --not-built ${nb.name} ` +
                  `by --binary $<TARGET_FILE:${nb.name}>`);
    } else {
      console.log(`NOTE: ${nb.name}: copied by the Dockerfile, not built in ` +
                  `this tree yet: its libraries are not checked`);
    }
  }
  const pkgs = [...new Set(libs.map((l) => l.pkg))].sort();
  console.log(`checked ${args.binaries.map((b) => path.basename(b)).join(', ')}: ` +
              `${libs.length} libraries from ${pkgs.length} packages: ${pkgs.join(' ')}`);
  if (args.selfTest) {
    for (const [what, mutate, want] of MISTAKES) {
      const bad = mutate(text);
      if (bad === text) {
        errors.push(`self-test '${what}': the mistake no longer applies to the Dockerfile; update MISTAKES`);
        continue;
      }
      const found = check(bad, ctx);
      if (!found.some((f) => f.includes(want) && !baseline.includes(f))) {
        errors.push(`self-test '${what}': not detected (want a finding with ` +
                    `'${want}', got ${JSON.stringify(found)})`);
      }
    }
    console.log(`self-test: ${MISTAKES.length} known mistakes applied, each must be reported`);
  }
  if (errors.length) {
    for (const e of errors) console.error(`dockerfile_check: ${e}`);
    process.exit(1);
  }
  console.log('dockerfile_check: the Dockerfile matches the build');
}

main().catch((e) => {
  console.error(`dockerfile_check: ${e.stack}`);
  process.exit(1);
});
