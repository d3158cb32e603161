// tests/deploy/server_args.js: runs the real groove-volumed with the
// arguments a deployment artefact gives it (the Dockerfile's CMD, the
// DaemonSet's args, the compose command), so a misspelt flag or a pool spec
// the server refuses fails the check. Only what the test machine cannot
// offer is made local: the addresses get port 0 (a free port) but keep
// their host's kind, loopback or not, so that the server's rule for
// non-loopback listeners (TLS, tokens or --insecure) applies as it will in
// the deployment (a wildcard host stays a wildcard, a loopback one stays
// 127.0.0.1, any other becomes 0.0.0.0); the data directory becomes a
// fresh one on /dev/shm, hugetlb backings `normal` (the machine may
// reserve no hugepages) and initial_volumes 0 (no memory is taken).
'use strict';

const childProcess = require('child_process');
const fs = require('fs');

const ADDRESS_FLAGS = new Set(['--listen', '--metrics-listen', '--metrics_listen']);
const DATA_DIR_FLAGS = new Set(['--data-dir', '--data_dir']);

function localArgs(args, dataDir) {
  const out = [];
  const local = (flag, value) => {
    if (ADDRESS_FLAGS.has(flag)) {
      const host = value.slice(0, value.lastIndexOf(':'));
      if (host === '[::]' || host === '[::1]') return `${host}:0`;
      if (host.startsWith('127.') || host === 'localhost') return '127.0.0.1:0';
      return '0.0.0.0:0';
    }
    if (DATA_DIR_FLAGS.has(flag)) return dataDir;
    if (flag === '--pool') {
      return value.replace(/backing=(huge|gigantic|auto)/, 'backing=normal')
                  .replace(/initial_volumes=\d+/, 'initial_volumes=0');
    }
    return value;
  };
  for (let i = 0; i < args.length; ++i) {
    const a = args[i];
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) {
      out.push(`${a.slice(0, eq)}=${local(a.slice(0, eq), a.slice(eq + 1))}`);
    } else if ((ADDRESS_FLAGS.has(a) || DATA_DIR_FLAGS.has(a) || a === '--pool') &&
               i + 1 < args.length) {
      out.push(a, local(a, args[++i]));
    } else {
      out.push(a);
    }
  }
  return out;
}

// startsAndStops(bin, args): resolves to "" when groove-volumed started with
// (the local form of) args, reported `event=listening`, and exited 0 on
// SIGTERM; otherwise to what went wrong, with its log.
function startsAndStops(bin, args) {
  const dataDir = fs.mkdtempSync('/dev/shm/groove-deploy-check-');
  const argv = localArgs(args, dataDir);
  return new Promise((resolve) => {
    const child = childProcess.spawn(bin, argv, {stdio: ['ignore', 'pipe', 'pipe']});
    let log = '';
    let listening = false;
    const finish = (problem) => {
      clearTimeout(timer);
      fs.rmSync(dataDir, {recursive: true, force: true});
      resolve(problem ? `${problem}\n  args: ${JSON.stringify(argv)}\n  log:\n${log}` : '');
    };
    // A bound on a hung start or stop, not a synchronisation.
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
    }, 30000);
    const onData = (chunk) => {
      log += chunk;
      if (!listening && log.includes('event=listening')) {
        listening = true;
        child.kill('SIGTERM');
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (e) => finish(`cannot run ${bin}: ${e.message}`));
    child.on('close', (code, signal) => {
      if (!listening) finish(`groove-volumed exited (${code === null ? signal : code}) before listening`);
      else if (code !== 0) finish(`groove-volumed did not stop cleanly on SIGTERM (${code === null ? signal : code})`);
      else finish('');
    });
  });
}

module.exports = {localArgs, startsAndStops};
