export * from './lib/authenticator';
export * from './lib/scopes';
export * from './lib/url-signer';
export * from './lib/hawk';
export * from './lib/temporary-credentials';
