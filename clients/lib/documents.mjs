// The GraphQL documents a frontend sends, shared by the Apollo and graphql-request tests.

const AUTH_FIELDS = `
  accessToken
  tokenType
  expiresIn
  refreshToken
  refreshTokenExpiresIn
  account { id username role }
`;

export const REGISTER = `
  mutation Register($input: RegisterInput!) {
    register(input: $input) { ${AUTH_FIELDS} }
  }
`;

export const LOGIN = `
  mutation Login($input: LoginInput!) {
    login(input: $input) { ${AUTH_FIELDS} }
  }
`;

export const REFRESH_TOKEN = `
  mutation RefreshToken($refreshToken: String!) {
    refreshToken(refreshToken: $refreshToken) { ${AUTH_FIELDS} }
  }
`;

export const ACCOUNT = `
  query Account {
    account { id username role }
  }
`;

export const PRODUCTS = `
  query Products($first: Int, $after: String, $search: String) {
    products(first: $first, after: $after, search: $search) {
      totalCount
      edges { cursor node { id name price stock } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;

export const CREATE_PRODUCT = `
  mutation CreateProduct($input: CreateProductInput!) {
    createProduct(input: $input) { id name price stock }
  }
`;

/** The products `storefront seed` stores. */
export const DEMO_PRODUCT_NAMES = ['Espresso cup', 'Pour-over kettle', 'Coffee beans, 1 kg'];

/** A copy of a JWT whose signature no longer matches: what a stale or forged token looks like. */
export function tamperedCopy(token) {
  const [header, payload, signature] = token.split('.');
  if (!signature) throw new Error(`not a JWT: ${token}`);
  const first = signature[0] === 'A' ? 'B' : 'A';
  return `${header}.${payload}.${first}${signature.slice(1)}`;
}

/** The `extensions.code` of every error in a list of GraphQL errors. */
export function codesOf(errors) {
  return (errors ?? []).map((e) => e?.extensions?.code ?? '<none>');
}
