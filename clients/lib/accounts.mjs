// Signing in for the tests' setup: plain fetch, so each test's client under test gets only a token.
import { admin, storefrontUrl, uniqueUsername, USER_PASSWORD } from './env.mjs';

/** POSTs one GraphQL operation; returns the response body ({ data, errors }). */
export async function post(query, variables = {}, token = null) {
  const response = await fetch(`${storefrontUrl()}/graphql`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify({ query, variables }),
  });
  return response.json();
}

/** `post`, throwing on any GraphQL error; returns `data`. */
export async function run(query, variables = {}, token = null) {
  const body = await post(query, variables, token);
  if (body.errors?.length) throw new Error(`${JSON.stringify(body.errors)} for ${query}`);
  return body.data;
}

const SIGNED_IN = 'accessToken account { id username role }';

/** The admin of `ADMIN_USERNAME`, signed in: `{ token, account }`. */
export async function signInAdmin() {
  const { username, password } = admin();
  const { login } = await run(
    `mutation($input: LoginInput!) { login(input: $input) { ${SIGNED_IN} } }`,
    { input: { username, password } },
  );
  return { token: login.accessToken, account: login.account };
}

/** A new account with the default role (`user`), signed in: `{ token, account }`. */
export async function registerUser(prefix) {
  const username = uniqueUsername(prefix);
  const { register } = await run(
    `mutation($input: RegisterInput!) { register(input: $input) { ${SIGNED_IN} } }`,
    { input: { username, password: USER_PASSWORD } },
  );
  return { token: register.accessToken, account: register.account };
}

/** A second admin: a new account given the `admin` role by the first, signed in again. */
export async function secondAdmin(prefix, adminToken) {
  const user = await registerUser(prefix);
  await run(
    'mutation($id: ID!) { setUserRole(userId: $id, role: "admin") { id role } }',
    { id: user.account.id },
    adminToken,
  );
  // Tokens carry the role: sign in again for one with the new role.
  const { login } = await run(
    `mutation($input: LoginInput!) { login(input: $input) { ${SIGNED_IN} } }`,
    { input: { username: user.account.username, password: USER_PASSWORD } },
  );
  return { token: login.accessToken, account: login.account };
}
