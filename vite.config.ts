import { sveltekit } from "@sveltejs/kit/vite";
import { defineConfig } from "vitest/config";

// Tauri loads the dev server from a fixed port; component tests run in jsdom with Svelte's
// browser build.
export default defineConfig(({ mode }) => ({
  plugins: [sveltekit()],
  clearScreen: false,
  server: { port: 1420, strictPort: true, watch: { ignored: ["**/src-tauri/**"] } },
  resolve: mode === "test" ? { conditions: ["browser"] } : undefined,
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.ts"],
    setupFiles: ["src/lib/test/setup.ts"],
  },
}));
