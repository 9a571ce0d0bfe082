// End-to-end tests: real headless Chromium (Debian's) against a real `syncd serve`.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // `npm run screenshot` sets SYNCD_SCREENSHOT to take docs/web-client.png instead.
    include: process.env.SYNCD_SCREENSHOT ? ["e2e/screenshot.ts"] : ["e2e/**/*.e2e.test.ts"],
    environment: "node",
    fileParallelism: false,
    testTimeout: 90_000,
    hookTimeout: 60_000,
    reporters: ["default"],
  },
});
