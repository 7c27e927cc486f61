/**
 * Taskcluster-style scope matching: a held scope matches a required one when equal,
 * or when it ends with `*` and the required scope starts with what precedes the `*`.
 */
export function scopeMatches(held: string, required: string): boolean {
  if (held.endsWith('*')) return required.startsWith(held.slice(0, -1));
  return held === required;
}

export function satisfiesScope(held: readonly string[], required: string): boolean {
  return held.some((s) => scopeMatches(s, required));
}

/** The scopes Ferry's own protocols require (the object API uses Taskcluster's, see its app). */
export const Scopes = {
  write: (name: string) => `ferry:write:${name}`,
  read: (name: string) => `ferry:read:${name}`,
} as const;
