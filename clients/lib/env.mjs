// The settings the Rust harness (tests/api/clients.rs) passes to `npm test`.
import { fileURLToPath } from 'node:url';

/** Where the server runs, without a trailing slash: `STOREFRONT_URL`. */
export function storefrontUrl() {
  const url = process.env.STOREFRONT_URL;
  if (!url) {
    throw new Error('STOREFRONT_URL is not set: start `storefront serve` and point STOREFRONT_URL at it');
  }
  return url.replace(/\/+$/, '');
}

/** The admin account created with `storefront create-admin`: `ADMIN_USERNAME`, `ADMIN_PASSWORD`. */
export function admin() {
  const username = process.env.ADMIN_USERNAME;
  const password = process.env.ADMIN_PASSWORD;
  if (!username || !password) {
    throw new Error('ADMIN_USERNAME and ADMIN_PASSWORD must name an admin (`storefront create-admin`)');
  }
  return { username, password };
}

/** A username no other run has taken. */
export function uniqueUsername(prefix) {
  return `${prefix}_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
}

/** A password the server's rules accept (8–128 characters, zxcvbn score 3 or more). */
export const USER_PASSWORD = 'correct horse battery staple';

/** The folder of this package. */
export const clientsDir = fileURLToPath(new URL('..', import.meta.url));
