// The GraphiQL page in a real (headless) Chromium, used as a person would: sign in with the
// login mutation, put the token in the Headers tab, run the products query.
//
// The page loads React and GraphiQL from unpkg.com; with no internet here, those requests are
// answered from this package's node_modules (the same packages, pinned in package.json).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';

import { admin, clientsDir, storefrontUrl } from './lib/env.mjs';
import { DEMO_PRODUCT_NAMES } from './lib/documents.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SCREENSHOT = path.join(clientsDir, 'screenshots', 'graphiql.png');
const skip = existsSync(CHROMIUM)
  ? false
  : `skipped: no Chromium at ${CHROMIUM} (install Debian's chromium: apt-get install -y chromium)`;
if (skip) console.log(`browser.test.mjs ${skip}`);

/** The packages the page asks unpkg.com for, as `name@major`, and where they are installed. */
const UNPKG_PACKAGES = {
  react: { major: '18', dir: 'react' },
  'react-dom': { major: '18', dir: 'react-dom' },
  graphiql: { major: '4', dir: 'graphiql' },
};

const CONTENT_TYPES = { '.js': 'application/javascript', '.css': 'text/css', '.map': 'application/json' };

/** The file in node_modules for an unpkg.com URL such as `/react@18/umd/react.development.js`. */
async function unpkgFile(url) {
  const match = /^\/((?:@[^/]+\/)?[^/@]+)@([^/]+)\/(.+)$/.exec(new URL(url).pathname);
  if (!match) return null;
  const [, name, version, file] = match;
  const known = UNPKG_PACKAGES[name];
  if (!known || version.split('.')[0] !== known.major) return null;
  const dir = path.join(clientsDir, 'node_modules', known.dir);
  const installed = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')).version;
  assert.equal(installed.split('.')[0], known.major, `${name}@${known.major} is installed (found ${installed})`);
  const full = path.join(dir, file);
  if (!full.startsWith(dir + path.sep) || !existsSync(full)) return null;
  return full;
}

/** The text of the CodeMirror editor inside `selector`. */
function editorText(page, selector) {
  return page.evaluate((sel) => document.querySelector(`${sel} .CodeMirror`).CodeMirror.getValue(), selector);
}

/** Replaces the text of the editor inside `selector` the way a person pastes it in. */
async function replaceEditorText(page, selector, text) {
  await page.locator(`${selector} .CodeMirror`).first().click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(text);
  assert.equal(await editorText(page, selector), text);
}

/**
 * Runs the operation `name` now in the query editor with the execute button, and returns the
 * result pane's JSON once it shows the new result.
 */
async function run(page, name, previous) {
  // GraphiQL re-reads the document a moment after an edit and re-renders the toolbar (the tab
  // takes the operation's name); a click that lands during that re-render is lost.
  await page.locator('.graphiql-tab-active').filter({ hasText: name }).waitFor();
  const button = page.getByRole('button', { name: /Execute query/ });
  for (let attempt = 1; ; attempt += 1) {
    const answered = page
      .waitForResponse(
        (r) =>
          r.url().endsWith('/graphql') &&
          r.request().method() === 'POST' &&
          (r.request().postData() ?? '').includes(name),
        { timeout: 3_000 },
      )
      .catch(() => null);
    await button.click();
    if (await answered) break;
    if (attempt === 5) throw new Error(`clicking the execute button did not send ${name}`);
  }
  await page.waitForFunction(
    (prev) => {
      const value = document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror.getValue();
      return value && value !== prev && value.trim().startsWith('{');
    },
    previous,
    { timeout: 15_000 },
  );
  const text = await editorText(page, '.graphiql-response');
  return { text, json: JSON.parse(text) };
}

