// Chromium calling the API from a page on another origin. (The GraphiQL page in Chromium is
// playground.test.mjs.)
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';

import { storefrontUrl } from './lib/env.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const skip = existsSync(CHROMIUM)
  ? false
  : `skipped: no Chromium at ${CHROMIUM} (install Debian's chromium: apt-get install -y chromium)`;
if (skip) console.log(`browser.test.mjs ${skip}`);

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
