/// <reference types="vite/client" />

/** syncd's version, from pyproject.toml at build time (vite.config.ts). */
declare const __SYNCD_VERSION__: string;
