export * from './lib/authenticator';
export * from './lib/scopes';
