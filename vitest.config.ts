import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // End-to-end tests spawn real processes; two cores, so keep files to two workers.
    maxWorkers: 2,
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
