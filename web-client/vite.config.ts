/// <reference types="vitest/config" />
// Vite builds the editor into dist/ (served by `syncd serve` at /); the dev
// server proxies /ws to a local syncd, so the page connects same-origin either way.
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

const server = process.env.SYNCD_SERVER ?? "http://127.0.0.1:8765";

export default defineConfig({
  plugins: [react()],
  base: "./",
  build: { outDir: "dist", emptyOutDir: true, target: "es2022" },
  server: {
    host: "127.0.0.1",
    port: 5173,
    proxy: { "/ws": { target: server, ws: true }, "/healthz": server, "/metrics": server },
  },
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
    testTimeout: 10_000,
  },
});
