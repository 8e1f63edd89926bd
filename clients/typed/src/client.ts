// A small typed client: every operation is written once with `graphql()`, GraphQL Code
// Generator (../../codegen.ts) gives it its result and variable types and lists it in
// persisted-documents.json, and `execute` sends only its id (`documentId`), as a server running
// with TRUSTED_DOCUMENTS expects.
import { graphql } from './gql/index.js';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';

export const LoginDocument = graphql(`
  mutation Login($input: LoginInput!) {
    login(input: $input) {
      accessToken
      refreshToken
      account { id username role }
    }
  }
`);

export const ProductPageDocument = graphql(`
  query ProductPage($first: Int!, $after: String, $filter: ProductFilter) {
    products(first: $first, after: $after, filter: $filter) {
      totalCount
      nodes { id name price stock createdAt updatedAt version }
      pageInfo { hasNextPage endCursor }
    }
  }
`);

export const CreateProductDocument = graphql(`
  mutation CreateProduct($input: CreateProductInput!) {
    createProduct(input: $input) { id name price stock createdAt version }
  }
`);

/** One entry of a response's `errors`. */
export interface GraphQLError {
  message: string;
  extensions?: { code?: string; [key: string]: unknown };
}

/** An operation's answer: its typed data, or the errors that took its place. */
export type Result<TData> =
  | { data: TData; errors?: GraphQLError[] }
  | { data?: null; errors: GraphQLError[] };

/** A failed operation, with the codes of its errors. */
export class OperationError extends Error {
  readonly codes: string[];
  constructor(readonly errors: GraphQLError[]) {
    super(errors.map((e) => e.message).join('; '));
    this.codes = errors.map((e) => e.extensions?.code ?? 'UNKNOWN');
  }
}

/** The id GraphQL Code Generator gave a document (`sha256:<hash>`). */
export function documentIdOf(document: TypedDocumentNode<unknown, never>): string {
  const id = (document as { __meta__?: { hash?: string } }).__meta__?.hash;
  if (!id) throw new Error('the document has no persisted id: run `npm run codegen`');
  return id;
}

export class StorefrontClient {
  private accessToken: string | null = null;

  constructor(
    private readonly url: string,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {}

  /** Runs a generated document by its id; its data, typed, or an `OperationError`. */
  async execute<TData, TVariables extends Record<string, unknown>>(
    document: TypedDocumentNode<TData, TVariables>,
    variables: TVariables,
  ): Promise<TData> {
    const response = await this.fetchImpl(this.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/graphql-response+json, application/json;q=0.9',
        ...(this.accessToken ? { authorization: `Bearer ${this.accessToken}` } : {}),
      },
      body: JSON.stringify({ documentId: documentIdOf(document), variables }),
    });
    const result = (await response.json()) as Result<TData>;
    if (result.errors?.length || !result.data) throw new OperationError(result.errors ?? []);
    return result.data;
  }

  async signIn(username: string, password: string) {
    const { login } = await this.execute(LoginDocument, { input: { username, password } });
    this.accessToken = login.accessToken;
    return login.account;
  }

  /** A page of products; prices are decimal text and times RFC 3339 text, as typed. */
  async productPage(first: number, after: string | null = null, nameContains?: string) {
    const filter = nameContains === undefined ? null : { nameContains };
    const { products } = await this.execute(ProductPageDocument, { first, after, filter });
    return products;
  }

  async createProduct(name: string, price: string, stock: number) {
    const { createProduct } = await this.execute(CreateProductDocument, {
      input: { name, price, stock, description: 'made by the typed client' },
    });
    return createProduct;
  }
}
