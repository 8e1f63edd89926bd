// The GraphiQL page in a real (headless) Chromium, used as a person would: it loads with every
// request to another origin blocked (everything it needs comes from the server), under its
// content security policy with no violation, and its Account panel signs in, keeps the session
// across a reload, renews the access token and signs out. A subscription typed into GraphiQL
// runs over a WebSocket to the page's origin: changes made over HTTP appear in the result pane,
// Stop ends it, and when the server ends it for a revoked token the page renews and reconnects.
//
// Screenshots go to SCREENSHOT_DIR (the Rust harness points it into the target directory), or
// to clients/screenshots/; each test prints where it wrote them.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { createClient } from 'graphql-ws';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';

import { run as runInNode, signInAdmin } from './lib/accounts.mjs';
import { admin, clientsDir, storefrontUrl, uniqueUsername, USER_PASSWORD } from './lib/env.mjs';
import { CREATE_PRODUCT, DEMO_PRODUCT_NAMES, REGISTER } from './lib/documents.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SCREENSHOTS = process.env.SCREENSHOT_DIR || path.join(clientsDir, 'screenshots');
/** The server's JWT_SECRET, to make an expired access token the server itself would accept. */
const JWT_SECRET = process.env.STOREFRONT_JWT_SECRET;
const SESSION_KEY = 'storefront.playground.session';

const skip = existsSync(CHROMIUM)
  ? false
  : `skipped: no Chromium at ${CHROMIUM} (install Debian's chromium: apt-get install -y chromium)`;
if (skip) console.log(`playground.test.mjs ${skip}`);

/** Calls the API from Node, outside the browser. */
async function graphql(query, variables, token) {
  const response = await fetch(`${storefrontUrl()}/graphql`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify({ query, variables }),
  });
  return response.json();
}

const base64url = (value) => Buffer.from(value).toString('base64url');

/** `token` as it would be an hour after it expired, signed again with the server's key. */
function expiredCopy(token) {
  const [header, payload] = token.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  const now = Math.floor(Date.now() / 1000);
  const lifetime = claims.exp - claims.iat;
  Object.assign(claims, { iat: now - 3600 - lifetime, nbf: now - 3600 - lifetime, exp: now - 3600 });
  const signed = `${header}.${base64url(JSON.stringify(claims))}`;
  const signature = createHmac('sha256', JWT_SECRET).update(signed).digest('base64url');
  return `${signed}.${signature}`;
}

/** The text of the CodeMirror editor inside `selector`. */
function editorText(page, selector) {
  return page.evaluate((sel) => document.querySelector(`${sel} .CodeMirror`).CodeMirror.getValue(), selector);
}

/** Replaces the query editor's text, as a person pasting it in. */
async function replaceQuery(page, text) {
  await page.locator('.graphiql-query-editor .CodeMirror').first().click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(text);
  assert.equal(await editorText(page, '.graphiql-query-editor'), text);
}

/** The session the page keeps for its tab. */
function storedSession(page) {
  return page.evaluate((key) => JSON.parse(sessionStorage.getItem(key)), SESSION_KEY);
}

/** The error marks GraphiQL's linter puts in the query editor. */
function lintErrors(page) {
  return page.locator('.graphiql-query-editor .CodeMirror-lint-mark-error').count();
}

/**
 * Runs the operation `name` of the query editor (the cursor is put in it first, as GraphiQL
 * runs the operation under the cursor) and returns the result pane's JSON and the request.
 */
async function run(page, name) {
  await page.evaluate((operation) => {
    const editor = document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror;
    const line = editor.getValue().split('\n').findIndex((l) => l.startsWith(`query ${operation} `));
    editor.focus();
    editor.setCursor({ line: line + 1, ch: 2 });
  }, name);
  const previous = await editorText(page, '.graphiql-response');
  const sent = page.waitForRequest(
    (r) => r.url().endsWith('/graphql') && (r.postData() ?? '').includes(`"operationName":"${name}"`),
    { timeout: 15_000 },
  );
  await page.keyboard.press('ControlOrMeta+Enter');
  const request = await sent;
  await page.waitForFunction(
    (prev) => {
      const value = document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror.getValue();
      return value && value !== prev && value.trim().startsWith('{');
    },
    previous,
    { timeout: 15_000 },
  );
  const text = await editorText(page, '.graphiql-response');
  return { text, json: JSON.parse(text), request };
}

