/** Injection tokens for values that are not classes. */
export const FERRY_CONFIG = Symbol('FERRY_CONFIG');
export const LOGGER = Symbol('LOGGER');
export const REDIS = Symbol('REDIS');
export const STORAGE = Symbol('STORAGE');
