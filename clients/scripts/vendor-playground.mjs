#!/usr/bin/env node
// Re-creates the GraphiQL page's vendored files (src/http/playground/vendor/) from this
// package's node_modules, at the versions pinned in package.json, and writes their SHA-256s.
//
//   cd clients && npm ci && node scripts/vendor-playground.mjs
//
// The copies are byte for byte the files npm installed; `SHA256SUMS` lists them in the format
// `sha256sum -c` reads, and the Rust tests check that the server serves exactly these bytes.
// `LICENSES.txt` holds the licence of every package whose code is in them: React, ReactDOM,
// GraphiQL, and the packages GraphiQL's bundle and ReactDOM's are built from (found by walking
// their dependencies in node_modules, type declarations left out).
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const clientsDir = fileURLToPath(new URL('..', import.meta.url));
const nodeModules = path.join(clientsDir, 'node_modules');
const vendorDir = path.resolve(clientsDir, '..', 'src', 'http', 'playground', 'vendor');

/** The files served, as `[package, file in the package, name in vendor/]`. */
const FILES = [
  ['react', 'umd/react.production.min.js', 'react.production.min.js'],
  ['react-dom', 'umd/react-dom.production.min.js', 'react-dom.production.min.js'],
  ['graphiql', 'graphiql.min.js', 'graphiql.min.js'],
  ['graphiql', 'graphiql.min.css', 'graphiql.min.css'],
];

const LICENCE_FILE = /^(licen[cs]e|copying)(\.|-|$)/i;

async function readJson(file) {
  return JSON.parse(await readFile(file, 'utf8'));
}

/** The directory npm installed `name` in, as Node resolves it from `fromDir`. */
function packageDir(name, fromDir) {
  for (let dir = fromDir; ; ) {
    const candidate = path.join(dir, 'node_modules', name);
    if (existsSync(path.join(candidate, 'package.json'))) return candidate;
    const up = path.dirname(dir);
    if (up === dir) return null;
    dir = path.basename(up) === 'node_modules' ? path.dirname(up) : up;
  }
}

/** Every package `roots` depend on (dependencies and required peers), each once. */
async function dependencyTree(roots) {
  const found = new Map();
  async function visit(name, fromDir) {
    const dir = packageDir(name, fromDir);
    if (!dir) throw new Error(`${name} is not installed (needed from ${fromDir}); run npm ci`);
    const pkg = await readJson(path.join(dir, 'package.json'));
    const key = `${pkg.name}@${pkg.version}`;
    if (found.has(key)) return;
    found.set(key, { name: pkg.name, version: pkg.version, license: pkg.license, dir });
    const optionalPeers = pkg.peerDependenciesMeta ?? {};
    const needs = [
      ...Object.keys(pkg.dependencies ?? {}),
      ...Object.keys(pkg.peerDependencies ?? {}).filter((peer) => !optionalPeers[peer]?.optional),
    ];
    for (const dependency of needs) await visit(dependency, dir);
  }
  for (const root of roots) await visit(root, clientsDir);
  return [...found.values()]
    .filter((pkg) => !pkg.name.startsWith('@types/'))
    .sort((a, b) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version));
}

async function licenceText(pkg) {
  const files = (await readdir(pkg.dir)).filter((file) => LICENCE_FILE.test(file)).sort();
  if (files.length === 0) return null;
  const texts = await Promise.all(files.map((file) => readFile(path.join(pkg.dir, file), 'utf8')));
  return texts.map((text) => text.replace(/\r\n/g, '\n').trim()).join('\n\n');
}

async function main() {
  const pinned = (await readJson(path.join(clientsDir, 'package.json'))).devDependencies;
  const roots = [...new Set(FILES.map(([pkg]) => pkg))];
  const versions = {};
  for (const name of roots) {
    const installed = (await readJson(path.join(nodeModules, name, 'package.json'))).version;
    if (installed !== pinned[name]) {
      throw new Error(`${name} ${installed} is installed but package.json pins ${pinned[name]}; run npm ci`);
    }
    versions[name] = installed;
  }

  await rm(vendorDir, { recursive: true, force: true });
  await mkdir(vendorDir, { recursive: true });
  for (const [pkg, from, to] of FILES) {
    await copyFile(path.join(nodeModules, pkg, from), path.join(vendorDir, to));
  }

  // Packages with the same licence text are listed together under it.
  const groups = new Map();
  for (const pkg of await dependencyTree(roots)) {
    const text =
      (await licenceText(pkg)) ??
      `${pkg.license} (named in package.json; the package ships no licence file)`;
    if (!groups.has(text)) groups.set(text, []);
    groups.get(text).push(`${pkg.name}@${pkg.version} (${pkg.license})`);
  }
  const sections = [...groups].map(([text, names]) => `${names.join('\n')}\n\n${text}\n`);
  const header =
    `The GraphiQL page of Storefront serves React ${versions.react}, ReactDOM ${versions['react-dom']} ` +
    `and GraphiQL ${versions.graphiql}, whose bundles include the code of the packages below.\n` +
    'The list is their dependency tree as npm installed it for clients/package-lock.json; the\n' +
    'bundles were built upstream and may hold other patch versions of some of them.\n' +
    'Each licence follows the packages it covers.\n';
  await writeFile(
    path.join(vendorDir, 'LICENSES.txt'),
    [header, ...sections].join(`\n${'-'.repeat(78)}\n\n`),
  );

  const versionsText = Object.entries(versions)
    .map(([name, version]) => `${name} ${version}\n`)
    .join('');
  await writeFile(path.join(vendorDir, 'VERSIONS'), versionsText);

  const sums = [];
  for (const file of [...FILES.map(([, , to]) => to), 'LICENSES.txt', 'VERSIONS']) {
    const bytes = await readFile(path.join(vendorDir, file));
    sums.push(`${createHash('sha256').update(bytes).digest('hex')}  ${file}\n`);
  }
  await writeFile(path.join(vendorDir, 'SHA256SUMS'), sums.join(''));
  console.log(`wrote ${path.relative(process.cwd(), vendorDir)}:\n${versionsText}${sums.join('')}`);
}

await main();
