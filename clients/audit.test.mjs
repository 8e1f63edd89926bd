// The GraphQL-over-HTTP conformance audit from graphql-http, against a running server.
// Every MUST and every SHOULD has to pass (no 'error', no 'warn'); stricter still, any result
// whose status is not 'ok' (a MAY's 'notice' too) fails, so a regression of any kind shows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { auditServer } from 'graphql-http';

import { storefrontUrl } from './lib/env.mjs';

test('graphql-http audit: no failed MUST or SHOULD', async () => {
  const url = `${storefrontUrl()}/graphql`;
  const results = await auditServer({ url });
  assert.ok(results.length > 0, 'the audit ran no check');

  const byStatus = {};
  for (const r of results) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
  const counts = Object.entries(byStatus)
    .map(([status, n]) => `${n} ${status}`)
    .join(', ');
  const notOk = results.filter((r) => r.status !== 'ok');
  const failedMust = notOk.filter((r) => r.name.startsWith('MUST'));
  const failedShould = notOk.filter((r) => r.name.startsWith('SHOULD'));
  const failedMay = notOk.filter((r) => r.name.startsWith('MAY'));

  console.log(
    `graphql-http audit of ${url}: ${results.length} checks, ` +
      `${counts} ` +
      `(failed MUST: ${failedMust.length}, SHOULD: ${failedShould.length}, MAY: ${failedMay.length})`,
  );

  const details = [];
  for (const r of notOk) {
    let body = '';
    if (r.response) {
      try {
        body = await r.response.text();
      } catch {
        body = '<body already read>';
      }
      body = ` — HTTP ${r.response.status} ${r.response.headers.get('content-type') ?? ''} ${body.slice(0, 300)}`;
    }
    details.push(`[${r.status}] ${r.id} ${r.name}: ${r.reason}${body}`);
  }
  for (const line of details) console.log(`  ${line}`);

  assert.deepEqual(details, [], `audit items that are not ok:\n${details.join('\n')}`);
});
