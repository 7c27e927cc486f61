// Runs before every test file: pin the clock's zone so dates print the same everywhere.
process.env.TZ = 'UTC';
require('reflect-metadata');
