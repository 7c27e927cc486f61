/**
 * What can go wrong for a user of `ferry`, as typed errors: each prints as one line and ends the
 * command with its own exit code (documented in `ferry --help`).
 */
export abstract class CliError extends Error {
  abstract readonly exitCode: number;
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The command line itself is wrong (unknown command or protocol, missing argument): exit 2. */
export class UsageError extends CliError {
  readonly exitCode = 2;
}

/** A local file cannot be read or written (missing, a directory, no permission): exit 3. */
export class LocalFileError extends CliError {
  readonly exitCode = 3;
}

/** The server refused the credentials (FERRY_TOKEN, clientId/accessToken) or their scopes: exit 4. */
export class AuthError extends CliError {
  readonly exitCode = 4;
}

/** The server refused the request as such (a name it does not take, a conflict): exit 5. */
export class RefusedError extends CliError {
  readonly exitCode = 5;
}

/** The name is unknown to the server: exit 6. */
export class NotFoundError extends CliError {
  readonly exitCode = 6;
}

/** The server could not be reached, or kept failing after the retries: exit 7. The next run resumes. */
export class TransientError extends CliError {
  readonly exitCode = 7;
}

/** The bytes do not match what the catalog says (sha256): exit 8. */
export class VerificationError extends CliError {
  readonly exitCode = 8;
}

/** Stopped by Ctrl-C (or SIGTERM): exit 130. What was sent is kept; the same command continues. */
export class InterruptedError extends CliError {
  readonly exitCode = 130;
  constructor(
    message: string,
    /** Bytes the server (upload) or the local file (download) holds. */
    readonly at: number,
  ) {
    super(message);
  }
}

/** Whether an error is worth another try (the server or the network hiccuped). */
export function isTransient(err: unknown): err is TransientError {
  return err instanceof TransientError;
}
