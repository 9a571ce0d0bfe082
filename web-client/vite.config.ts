/// <reference types="vitest/config" />
// Vite builds the editor into ../syncd/web/, package data of the Python
// package (served by `syncd serve` at /, shipped in the wheel and the sdist);
// the dev server proxies /ws to a local syncd, so the page connects
// same-origin either way.
import { readFileSync } from "node:fs";
import react from "@vitejs/plugin-react";
import { parse } from "smol-toml";
import { defineConfig } from "vite";

const server = process.env.SYNCD_SERVER ?? "http://127.0.0.1:8765";

/** syncd's version: pyproject.toml is its one source (the wheel and `syncd --version` read it too). */
function syncdVersion(): string {
  const pyproject = parse(readFileSync(new URL("../pyproject.toml", import.meta.url), "utf-8"));
  const project = pyproject.project as { version?: unknown } | undefined;
  if (typeof project?.version !== "string") throw new Error("pyproject.toml has no [project] version");
  return project.version;
}

export default defineConfig({
  plugins: [react()],
  base: "./",
  define: { __SYNCD_VERSION__: JSON.stringify(syncdVersion()) },
  build: { outDir: "../syncd/web", emptyOutDir: true, target: "es2022" },
  server: {
    host: "127.0.0.1",
    port: 5173,
    proxy: { "/ws": { target: server, ws: true }, "/healthz": server, "/metrics": server },
  },
  test: {
    // Component tests (.tsx) choose jsdom in their first line; the rest run in node.
    include: ["test/**/*.test.{ts,tsx}"],
    environment: "node",
    testTimeout: 10_000,
  },
});