/** The names of the fields of `Query` the Docs pane lists. */
async function documentedQueryFields(page) {
  const docs = page.getByRole('button', { name: /Documentation Explorer/ });
  if ((await docs.getAttribute('aria-label')).startsWith('Show')) await docs.click();
  const explorer = page.locator('.graphiql-doc-explorer');
  // Back to the root of the explorer, then into Query.
  for (let i = 0; i < 5 && (await explorer.locator('.graphiql-doc-explorer-back').count()); i += 1) {
    await explorer.locator('.graphiql-doc-explorer-back').click();
  }
  await explorer.locator('a.graphiql-doc-explorer-type-name', { hasText: /^Query$/ }).first().click();
  await explorer.locator('.graphiql-doc-explorer-field-name').first().waitFor();
  return explorer.locator('.graphiql-doc-explorer-field-name').allTextContents();
}

const PRODUCT_CHANGED = 'subscription { productChanged { kind product { name } } }';
const RENAME = 'mutation($id: ID!, $name: String!) { updateProduct(id: $id, input: { name: $name }) { id name } }';
const SET_ROLE = 'mutation($id: ID!, $role: String!) { setUserRole(userId: $id, role: $role) { id role } }';

/** The result pane's text. */
const resultText = (page) => editorText(page, '.graphiql-response');

/** Runs the query editor's only operation, as a person pressing Ctrl-Enter in it. */
async function runEditor(page) {
  await page.locator('.graphiql-query-editor .CodeMirror').first().click();
  await page.keyboard.press('ControlOrMeta+Enter');
}

/** Waits until the result pane holds exactly `result` (as JSON); false after `ms`. */
async function paneShows(page, result, ms) {
  try {
    await page.waitForFunction(
      (expected) => {
        const text = document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror.getValue();
        try {
          return JSON.stringify(JSON.parse(text)) === expected;
        } catch {
          return false;
        }
      },
      JSON.stringify(result),
      { timeout: ms },
    );
    return true;
  } catch {
    return false;
  }
}

/** The event GraphiQL shows for a product created or updated with `name`. */
const changed = (kind, name) => ({ data: { productChanged: { kind, product: { name } } } });

/**
 * Creates products over HTTP until one's event shows in the result pane (the page sends
 * `subscribe` once the socket is acknowledged, and the server registers it when it reads it);
 * returns that product.
 */
async function createUntilShown(page, adminToken, prefix) {
  for (let attempt = 0; attempt < 20; attempt += 1) {
    const name = `${prefix} ${uniqueUsername('p')}`;
    const { createProduct } = await runInNode(CREATE_PRODUCT, { input: { name, price: '4.00', stock: 1 } }, adminToken);
    if (await paneShows(page, changed('CREATED', name), 1_000)) return createProduct;
  }
  throw new Error(`no product created by "${prefix}" showed in the result pane`);
}

/** Whether `predicate` holds within `ms`. */
async function until(predicate, ms) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

/** The graphql-transport-ws messages of one socket, as `type` or `type id`. */
const messageTypes = (messages) => messages.map((m) => (m.id ? `${m.type} ${m.id}` : m.type));