describe('GraphiQL in Chromium', () => {
  let browser;
  let page;
  const unexpected = [];
  const pageErrors = [];

  before(async () => {
    if (skip) return;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = await openPage();
  });

  /** A page in a fresh browser context (GraphiQL keeps its tabs in localStorage). */
  async function openPage() {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    context.on('weberror', (error) => pageErrors.push(String(error.error())));
    await context.route('https://unpkg.com/**', async (route) => {
      const file = await unpkgFile(route.request().url());
      if (!file) {
        unexpected.push(route.request().url());
        return route.fulfill({ status: 404, body: 'not available offline' });
      }
      const contentType = CONTENT_TYPES[path.extname(file)] ?? 'application/octet-stream';
      return route.fulfill({
        status: 200,
        contentType,
        headers: { 'access-control-allow-origin': '*' },
        body: await readFile(file),
      });
    });
    await context.route('https://graphql.org/**', (route) =>
      route.fulfill({ status: 200, contentType: 'image/x-icon', body: '' }),
    );
    return context.newPage();
  }

  after(async () => {
    await browser?.close();
  });

  test('sign in, set the Authorization header, list products', { skip }, async () => {
    try {
      await signInAndListProducts();
    } catch (error) {
      const failure = path.join(clientsDir, 'screenshots', 'failure.png');
      await mkdir(path.dirname(failure), { recursive: true });
      await page.screenshot({ path: failure }).catch(() => {});
      console.log(`screenshot of the failure: ${failure}`);
      if (pageErrors.length) console.log(`page errors:\n${pageErrors.join('\n')}`);
      throw error;
    }
  });

  test('GET /graphql from a browser opens GraphiQL too', { skip }, async () => {
    const fresh = await openPage();
    const response = await fresh.goto(`${storefrontUrl()}/graphql`);
    assert.equal(response.status(), 200);
    assert.match(response.headers()['content-type'] ?? '', /text\/html/);
    await fresh.locator('.graphiql-query-editor .CodeMirror').waitFor({ timeout: 30_000 });
    assert.match(await editorText(fresh, '.graphiql-query-editor'), /Authorization/);
    assert.deepEqual(unexpected, [], 'every unpkg.com request was answered from node_modules');
    assert.deepEqual(pageErrors, [], 'no uncaught error on the page');
  });

  async function signInAndListProducts() {
    const response = await page.goto(`${storefrontUrl()}/`);
    assert.equal(response.status(), 200);
    await page.locator('.graphiql-query-editor .CodeMirror').waitFor({ timeout: 30_000 });
    await page.getByRole('button', { name: /Execute query/ }).waitFor();

    // The page opens on the example session, which explains the header.
    const example = await editorText(page, '.graphiql-query-editor');
    assert.match(example, /Authorization/);
    assert.match(example, /Bearer <accessToken>/);
    assert.match(example, /mutation Login/);
    assert.match(example, /query Products/);

    // 1. Sign in.
    const { username, password } = admin();
    await replaceEditorText(
      page,
      '.graphiql-query-editor',
      `mutation Login {\n  login(input: { username: ${JSON.stringify(username)}, password: ${JSON.stringify(password)} }) {\n    accessToken\n    account { username role }\n  }\n}\n`,
    );
    const login = await run(page, 'Login', '');
    assert.equal(login.json.errors, undefined, login.text);
    assert.equal(login.json.data.login.account.role, 'admin');
    const token = login.json.data.login.accessToken;
    assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);

    // 2. Put the token in the Headers tab.
    await page.getByRole('button', { name: 'Headers', exact: true }).click();
    const headers = `{"Authorization": "Bearer ${token}"}`;
    await replaceEditorText(page, '.graphiql-editor-tool[aria-label="Headers"] .graphiql-editor:not(.hidden)', headers);

    // 3. List products.
    await replaceEditorText(
      page,
      '.graphiql-query-editor',
      'query Products {\n  products(first: 10) {\n    totalCount\n    edges { cursor node { id name price stock } }\n    pageInfo { hasNextPage endCursor }\n  }\n}\n',
    );
    const products = await run(page, 'Products', login.text);
    assert.equal(products.json.errors, undefined, products.text);
    const names = products.json.data.products.edges.map((e) => e.node.name);
    assert.ok(names.includes(DEMO_PRODUCT_NAMES[0]), `result lists ${DEMO_PRODUCT_NAMES[0]}: ${products.text}`);
    await page.getByText(DEMO_PRODUCT_NAMES[0]).first().waitFor();

    await mkdir(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
    console.log(`screenshot: ${SCREENSHOT}`);

    assert.deepEqual(unexpected, [], 'every unpkg.com request was answered from node_modules');
    assert.deepEqual(pageErrors, [], 'no uncaught error on the page');
  }
});

// A page on another origin calls the API with the headers tracing libraries and Apollo Client
// add (W3C Trace Context and Baggage, Sentry, client awareness): the preflight must let them
// through (CORS_ALLOWED_HEADERS). STOREFRONT_CORS_ORIGIN is the origin the server was started
// to allow (CORS_ALLOWED_ORIGINS): the API's host by another name, so both are loopback (a
// page Playwright fulfils itself counts as public, and Chromium's local network access rules
// block it from calling loopback whatever CORS says).
const CORS_ORIGIN = process.env.STOREFRONT_CORS_ORIGIN;

describe('CORS from a page on another origin', () => {
  const skipCors = skip || (CORS_ORIGIN ? false : 'skipped: STOREFRONT_CORS_ORIGIN is not set');

  test('tracing and client headers pass the preflight', { skip: skipCors }, async () => {
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
    });
    try {
      const page = await (await browser.newContext()).newPage();
      // Any page of that origin will do: the health probe is the smallest.
      await page.goto(`${CORS_ORIGIN}/healthz`);
      const apiUrl = storefrontUrl();
      assert.notEqual(new URL(apiUrl).origin, CORS_ORIGIN, 'the page is cross-origin');
      const call = (url, extra) =>
        page.evaluate(
          async ([url, extra]) => {
            try {
              const response = await fetch(`${url}/graphql`, {
                method: 'POST',
                headers: {
                  'content-type': 'application/json',
                  traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
                  tracestate: 'shop=1',
                  baggage: 'userId=42',
                  'sentry-trace': '4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1',
                  'apollographql-client-name': 'shop-web',
                  'apollographql-client-version': '1.0.0',
                  ...extra,
                },
                body: JSON.stringify({ query: '{ __typename }' }),
              });
              return {
                status: response.status,
                body: await response.json(),
                requestId: response.headers.get('x-request-id'),
              };
            } catch (error) {
              return { failed: String(error) };
            }
          },
          [url, extra],
        );
      const result = await call(apiUrl, {});
      assert.equal(result.status, 200, JSON.stringify(result));
      assert.deepEqual(result.body, { data: { __typename: 'Query' } });
      assert.ok(result.requestId, 'exposed response headers are readable from the page');
      // A header the list does not name fails the preflight: the browser never sends it.
      const refused = await call(apiUrl, { 'x-not-allowed': '1' });
      assert.match(refused.failed ?? '', /Failed to fetch/, JSON.stringify(refused));
    } finally {
      await browser.close();
    }
  });
});
