import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// Relative asset URLs: the same build is served at /ui by the headless server and from
// the app bundle by the desktop shell.
export default defineConfig({
  base: "./",
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 800 },
  server: {
    // `npm run dev` next to a running llmux: the API calls go to it.
    proxy: { "/admin": "http://127.0.0.1:8000", "/v1": "http://127.0.0.1:8000" },
  },
  test: { environment: "jsdom", include: ["src/**/*.test.{ts,tsx}"] },
});