describe('the GraphiQL page in Chromium', () => {
  let browser;
  const origin = new URL(storefrontUrl()).origin;

  before(async () => {
    if (skip) return;
    await mkdir(SCREENSHOTS, { recursive: true });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });

  after(async () => {
    await browser?.close();
  });

  /**
   * A fresh browser context in which every request to another origin is refused, with what
   * the page reports: requests it tried to make elsewhere, content security policy violations,
   * console errors and uncaught errors.
   */
  async function openPage() {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const seen = { offOrigin: [], violations: [], consoleErrors: [], pageErrors: [], requests: [], sockets: [] };
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (new URL(url).origin === origin) return route.continue();
      seen.offOrigin.push(url);
      return route.abort('blockedbyclient');
    });
    await context.exposeBinding('reportViolation', (_source, violation) => seen.violations.push(violation));
    await context.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) =>
        window.reportViolation(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'}: ${e.sample}`),
      );
    });
    const page = await context.newPage();
    page.on('console', (message) => {
      if (message.type() === 'error') seen.consoleErrors.push(message.text());
    });
    page.on('pageerror', (error) => seen.pageErrors.push(String(error)));
    // Every WebSocket the page opens, with the messages each way (recorded from its creation).
    page.on('websocket', (ws) => {
      const socket = { url: ws.url(), ws, sent: [], received: [], closed: false };
      const parsed = (frame) => {
        try {
          return JSON.parse(frame.payload);
        } catch {
          return String(frame.payload);
        }
      };
      ws.on('framesent', (frame) => socket.sent.push(parsed(frame)));
      ws.on('framereceived', (frame) => socket.received.push(parsed(frame)));
      ws.on('close', () => {
        socket.closed = true;
      });
      seen.sockets.push(socket);
    });
    page.on('request', (request) => {
      if (request.url() === `${origin}/graphql` && request.method() === 'POST') {
        seen.requests.push({ body: request.postData() ?? '', authorization: request.headers().authorization });
      }
    });
    return { context, page, seen };
  }

  /** Opens `path` and waits until GraphiQL has fetched the schema. */
  async function load(page, path = '/') {
    const schema = page.waitForResponse(
      (r) => r.url() === `${origin}/graphql` && (r.request().postData() ?? '').includes('IntrospectionQuery'),
    );
    const response = await page.goto(`${origin}${path}`);
    assert.equal(response.status(), 200);
    await page.locator('.graphiql-query-editor .CodeMirror').waitFor({ timeout: 30_000 });
    await schema;
    return response;
  }

  /** Waits for GraphiQL's linter to have looked at the current text (it waits 500 ms). */
  const lintSettled = (page) => page.waitForTimeout(1_500);

  /** Signs in through the Account panel. */
  async function signIn(page, username, password) {
    await page.getByRole('form', { name: 'Sign in' }).waitFor();
    await page.getByLabel('Username').fill(username);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }

  /** Waits for the header's badge to name the visitor. */
  const badge = (page, text) => page.locator('.storefront-badge', { hasText: text }).waitFor();

  async function screenshot(page, name) {
    const file = path.join(SCREENSHOTS, name);
    await page.screenshot({ path: file });
    console.log(`screenshot: ${file}`);
  }

  /** Runs `body`; on failure, a screenshot and what the page reported are printed first. */
  async function withPage(name, body) {
    const opened = await openPage();
    try {
      await body(opened);
    } catch (error) {
      await screenshot(opened.page, `${name}-failure.png`).catch(() => {});
      const { requests, sockets, ...rest } = opened.seen;
      console.log(JSON.stringify(rest, null, 2));
      for (const socket of sockets) {
        console.log(`socket ${socket.url}${socket.closed ? ' (closed)' : ''}`);
        console.log(`  sent: ${JSON.stringify(socket.sent)}\n  received: ${JSON.stringify(socket.received)}`);
      }
      console.log(`requests:\n${requests.map((r) => `  ${r.authorization ? 'token ' : ''}${r.body.slice(0, 100)}`).join('\n')}`);
      throw error;
    } finally {
      await opened.context.close();
    }
  }

  function assertClean(seen) {
    assert.deepEqual(seen.offOrigin, [], 'the page asked for nothing from another origin');
    assert.deepEqual(seen.violations, [], 'no content security policy violation');
    assert.deepEqual(seen.consoleErrors, [], 'no console error');
    assert.deepEqual(seen.pageErrors, [], 'no uncaught error');
  }

  test('loads with every other origin blocked, under its policy, valid for an anonymous visitor', { skip }, async () => {
    await withPage('anonymous', async ({ page, seen }) => {
      const response = await load(page);
      const policy = response.headers()['content-security-policy'] ?? '';
      assert.match(policy, /script-src 'self';/);
      assert.doesNotMatch(policy, /unsafe-inline|unsafe-eval|https?:/);

      // A visitor who is not signed in lands on the sign-in form and a document made for them.
      await page.getByRole('form', { name: 'Sign in' }).waitFor();
      await badge(page, 'not signed in');
      const opening = await editorText(page, '.graphiql-query-editor');
      assert.match(opening, /query MyPermissions/);
      await lintSettled(page);
      assert.equal(await lintErrors(page), 0, 'the opening document is valid for an anonymous visitor');
      await screenshot(page, 'graphiql-anonymous.png');
      // The linter does mark what an anonymous visitor may not query (so 0 above means valid).
      await replaceQuery(page, 'query Products {\n  products(first: 1) { totalCount }\n}\n');
      await page.locator('.graphiql-query-editor .CodeMirror-lint-mark-error').first().waitFor();
      const fields = await documentedQueryFields(page);
      assert.ok(!fields.includes('products'), `anonymous docs list no products: ${fields}`);

      // Dialogs add a <style> element, which must carry the page's nonce.
      await page.getByRole('button', { name: 'Open settings dialog' }).click();
      await page.getByRole('dialog').waitFor();
      await page.keyboard.press('Escape');
      await page.getByRole('button', { name: 'Open short keys dialog' }).click();
      await page.getByRole('dialog').waitFor();
      await page.keyboard.press('Escape');

      // Its own stylesheet and scripts came from this origin, not from the cache.
      const assets = await page.evaluate(() => performance.getEntriesByType('resource').map((e) => e.name));
      for (const name of ['graphiql.min.js', 'graphiql.min.css', 'react.production.min.js', 'storefront-playground.js']) {
        assert.ok(assets.some((url) => url.startsWith(`${origin}/playground/`) && url.endsWith(name)), name);
      }
      assertClean(seen);
    });
  });

  test('a wrong password shows an error and signs nobody in', { skip }, async () => {
    await withPage('wrong-password', async ({ page, seen }) => {
      await load(page);
      const { username } = admin();
      await signIn(page, username, 'not the password at all');
      const alert = page.getByRole('alert');
      await alert.waitFor();
      assert.equal((await alert.textContent()).trim(), 'Wrong username or password.');
      assert.equal(await page.getByLabel('Password').inputValue(), '', 'the password field is cleared');
      assert.equal(await storedSession(page), null);
      await badge(page, 'not signed in');
      await screenshot(page, 'graphiql-wrong-password.png');
      assertClean(seen);
    });
  });

  test('sign in, list products, stay signed in after a reload, sign out', { skip }, async () => {
    await withPage('signed-in', async ({ page, seen }) => {
      await load(page);
      const { username, password } = admin();
      const schemaAsAdmin = page.waitForRequest(
        (r) => (r.postData() ?? '').includes('IntrospectionQuery') && Boolean(r.headers().authorization),
      );
      await signIn(page, username, password);
      await page.getByText(`Signed in as ${username}`).waitFor();
      await badge(page, `${username} · admin`);
      const session = await storedSession(page);
      assert.match(session.accessToken, /^[\w-]+\.[\w-]+\.[\w-]+$/);
      assert.equal(session.account.role, 'admin');

      // The schema is fetched again as the account, and the opening document follows.
      assert.equal((await schemaAsAdmin).headers().authorization, `Bearer ${session.accessToken}`);
      await page.waitForFunction(() =>
        document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue().includes('query Products'),
      );
      await lintSettled(page);
      assert.equal(await lintErrors(page), 0, 'the opening document is valid for the account');

      const products = await run(page, 'Products');
      assert.equal(products.json.errors, undefined, products.text);
      const names = products.json.data.products.edges.map((e) => e.node.name);
      assert.ok(names.includes(DEMO_PRODUCT_NAMES[0]), `lists ${DEMO_PRODUCT_NAMES[0]}: ${products.text}`);
      assert.equal(products.request.headers().authorization, `Bearer ${session.accessToken}`);
      await page.getByText(DEMO_PRODUCT_NAMES[0]).first().waitFor();
      const fields = await documentedQueryFields(page);
      for (const field of ['products', 'account', 'users', 'auditEvents']) {
        assert.ok(fields.includes(field), `the docs list ${field} for an admin: ${fields}`);
      }
      await screenshot(page, 'graphiql-signed-in.png');

      // A reload keeps the session of the tab, and its token.
      await load(page);
      await badge(page, `${username} · admin`);
      const reloaded = await run(page, 'Products');
      assert.equal(reloaded.json.errors, undefined, reloaded.text);
      assert.equal(reloaded.request.headers().authorization, `Bearer ${session.accessToken}`);
      assert.equal((await storedSession(page)).refreshToken, session.refreshToken, 'no needless refresh');

      // Sign out: the server ends the session, the page forgets it and shows the anonymous schema.
      await page.getByRole('button', { name: /Show Account/ }).click();
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByText('Signed out.').waitFor();
      assert.equal(await storedSession(page), null);
      const logout = seen.requests.find((r) => r.body.includes('logout('));
      assert.ok(logout, 'the page called logout');
      const spent = await graphql('mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken } }', {
        t: session.refreshToken,
      });
      assert.equal(spent.errors?.[0]?.extensions?.code, 'UNAUTHENTICATED', JSON.stringify(spent));
      await badge(page, 'not signed in');
      await page.waitForFunction(() =>
        document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue().includes('query MyPermissions'),
      );

      // Still signed out after a reload.
      await load(page);
      await page.getByRole('form', { name: 'Sign in' }).waitFor();
      await badge(page, 'not signed in');
      await lintSettled(page);
      assert.equal(await lintErrors(page), 0);
      const anonymousFields = await documentedQueryFields(page);
      assert.ok(!anonymousFields.includes('products'), `signed out: ${anonymousFields}`);
      await screenshot(page, 'graphiql-signed-out.png');
      assertClean(seen);
    });
  });

  test('sign-out ends the session with the access token when the refresh token is refused', { skip }, async () => {
    await withPage('sign-out-fallback', async ({ page, seen }) => {
      await load(page);
      const { username, password } = admin();
      await signIn(page, username, password);
      await badge(page, `${username} · admin`);
      const session = await storedSession(page);
      // The refresh-token logout answered as a server whose sign-in rate limit is spent would.
      let refused = 0;
      await page.route(`${origin}/graphql`, (route) => {
        if (!(route.request().postData() ?? '').includes('StorefrontPlaygroundLogout(')) return route.continue();
        refused += 1;
        return route.fulfill({
          status: 200,
          contentType: 'application/json',
          body: JSON.stringify({
            data: null,
            errors: [{ message: 'too many attempts', extensions: { code: 'TOO_MANY_REQUESTS', retryAfter: 30 } }],
          }),
        });
      });
      // The Account panel stays open after signing in.
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByText('Signed out.').waitFor();
      assert.equal(refused, 1, 'the refresh-token logout was tried first');
      const fallback = seen.requests.find((r) => r.body.includes('StorefrontPlaygroundLogoutByAccessToken'));
      assert.equal(fallback?.authorization, `Bearer ${session.accessToken}`);
      // The session really ended on the server: neither of its tokens works any more.
      const account = await graphql('{ account { username } }', {}, session.accessToken);
      assert.equal(account.errors?.[0]?.extensions?.reason, 'SESSION_ENDED', JSON.stringify(account));
      const spent = await graphql('mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken } }', {
        t: session.refreshToken,
      });
      assert.equal(spent.errors?.[0]?.extensions?.code, 'UNAUTHENTICATED', JSON.stringify(spent));
      assert.equal(await storedSession(page), null);
      await badge(page, 'not signed in');
    });
  });

  test('renews the access token before it expires, and after the server says TOKEN_EXPIRED', { skip }, async () => {
    await withPage('renewal', async ({ page, seen }) => {
      await load(page);
      const { username, password } = admin();
      await signIn(page, username, password);
      await badge(page, `${username} · admin`);
      const first = await storedSession(page);

      // As if the tab came back 59.5 minutes later, half a minute before the token expires (by
      // the page's clock): the page renews it at once and fetches the schema again with it.
      const lifetime = first.expiresAt - first.issuedAt;
      const later = { ...first, issuedAt: Date.now() + 30_000 - lifetime, expiresAt: Date.now() + 30_000 };
      await page.evaluate(([key, session]) => sessionStorage.setItem(key, JSON.stringify(session)), [SESSION_KEY, later]);
      const schemaAgain = page.waitForRequest(
        (r) =>
          (r.postData() ?? '').includes('IntrospectionQuery') &&
          Boolean(r.headers().authorization) &&
          r.headers().authorization !== `Bearer ${first.accessToken}`,
      );
      await load(page);
      await page.waitForFunction(
        ([key, old]) => JSON.parse(sessionStorage.getItem(key))?.accessToken !== old,
        [SESSION_KEY, first.accessToken],
      );
      const renewed = await storedSession(page);
      assert.notEqual(renewed.refreshToken, first.refreshToken, 'the refresh token rotated');
      assert.ok(renewed.expiresAt > Date.now() + 30 * 60_000, 'a new hour-long token');
      assert.equal((await schemaAgain).headers().authorization, `Bearer ${renewed.accessToken}`);
      assert.ok(seen.requests.some((r) => r.body.includes('refreshToken(refreshToken:')));

      if (!JWT_SECRET) {
        console.log('TOKEN_EXPIRED part skipped: STOREFRONT_JWT_SECRET is not set');
        assertClean(seen);
        return;
      }
      // An access token that really expired (the page's clock does not know): the server
      // answers TOKEN_EXPIRED, the page renews the token and runs the operation again.
      const expired = expiredCopy(renewed.accessToken);
      const refused = await graphql('{ account { username } }', {}, expired);
      assert.equal(refused.errors?.[0]?.extensions?.reason, 'TOKEN_EXPIRED', JSON.stringify(refused));
      await page.evaluate(
        ([key, session]) => sessionStorage.setItem(key, JSON.stringify(session)),
        [SESSION_KEY, { ...renewed, accessToken: expired, expiresAt: Date.now() + 30 * 60_000 }],
      );
      await load(page);
      const before = seen.requests.length;
      const products = await run(page, 'Products');
      assert.equal(products.json.errors, undefined, products.text);
      assert.ok(products.json.data.products.totalCount >= DEMO_PRODUCT_NAMES.length, products.text);
      const after = seen.requests.slice(before);
      const expiredTries = after.filter((r) => r.authorization === `Bearer ${expired}` && r.body.includes('Products'));
      assert.equal(expiredTries.length, 1, 'sent once with the expired token');
      assert.ok(after.some((r) => r.body.includes('refreshToken(refreshToken:')), 'then renewed it');
      const last = await storedSession(page);
      assert.notEqual(last.accessToken, expired);
      assert.equal(products.request.headers().authorization, `Bearer ${expired}`);
      assert.ok(
        after.some((r) => r.body.includes('Products') && r.authorization === `Bearer ${last.accessToken}`),
        'and ran Products again with the new token',
      );
      assertClean(seen);
    });
  });

  test('what is typed in the editors stays in the tab, never in localStorage', { skip }, async () => {
    await withPage('tab-storage', async ({ context, page, seen }) => {
      // What an earlier version of the page let GraphiQL keep in localStorage is removed;
      // other keys of this origin are left alone.
      await page.goto(`${origin}/docs/money.md`);
      await page.evaluate(() => {
        localStorage.setItem('graphiql:tabState', '{"tabs":[{"query":"old secret"}]}');
        localStorage.setItem('graphiql:query', 'old secret');
        localStorage.setItem('not-graphiql', 'kept');
      });
      await load(page);
      const secret = 'a password typed into the editor 7c1e';
      const typed = `mutation ChangePassword {\n  changePassword(input: { currentPassword: "${secret}", newPassword: "x" }) { accessToken }\n}\n`;
      await replaceQuery(page, typed);
      // GraphiQL writes its tab state after a short debounce.
      await page.waitForFunction(
        (text) => Object.keys(sessionStorage).some((k) => k.startsWith('graphiql:') && sessionStorage.getItem(k).includes(text)),
        secret,
        { timeout: 10_000 },
      );
      const inLocalStorage = () =>
        page.evaluate(() => Object.fromEntries(Object.keys(localStorage).map((k) => [k, localStorage.getItem(k)])));
      assert.deepEqual(await inLocalStorage(), { 'not-graphiql': 'kept' });

      // A reload of the tab keeps the editor's text (sessionStorage lives as long as the tab)...
      await load(page);
      assert.equal(await editorText(page, '.graphiql-query-editor'), typed);
      assert.deepEqual(await inLocalStorage(), { 'not-graphiql': 'kept' });

      // ...and a new tab starts afresh, with nothing of the other tab's text.
      const other = await context.newPage();
      try {
        await load(other);
        const opening = await editorText(other, '.graphiql-query-editor');
        assert.doesNotMatch(opening, /password typed/);
        assert.match(opening, /query MyPermissions/);
      } finally {
        await other.close();
      }
      assertClean(seen);
    });
  });

  test('runs a subscription over a WebSocket: each change shows as it comes, and Stop ends it', { skip }, async () => {
    await withPage('subscription', async ({ page, seen }) => {
      await load(page);
      const { username, password } = admin();
      await signIn(page, username, password);
      await badge(page, `${username} · admin`);
      const session = await storedSession(page);
      const adminToken = (await signInAdmin()).token;

      await replaceQuery(page, PRODUCT_CHANGED);
      // GraphiQL reads the operations of the text after a pause in typing, as the linter does.
      await lintSettled(page);
      assert.equal(await lintErrors(page), 0, 'the subscription is valid for the account');
      await runEditor(page);
      const product = await createUntilShown(page, adminToken, 'Shown in GraphiQL');
      await page.getByRole('button', { name: 'Stop query (Ctrl-Enter)' }).waitFor();
      // Each event replaces the last in the pane as it arrives.
      await runInNode(RENAME, { id: product.id, name: `${product.name}, renamed` }, adminToken);
      assert.ok(await paneShows(page, changed('UPDATED', `${product.name}, renamed`), 10_000), await resultText(page));
      await screenshot(page, 'graphiql-subscription.png');

      // One socket, to this origin's /graphql, speaking graphql-transport-ws with the token.
      assert.equal(seen.sockets.length, 1);
      const [socket] = seen.sockets;
      assert.equal(socket.url, `${origin.replace(/^http/, 'ws')}/graphql`);
      assert.deepEqual(socket.sent[0], {
        type: 'connection_init',
        payload: { Authorization: `Bearer ${session.accessToken}` },
      });
      assert.deepEqual(messageTypes(socket.sent), ['connection_init', 'subscribe 1']);
      assert.equal(socket.sent[1].payload.query, PRODUCT_CHANGED);
      assert.equal(socket.received[0].type, 'connection_ack');

      // Stop: the page sends `complete` and closes the socket; GraphiQL can run again.
      await page.getByRole('button', { name: 'Stop query (Ctrl-Enter)' }).click();
      await page.getByRole('button', { name: 'Execute query (Ctrl-Enter)' }).waitFor();
      assert.ok(await until(() => socket.closed, 10_000), 'the socket closed');
      assert.deepEqual(messageTypes(socket.sent), ['connection_init', 'subscribe 1', 'complete 1']);
      const shown = await resultText(page);
      const eventsAtStop = socket.received.filter((m) => m.type === 'next').length;

      // A change after the stop reaches a subscriber in Node, and not the page.
      const witness = createClient({
        url: `${origin.replace(/^http/, 'ws')}/graphql`,
        webSocketImpl: WebSocket,
        connectionParams: { Authorization: `Bearer ${adminToken}` },
      });
      try {
        const names = [];
        witness.subscribe(
          { query: PRODUCT_CHANGED },
          { next: ({ data }) => names.push(data?.productChanged?.product?.name), error: () => {}, complete: () => {} },
        );
        let after = null;
        for (let attempt = 0; attempt < 20 && !after; attempt += 1) {
          const name = `After the stop ${uniqueUsername('p')}`;
          await runInNode(CREATE_PRODUCT, { input: { name, price: '4.00', stock: 1 } }, adminToken);
          if (await until(() => names.includes(name), 1_000)) after = name;
        }
        assert.ok(after, 'the witness heard a change made after the stop');
        assert.equal(await resultText(page), shown, 'the result pane still shows the last event before the stop');
        assert.ok(!(await page.content()).includes(after));
      } finally {
        await witness.dispose();
      }
      assert.equal(seen.sockets.length, 1, 'no socket was opened again');
      assert.equal(socket.received.filter((m) => m.type === 'next').length, eventsAtStop, 'no event after the stop');
      assertClean(seen);
    });
  });

  test('a subscription the server ends for a revoked token carries on with a renewed one', { skip }, async () => {
    await withPage('subscription-renewal', async ({ page, seen }) => {
      const adminToken = (await signInAdmin()).token;
      const username = uniqueUsername('graphiql');
      const { register } = await runInNode(REGISTER, { input: { username, password: USER_PASSWORD } });
      await load(page);
      await signIn(page, username, USER_PASSWORD);
      await badge(page, `${username} · user`);
      const first = await storedSession(page);

      await replaceQuery(page, PRODUCT_CHANGED);
      // GraphiQL reads the operations of the text after a pause in typing, as the linter does.
      await lintSettled(page);
      assert.equal(await lintErrors(page), 0, 'the subscription is valid for the account');
      await runEditor(page);
      await createUntilShown(page, adminToken, 'Before the role change');

      // A role change revokes the account's access tokens and keeps its session: the server
      // closes the socket (4403, "session ended"); the page renews the token, opens a new socket
      // with it and subscribes again, and changes show again.
      await runInNode(SET_ROLE, { id: register.account.id, role: 'admin' }, adminToken);
      await badge(page, `${username} · admin`);
      await createUntilShown(page, adminToken, 'After the role change');
      const renewed = await storedSession(page);
      assert.notEqual(renewed.accessToken, first.accessToken);
      assert.equal(seen.sockets.length, 2, 'one socket, then one more');
      const [before, after] = seen.sockets;
      assert.ok(before.closed);
      assert.equal(before.sent[0].payload.Authorization, `Bearer ${first.accessToken}`);
      assert.equal(after.sent[0].payload.Authorization, `Bearer ${renewed.accessToken}`);
      assert.deepEqual(messageTypes(after.sent), ['connection_init', 'subscribe 1']);
      const refreshes = seen.requests.filter((r) => r.body.includes('refreshToken(refreshToken:'));
      assert.equal(refreshes.length, 1, 'renewed once');
      await page.getByRole('button', { name: 'Stop query (Ctrl-Enter)' }).click();
      await page.getByRole('button', { name: 'Execute query (Ctrl-Enter)' }).waitFor();
      assertClean(seen);
    });
  });

  const skipWithoutSecret = skip || (JWT_SECRET ? false : 'skipped: STOREFRONT_JWT_SECRET is not set');

  test('a subscription whose token the server refuses at connection_init renews it and connects again', { skip: skipWithoutSecret }, async () => {
    await withPage('subscription-expired-token', async ({ page, seen }) => {
      const adminToken = (await signInAdmin()).token;
      await load(page);
      const { username, password } = admin();
      await signIn(page, username, password);
      await badge(page, `${username} · admin`);
      // An access token that really expired, which the page's clock takes for a fresh one.
      const session = await storedSession(page);
      const expired = expiredCopy(session.accessToken);
      await page.evaluate(
        ([key, stored]) => sessionStorage.setItem(key, JSON.stringify(stored)),
        [SESSION_KEY, { ...session, accessToken: expired, expiresAt: Date.now() + 30 * 60_000 }],
      );
      await load(page);
      await replaceQuery(page, PRODUCT_CHANGED);
      await lintSettled(page);
      await runEditor(page);
      await createUntilShown(page, adminToken, 'After a refused token');
      const renewed = await storedSession(page);
      assert.notEqual(renewed.accessToken, expired);
      assert.equal(seen.sockets.length, 2, 'a refused socket, then one with the renewed token');
      const [refused, accepted] = seen.sockets;
      assert.equal(refused.sent[0].payload.Authorization, `Bearer ${expired}`);
      assert.deepEqual(messageTypes(refused.sent), ['connection_init'], 'nothing subscribed on the refused socket');
      assert.deepEqual(refused.received, []);
      assert.equal(accepted.sent[0].payload.Authorization, `Bearer ${renewed.accessToken}`);
      await page.getByRole('button', { name: 'Stop query (Ctrl-Enter)' }).click();
      await page.getByRole('button', { name: 'Execute query (Ctrl-Enter)' }).waitFor();
      assertClean(seen);
    });
  });

  test("a subscription sends the Headers pane's Authorization in place of the tab's token", { skip }, async () => {
    await withPage('subscription-headers', async ({ page, seen }) => {
      const adminToken = (await signInAdmin()).token;
      await load(page);
      const username = uniqueUsername('graphiql');
      await runInNode(REGISTER, { input: { username, password: USER_PASSWORD } });
      await signIn(page, username, USER_PASSWORD);
      await badge(page, `${username} · user`);
      const session = await storedSession(page);

      // The Headers pane (the second editor of the tools section; Variables is the first).
      await page.getByRole('button', { name: 'Headers' }).click();
      await page.locator('section.graphiql-editor-tool[aria-label="Headers"]').waitFor();
      await page.evaluate((token) => {
        const [, headers] = document.querySelectorAll('section.graphiql-editor-tool .CodeMirror');
        headers.CodeMirror.setValue(JSON.stringify({ Authorization: `Bearer ${token}`, 'x-other': '1' }));
      }, adminToken);
      await replaceQuery(page, PRODUCT_CHANGED);
      await lintSettled(page);
      await runEditor(page);
      await createUntilShown(page, adminToken, 'With the pane header');
      assert.equal(seen.sockets.length, 1);
      assert.deepEqual(seen.sockets[0].sent[0], {
        type: 'connection_init',
        payload: { Authorization: `Bearer ${adminToken}` },
      });
      assert.notEqual(adminToken, session.accessToken);
      await page.getByRole('button', { name: 'Stop query (Ctrl-Enter)' }).click();
      await page.getByRole('button', { name: 'Execute query (Ctrl-Enter)' }).waitFor();
      assertClean(seen);
    });
  });

  test('GET /graphql from a browser opens the same page', { skip }, async () => {
    await withPage('graphql-path', async ({ page, seen }) => {
      const response = await load(page, '/graphql');
      assert.match(response.headers()['content-type'] ?? '', /^text\/html/);
      await page.getByRole('form', { name: 'Sign in' }).waitFor();
      assertClean(seen);
    });
  });
});
