// GraphQL Code Generator: typed documents for typed/src/client.ts from ../schema.graphql, and
// the trusted-documents manifest a production server runs with (TRUSTED_DOCUMENTS).
// `npm run codegen` writes typed/src/gql/ (not committed: typed.test.mjs generates it each run).
import type { CodegenConfig } from '@graphql-codegen/cli';

const config: CodegenConfig = {
  schema: '../schema.graphql',
  documents: ['typed/src/**/*.ts', '!typed/src/gql/**'],
  ignoreNoDocuments: false,
  generates: {
    'typed/src/gql/': {
      preset: 'client',
      config: {
        // How the API's scalars arrive in JSON: RFC 3339 text, decimal text, opaque ids.
        scalars: {
          DateTime: 'string',
          Decimal: 'string',
          ID: 'string',
        },
        strictScalars: true,
        enumsAsTypes: true,
        useTypeImports: true,
        importExtension: '.js',
      },
      presetConfig: {
        // persisted-documents.json: { "sha256:<hash>": "<document>" } for TRUSTED_DOCUMENTS,
        // and each document's id in its `__meta__.hash`.
        persistedDocuments: true,
        fragmentMasking: false,
      },
    },
  },
};

export default config;
