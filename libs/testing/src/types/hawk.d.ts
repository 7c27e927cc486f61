// The part of the `hawk` client (a dev dependency: Taskcluster clients sign with it) the tests use.
declare module 'hawk' {
  export const client: {
    header(
      uri: string,
      method: string,
      options: { credentials: { id: string; key: string; algorithm: 'sha256' | 'sha1' }; ext?: string; timestamp?: number },
    ): { header: string };
    getBewit(
      uri: string,
      options: {
        credentials: { id: string; key: string; algorithm: 'sha256' | 'sha1' };
        ttlSec: number;
        ext?: string;
        localtimeOffsetMsec?: number;
      },
    ): string;
  };
}
