/*
 * The editor's service worker: it keeps the app shell (index.html and its
 * assets) so that the page loads — and shows the writes kept in the browser —
 * even while the server that serves it is down.
 *
 * index.html: network first (a new build shows at once), the cached copy when
 * the network fails or takes over 4 s. Hashed assets: cache first (they never
 * change). The protocol (/ws), /healthz and /metrics are never touched.
 */
const CACHE = "syncd-shell-v1";
const SHELL = new URL("./", self.location).href;
const NAVIGATION_TIMEOUT_MS = 4000;

/** The assets an index.html refers to. */
function assetsOf(html) {
  const urls = new Set();
  for (const match of html.matchAll(/(?:src|href)="([^"]+)"/g)) {
    const url = new URL(match[1], SHELL);
    if (url.origin === self.location.origin && url.pathname.includes("/assets/")) urls.add(url.href);
  }
  return urls;
}

/** Cache a fresh index.html and its assets; forget assets of older builds. */
async function keepShell(response) {
  const cache = await caches.open(CACHE);
  const html = await response.clone().text();
  await cache.put(SHELL, response.clone());
  const wanted = assetsOf(html);
  for (const request of await cache.keys()) {
    if (request.url.includes("/assets/") && !wanted.has(request.url)) await cache.delete(request);
  }
  await Promise.all(
    [...wanted].map(async (url) => {
      if (!(await cache.match(url))) await cache.add(url);
    }),
  );
}

self.addEventListener("install", (event) => {
  event.waitUntil(
    fetch(SHELL, { cache: "no-store" })
      .then((response) => (response.ok ? keepShell(response) : undefined))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((name) => name !== CACHE).map((name) => caches.delete(name))))
      .then(() => self.clients.claim()),
  );
});

function withTimeout(promise, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timed out")), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

async function navigate(request) {
  try {
    const response = await withTimeout(fetch(request), NAVIGATION_TIMEOUT_MS);
    if (response.ok) {
      const url = new URL(request.url);
      if (url.pathname === new URL(SHELL).pathname || url.pathname.endsWith("/index.html")) {
        keepShell(response.clone()).catch(() => undefined);
      }
    }
    return response;
  } catch (error) {
    const cached = await caches.match(SHELL);
    if (cached) return cached;
    throw error;
  }
}

async function asset(request) {
  const cached = await caches.match(request);
  if (cached) return cached;
  const response = await fetch(request);
  if (response.ok) {
    const cache = await caches.open(CACHE);
    await cache.put(request, response.clone());
  }
  return response;
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    event.respondWith(navigate(request));
  } else if (url.pathname.includes("/assets/")) {
    event.respondWith(asset(request));
  }
});
